"""Load and validate a Butler YAML config file in the original's ``Butler:`` layout.

An existing config file of the original must load unchanged, so unknown sections and keys
are tolerated and only the sections behind enabled features are validated. Every error
names the key path and the offending value, because the person reading it is an admin
editing a large YAML file by hand.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import Schema, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from butler import config_schema as cs

log = logging.getLogger(__name__)

_MISSING = object()

ENDPOINT_KEYS: tuple[str, ...] = (
    "apiListEnabledEndpoints",
    "base62ToBase16",
    "base16ToBase62",
    "butlerping",
    "createDir",
    "createDirQVD",
    "fileDelete",
    "fileMove",
    "fileCopy",
    "keyValueStore",
    "mqttPublishMessage",
    "newRelic.postNewRelicMetric",
    "newRelic.postNewRelicEvent",
    "scheduler.createNewSchedule",
    "scheduler.getSchedule",
    "scheduler.getScheduleStatusAll",
    "scheduler.updateSchedule",
    "scheduler.deleteSchedule",
    "scheduler.startSchedule",
    "scheduler.stopSchedule",
    "senseAppReload",
    "senseAppDump",
    "senseListApps",
    "senseStartTask",
    "slackPostMessage",
)
"""Every ``restServerEndpointsEnable`` key, dotted for nested groups, in template order."""


def endpoint_enable_map(value: bool) -> dict[str, Any]:
    """A ``restServerEndpointsEnable`` mapping with every key set to ``value``."""
    tree: dict[str, Any] = {}
    for key in ENDPOINT_KEYS:
        node = tree
        *groups, leaf = key.split(".")
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = value
    return tree


LOG_LEVELS = ("silly", "debug", "verbose", "info", "warn", "error")


class ConfigError(Exception):
    """A config problem, already phrased as one line for the admin."""


@dataclass(frozen=True)
class _Section:
    path: str
    schema: type[Schema] | None
    needed: Callable[[Config], bool]
    many: bool = False
    string_list: bool = False


def _any_enabled(*keys: str) -> Callable[[Config], bool]:
    return lambda cfg: any(cfg.endpoint_enabled(k) for k in keys)


def _flag(path: str) -> Callable[[Config], bool]:
    return lambda cfg: cfg.get(path) is True


def needs_qrs(cfg: Config) -> bool:
    """Whether an enabled feature starts tasks, so a QRS connection must be configured."""
    return (
        cfg.endpoint_enabled("senseStartTask")
        or cfg.endpoint_enabled("senseAppReload")
        or cfg.get("scheduler.enable") is True
    )


def needs_engine(cfg: Config) -> bool:
    """Whether an enabled endpoint talks to the Qlik Sense Engine."""
    return any(cfg.endpoint_enabled(k) for k in ("senseAppReload", "senseAppDump", "senseListApps"))


def _always(cfg: Config) -> bool:
    return True


_SECTIONS: tuple[_Section, ...] = (
    _Section("restServerConfig", cs.RestServerConfig, _always),
    _Section("startTaskFilter", cs.StartTaskFilterSection, _always),
    _Section("cert", cs.CertSection, lambda c: needs_qrs(c) or needs_engine(c)),
    _Section("configQRS", cs.QrsSection, needs_qrs),
    _Section("configEngine", cs.EngineSection, needs_engine),
    _Section("scheduler", cs.SchedulerSection, _always),
    _Section("keyValueStore", cs.KeyValueStoreSection, _always),
    _Section("mqttConfig", cs.MqttSection, _flag("mqttConfig.enable")),
    _Section("fileCopyApprovedDirectories", cs.DirectoryPair, _any_enabled("fileCopy"), many=True),
    _Section("fileMoveApprovedDirectories", cs.DirectoryPair, _any_enabled("fileMove"), many=True),
    _Section("fileDeleteApprovedDirectories", None, _any_enabled("fileDelete"), string_list=True),
    _Section("createDirApprovedDirectories", None, _any_enabled("createDir"), string_list=True),
    _Section(
        "slackNotification.restMessage", cs.SlackRestMessage, _any_enabled("slackPostMessage")
    ),
    _Section(
        "thirdPartyToolsCredentials.newRelic",
        cs.NewRelicAccount,
        _any_enabled("newRelic.postNewRelicEvent", "newRelic.postNewRelicMetric"),
        many=True,
    ),
    _Section(
        "restServerEndpointsConfig.newRelic.postNewRelicEvent",
        cs.NewRelicDestination,
        _any_enabled("newRelic.postNewRelicEvent"),
    ),
    _Section(
        "restServerEndpointsConfig.newRelic.postNewRelicMetric",
        cs.NewRelicDestination,
        _any_enabled("newRelic.postNewRelicMetric"),
    ),
)


class Config:
    """The validated ``Butler:`` mapping plus where it came from.

    Values are plain Python data (dicts, lists, scalars) so plugins can read their own
    section with :meth:`get` without knowing YAML or marshmallow.
    """

    def __init__(self, data: Mapping[str, Any], base_dir: Path, path: Path | None = None):
        self._data: dict[str, Any] = dict(data)
        self.base_dir = base_dir
        self.path = path
        self._enabled = self._read_enable_map()

    @classmethod
    def from_mapping(
        cls, butler: Mapping[str, Any], base_dir: Path, path: Path | None = None
    ) -> Config:
        """Validate an in-memory ``Butler:`` mapping (what :func:`load_config` does after YAML)."""
        cfg = cls(copy.deepcopy(dict(butler)), base_dir, path)
        cfg._validate()
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
        """Whether ``restServerEndpointsEnable.<key>`` is exactly true."""
        return self._enabled.get(key, False)

    @property
    def enabled_endpoint_keys(self) -> tuple[str, ...]:
        """Enabled keys, dotted, in the order the config file lists them."""
        return tuple(k for k, v in self._enabled.items() if v)

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
        return enabled

    def _validate(self) -> None:
        raw_enable = self._data.get("restServerEndpointsEnable")
        if raw_enable is not None and not isinstance(raw_enable, Mapping):
            raise ConfigError("Butler.restServerEndpointsEnable: must be a mapping")
        for key, value in _walk(raw_enable or {}):
            if not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
                raise ConfigError(
                    f"Butler.restServerEndpointsEnable.{key}: must be true or false, "
                    f"got {_show(value)}"
                )
            if key not in ENDPOINT_KEYS:
                log.debug("Unknown restServerEndpointsEnable key %s ignored", key)
        level = self._data.get("logLevel", "info")
        if level not in LOG_LEVELS:
            raise ConfigError(
                f"Butler.logLevel: must be one of {', '.join(LOG_LEVELS)}, got {_show(level)}"
            )
        for section in _SECTIONS:
            if section.needed(self):
                self._validate_section(section)
        self._enabled = self._read_enable_map()

    def _validate_section(self, section: _Section) -> None:
        raw = self.get(section.path, _MISSING)
        if raw is _MISSING:
            raw = None if (section.many or section.string_list) else {}
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
        got = "" if value is _MISSING else f", got {_show(value)}"
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


def _show(value: Any) -> str:
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


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
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
    return Config.from_mapping(butler, file.resolve().parent, file.resolve())


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
