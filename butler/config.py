"""Load and validate a Butler YAML config file in the original's ``Butler:`` layout.

An existing config file of the original must load unchanged, so unknown sections and keys
are tolerated and only the sections behind enabled features are validated. What would
silently mean something else is not tolerated: an unknown enable key or a template
placeholder in a setting that is read is an error, and a feature of the original that this
version lacks is a warning (:attr:`Config.warnings`). Every error names the key path and the
offending value, because the person reading it is an admin editing a large YAML file by hand.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from marshmallow import Schema, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from butler import config_schema as cs
from butler.audit.settings import AuditSection
from butler.config_checks import (
    find_placeholder,
    reserved_key_warnings,
    unknown_enable_key,
    unsupported_warnings,
)

_MISSING = object()

LOG_LEVELS = ("silly", "debug", "verbose", "info", "warn", "error")


class ConfigError(Exception):
    """A config problem, already phrased as one line for the admin."""


class CoreService(StrEnum):
    """Core services an API area may need; the core builds one only when something needs it."""

    QRS = "qrs"
    ENGINE = "engine"
    KV_STORE = "kvStore"


@dataclass(frozen=True)
class EnableKey:
    """One ``restServerEndpointsEnable`` key (dotted for nested groups) a plugin understands.

    ``needs`` names the core services the key's endpoints use, so that switching the key on
    makes the core validate their config sections and build them. ``default`` is the value
    of a key the config does not mention: true for features an upgraded config should get
    without an edit (health, metrics); an explicit ``false`` still switches them off.
    """

    name: str
    needs: frozenset[CoreService] = frozenset()
    default: bool = False


Condition = Callable[["Config"], bool]


@dataclass(frozen=True)
class ConfigSection:
    """A config section a plugin (or the core) owns, validated only when ``needed``.

    ``schema`` validates a mapping (or, with ``many``, each item of a list); with
    ``string_list`` the section is a list of strings and ``schema`` is ``None``. The loaded
    values, defaults included, replace the raw ones, so readers never re-apply defaults.
    """

    path: str
    schema: type[Schema] | None
    needed: Condition
    many: bool = False
    string_list: bool = False


def always(cfg: Config) -> bool:
    """Condition of the sections every Butler has."""
    return True


def when_enabled(*keys: str) -> Condition:
    """Condition: any of these ``restServerEndpointsEnable`` keys is true."""
    return lambda cfg: any(cfg.endpoint_enabled(k) for k in keys)


def when_flag(path: str) -> Condition:
    """Condition: the value at ``path`` is exactly true (``mqttConfig.enable``)."""
    return lambda cfg: cfg.get(path) is True


def when_needed(*services: CoreService) -> Condition:
    """Condition: an enabled feature needs one of these core services."""
    return lambda cfg: any(cfg.needs(service) for service in services)


CORE_SECTIONS: tuple[ConfigSection, ...] = (
    ConfigSection("restServerConfig", cs.RestServerConfig, always),
    ConfigSection("startTaskFilter", cs.StartTaskFilterSection, always),
    ConfigSection("cert", cs.CertSection, when_needed(CoreService.QRS, CoreService.ENGINE)),
    ConfigSection("configQRS", cs.QrsSection, when_needed(CoreService.QRS)),
    ConfigSection("configEngine", cs.EngineSection, when_needed(CoreService.ENGINE)),
    ConfigSection("scheduler", cs.SchedulerSection, always),
    ConfigSection("keyValueStore", cs.KeyValueStoreSection, always),
    ConfigSection(
        "runs",
        cs.RunsSection,
        lambda cfg: cfg.needs(CoreService.QRS) or cfg.get("mqttConfig.enable") is True,
    ),
    ConfigSection("mqttConfig", cs.MqttSection, when_flag("mqttConfig.enable")),
    ConfigSection("audit", AuditSection, always),
)
"""The cross-cutting sections: the REST server, Qlik connections, stores and triggers."""


@dataclass(frozen=True)
class ConfigContract:
    """What the loaded plugins understand: enable keys (in plugin order) and sections."""

    enable_keys: Mapping[str, EnableKey]
    sections: tuple[ConfigSection, ...]


@functools.cache
def default_contract() -> ConfigContract:
    """The contract of the default plugin set (built-ins plus installed entry points)."""
    from butler.plugins import config_contract, default_plugin_manager

    return config_contract(default_plugin_manager())


def endpoint_enable_map(value: bool, contract: ConfigContract | None = None) -> dict[str, Any]:
    """A ``restServerEndpointsEnable`` mapping with every known key set to ``value``."""
    tree: dict[str, Any] = {}
    for key in (contract or default_contract()).enable_keys:
        node = tree
        *groups, leaf = key.split(".")
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = value
    return tree


class Config:
    """The validated ``Butler:`` mapping plus where it came from.

    Values are plain Python data (dicts, lists, scalars) so plugins can read their own
    section with :meth:`get` without knowing YAML or marshmallow. A ``Config`` built
    directly is not validated; :meth:`from_mapping` and :func:`load_config` validate.
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        base_dir: Path,
        path: Path | None = None,
        contract: ConfigContract | None = None,
    ):
        self._data: dict[str, Any] = dict(data)
        self.base_dir = base_dir
        self.path = path
        self.contract = contract or default_contract()
        self._enabled = self._read_enable_map()
        self.warnings: list[str] = []
        """What validation found worth telling the admin (features this version lacks);
        ``check-config`` prints them and ``run`` logs them once at start-up."""

    @classmethod
    def from_mapping(
        cls,
        butler: Mapping[str, Any],
        base_dir: Path,
        path: Path | None = None,
        contract: ConfigContract | None = None,
        *,
        feature_sections: bool = True,
    ) -> Config:
        """Validate an in-memory ``Butler:`` mapping (what :func:`load_config` does after YAML).

        With ``feature_sections`` false only the sections every Butler has are validated:
        enough to document the routes of a config that could not connect anywhere.
        """
        cfg = cls(copy.deepcopy(dict(butler)), base_dir, path, contract)
        cfg._validate(feature_sections)
        return cfg

    def get(self, dotted: str, default: Any = None) -> Any:
        """Value at a dotted path under ``Butler:``, or ``default`` when absent or null."""
        node: Any = self._data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return default if node is None else node

    def endpoint_enabled(self, key: str) -> bool:
        """Whether ``restServerEndpointsEnable.<key>`` is true (or absent, for a default-on key)."""
        return self._enabled.get(key, False)

    @property
    def enabled_endpoint_keys(self) -> tuple[str, ...]:
        """Enabled keys a loaded plugin declares, dotted, in the config file's order, then
        default-on ones."""
        return tuple(k for k, v in self._enabled.items() if v and k in self.contract.enable_keys)

    def needs(self, service: CoreService) -> bool:
        """Whether an enabled feature uses ``service`` (the scheduler starts tasks via QRS)."""
        if service is CoreService.QRS and self.get("scheduler.enable") is True:
            return True
        keys = self.contract.enable_keys
        return any(service in keys[key].needs for key in self.enabled_endpoint_keys if key in keys)

    def resolve_path(self, value: str | Path) -> Path:
        """A path from the config, relative ones taken from the config file's folder."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    @property
    def log_level(self) -> str:
        return str(self.get("logLevel", "info"))

    def _read_enable_map(self) -> dict[str, bool]:
        raw = self._data.get("restServerEndpointsEnable") or {}
        enabled: dict[str, bool] = {}
        if not isinstance(raw, Mapping):
            return enabled
        for key, value in _walk(raw):
            enabled[key] = value is True or (isinstance(value, str) and value.lower() == "true")
        for name, declared in self.contract.enable_keys.items():
            enabled.setdefault(name, declared.default)
        return enabled

    def _validate(self, feature_sections: bool) -> None:
        raw_enable = self._data.get("restServerEndpointsEnable")
        if raw_enable is not None and not isinstance(raw_enable, Mapping):
            raise ConfigError("Butler.restServerEndpointsEnable: must be a mapping")
        for key, value in _walk(raw_enable or {}):
            if not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
                raise ConfigError(
                    f"Butler.restServerEndpointsEnable.{key}: must be true or false, "
                    f"got {_show(value)}"
                )
            problem = unknown_enable_key(key, self.contract.enable_keys)
            if problem is not None:
                raise ConfigError(problem)
        level = self._data.get("logLevel", "info")
        if level not in LOG_LEVELS:
            raise ConfigError(
                f"Butler.logLevel: must be one of {', '.join(LOG_LEVELS)}, got {_show(level)}"
            )
        for section in self.contract.sections:
            wanted = section.needed(self) if feature_sections else section.needed is always
            if wanted:
                self._validate_section(section)
        self._enabled = self._read_enable_map()
        declared = self.contract.enable_keys
        enabled = {key for key in declared if self.endpoint_enabled(key)}
        self.warnings = [
            *reserved_key_warnings((k for k, on in self._enabled.items() if on), declared),
            *unsupported_warnings(
                self._data, declared, enabled, {section.path for section in self.contract.sections}
            ),
        ]

    def _validate_section(self, section: ConfigSection) -> None:
        raw = self.get(section.path, _MISSING)
        if raw is _MISSING:
            raw = None if (section.many or section.string_list) else {}
        placeholder = find_placeholder(raw, section.path)
        if placeholder is not None:
            where, text = placeholder
            raise ConfigError(
                f"Butler.{where}: still the config template's placeholder; set a real value, "
                f"got {_show(text, where)}"
            )
        if section.string_list:
            loaded: Any = _load_string_list(section.path, raw)
        elif section.many:
            if raw is not None and not isinstance(raw, list):
                raise ConfigError(f"Butler.{section.path}: must be a list (or null)")
            loaded = (
                None
                if raw is None
                else [
                    _load(section.schema, item, f"{section.path}.{i}") for i, item in enumerate(raw)
                ]
            )
        else:
            loaded = _load(section.schema, raw, section.path)
        self._set(section.path, loaded)

    def _set(self, dotted: str, value: Any) -> None:
        _assign(self._data, dotted, value)


def _walk(mapping: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _walk(value, f"{dotted}.")
        else:
            yield dotted, value


def _load(schema: type[Schema] | None, raw: Any, path: str) -> Any:
    assert schema is not None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"Butler.{path}: must be a mapping, got {_show(raw)}")
    try:
        return schema().load(dict(raw))
    except ValidationError as exc:
        sub_path, message = _first_error(exc.messages)
        full = f"{path}.{sub_path}" if sub_path else path
        value = _lookup(raw, sub_path)
        got = "" if value is _MISSING else f", got {_show(value, full)}"
        raise ConfigError(f"Butler.{full}: {message}{got}") from None


def _load_string_list(path: str, raw: Any) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ConfigError(f"Butler.{path}: must be a list of strings (or null), got {_show(raw)}")
    for i, item in enumerate(raw):
        if not isinstance(item, str):
            raise ConfigError(f"Butler.{path}.{i}: must be a string, got {_show(item)}")
    return list(raw)


def _first_error(messages: Any) -> tuple[str, str]:
    """Depth-first first error of a marshmallow message tree, as (dotted path, text)."""
    if isinstance(messages, Mapping):
        key, value = next(iter(messages.items()))
        sub, text = _first_error(value)
        return (f"{key}.{sub}" if sub else str(key)), text
    if isinstance(messages, list) and messages:
        return "", str(messages[0]).rstrip(".")
    return "", str(messages)


def _lookup(raw: Any, dotted: str) -> Any:
    node = raw
    for part in dotted.split(".") if dotted else []:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


_SECRET_KEY = re.compile(
    r"password|passphrase|secret|token|apikey|api_key|webhookurl|keyhash|^key$", re.I
)
"""Keys whose values are credentials: a config error names the key but never the value."""


def _show(value: Any, path: str = "") -> str:
    if _SECRET_KEY.search(path.rsplit(".", 1)[-1]):
        return "<redacted>"
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file into plain data, with the file name in any error."""
    try:
        with path.open(encoding="utf-8") as handle:
            return YAML(typ="safe", pure=True).load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except ValueError as exc:
        # An unquoted date that does not exist (2026-13-01) fails in the YAML loader itself.
        raise ConfigError(f"{path}: not valid YAML: {exc} (quote it to make it text)") from None


def load_config(
    path: str | Path,
    overrides: Mapping[str, Any] | None = None,
    contract: ConfigContract | None = None,
) -> Config:
    """Read, validate and return the config at ``path`` (``ConfigError`` on any problem).

    ``overrides`` maps dotted keys to values that replace the file's (command-line options);
    they are validated like the file's own values.
    """
    file = Path(path)
    data = read_yaml(file)
    if not isinstance(data, Mapping) or not isinstance(data.get("Butler"), Mapping):
        raise ConfigError(f"{file}: top level must be a mapping with a 'Butler' key")
    butler = copy.deepcopy(dict(data["Butler"]))
    for dotted, value in (overrides or {}).items():
        _assign(butler, dotted, value)
    return Config.from_mapping(butler, file.resolve().parent, file.resolve(), contract)


def _assign(root: dict[str, Any], dotted: str, value: Any) -> None:
    node = root
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value
