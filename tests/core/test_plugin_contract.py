"""The plugin contract end to end: a third-party plugin found by its entry point adds a config
section, a CLI option, a service with start/stop and a route, with no core change."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest
import requests

from butler.config import ConfigError, ConfigSection, EnableKey, always, load_config
from butler.endpoints import Endpoint
from butler.errors import FeatureUnavailable
from butler.hookspecs import hookimpl
from butler.lifecycle import build_services
from butler.plugins import config_contract, get_plugin_manager
from butler.services import Services
from butler.testing.processes import free_port, wait_until_answering
from tests.fixtures.butler_process import BUTLER, butler_process, stop

EXAMPLE = Path(__file__).parents[1] / "example_plugin"


def write_config(tmp_path: Path, port: int, heartbeat: str = "") -> Path:
    path = tmp_path / "butler.yaml"
    path.write_text(
        "Butler:\n  restServerConfig:\n    serverHost: 127.0.0.1\n"
        f"    serverPort: {port}\n"
        "  restServerEndpointsEnable:\n    heartbeat: true\n    plugins: true\n"
        "    butlerping: true\n" + heartbeat,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def installed_example(monkeypatch: pytest.MonkeyPatch) -> Iterator[pluggy.PluginManager]:
    """The example distribution on sys.path, and a plugin manager that found it."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    importlib.invalidate_caches()
    yield get_plugin_manager()
    sys.modules.pop("butler_heartbeat", None)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_third_party_plugin_is_validated_started_served_and_stopped(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, "  heartbeat:\n    intervalMs: 20\n")
    base = f"http://127.0.0.1:{port}"
    args = ("-c", str(config), "--heartbeat-message", "hello from the CLI")
    with butler_process(*args, env={"PYTHONPATH": str(EXAMPLE)}) as process:
        wait_until_answering(f"{base}/v4/butlerping", process)
        first = requests.get(f"{base}/v4/heartbeat", timeout=5).json()
        assert first["message"] == "hello from the CLI"
        assert first["running"] is True
        plugins = requests.get(f"{base}/v4/plugins", timeout=5).json()
        example = next(p for p in plugins if p["name"] == "heartbeat")
        assert example["version"] == "1.2.0"
        assert example["builtin"] is False
        assert example["endpoints"] == ["GET /v4/heartbeat"]
        assert "butler_services" in example["hooks"]
        assert [p["builtin"] for p in plugins] == [True] * (len(plugins) - 1) + [False]
        meta = next(p for p in plugins if p["name"] == "butler_plugins.meta")
        assert meta["endpoints"] == ["GET /v4/butlerping", "GET /v4/plugins"]
        document = requests.get(f"{base}/documentation/json", timeout=5).json()
        answers = document["paths"]["/v4/heartbeat"]["get"]["responses"]
        assert answers["200"] == {"description": "message, beats and running"}
        error = answers["503"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}
        output = stop(process)
    assert process.returncode == 0
    assert "Heartbeat started: hello from the CLI" in output
    stopped = output.index("Heartbeat stopped after")
    assert stopped < output.index("Butler stopped")


def test_third_party_section_is_validated_by_check_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, 8080, "  heartbeat:\n    intervalMs: 5\n")
    result = subprocess.run(
        [str(BUTLER), "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(EXAMPLE)},
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Config error: Butler.heartbeat.intervalMs: must be 10-60000, got 5"
    )


def test_section_of_a_disabled_plugin_key_is_not_validated(
    tmp_path: Path, installed_example: pluggy.PluginManager
) -> None:
    path = tmp_path / "butler.yaml"
    path.write_text("Butler:\n  heartbeat:\n    intervalMs: 5\n", encoding="utf-8")
    config = load_config(path, contract=config_contract(installed_example))
    assert config.get("heartbeat.intervalMs") == 5


def test_plugin_service_starts_after_clients_and_stops_before_them(
    tmp_path: Path, installed_example: pluggy.PluginManager
) -> None:
    from butler_heartbeat import Heartbeat

    from butler_plugins.health.monitor import HealthMonitor

    path = write_config(tmp_path, 8080)
    config = load_config(path, contract=config_contract(installed_example))
    services = build_services(config, installed_example)
    heartbeat = services.require(Heartbeat, "missing")
    assert config.get("heartbeat.intervalMs") == 1000
    events: list[str] = []

    class Probe:
        def __init__(self, name: str):
            self.name = name

        def start(self) -> None:
            events.append(f"start {self.name}")

        def stop(self) -> None:
            events.append(f"stop {self.name}")

    services.engine = Probe("engine")  # type: ignore[assignment]
    services.scheduler = Probe("scheduler")  # type: ignore[assignment]
    services.register(Probe, Probe("plugin"))
    assert services.ordered() == [
        services.engine,
        heartbeat,
        services.get(HealthMonitor),  # built-in, on by default
        services.get(Probe),
        services.scheduler,
    ]
    services.start()
    assert heartbeat.started
    services.stop()
    assert not heartbeat.started
    assert events == [
        "start engine",
        "start plugin",
        "start scheduler",
        "stop scheduler",
        "stop plugin",
        "stop engine",
    ]


def test_registry_is_typed_and_refuses_doubles(make_config: Any) -> None:
    services = Services(config=make_config())

    class Thing:
        pass

    class Other:
        pass

    with pytest.raises(FeatureUnavailable, match="no thing here"):
        services.require(Thing, "no thing here")
    thing = services.register(Thing, Thing())
    assert services.require(Thing, "x") is thing
    with pytest.raises(RuntimeError, match="already registered"):
        services.register(Thing, Thing())
    with pytest.raises(TypeError):
        services.register(Other, object())  # type: ignore[arg-type]


class _Declares:
    def __init__(self, keys: list[str], sections: list[str]):
        self.keys = keys
        self.sections = sections

    @hookimpl
    def butler_enable_keys(self) -> list[EnableKey]:
        return [EnableKey(key) for key in self.keys]

    @hookimpl
    def butler_config_sections(self) -> list[ConfigSection]:
        return [ConfigSection(path, None, always, string_list=True) for path in self.sections]


def test_an_enable_key_declared_twice_names_both_plugins() -> None:
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(_Declares(["butlerping"], []), "copycat")
    with pytest.raises(RuntimeError, match=r"butlerping .*butler_plugins.meta and copycat"):
        config_contract(pm)


def test_a_core_section_cannot_be_claimed_by_a_plugin() -> None:
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(_Declares([], ["configQRS"]), "grabby")
    with pytest.raises(RuntimeError, match=r"Butler.configQRS is claimed by the core"):
        config_contract(pm)


def test_a_plugin_section_is_loaded_with_its_rules(tmp_path: Path) -> None:
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(_Declares([], ["extraFolders"]), "folders")
    path = tmp_path / "butler.yaml"
    path.write_text("Butler:\n  extraFolders: [a, 3]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^Butler\.extraFolders\.1: must be a string, got 3$"):
        load_config(path, contract=config_contract(pm))


def test_an_endpoint_under_an_undeclared_key_fails_loudly(make_config: Any) -> None:
    from butler.app import create_app

    class Stray:
        @hookimpl
        def butler_endpoints(self, config: Any, services: Any) -> list[Endpoint]:
            return [Endpoint("nobodysKey", "GET", "/v4/stray", lambda c: {}, "x", "X")]

    pm = get_plugin_manager(load_entry_points=False)
    pm.register(Stray(), "stray")
    with pytest.raises(
        RuntimeError, match="stray serves GET /v4/stray under enable key nobodysKey"
    ):
        create_app(make_config(), plugin_manager=pm)
