"""Issue 12, defect 4: features of the original that this version lacks are named, once.

An admin upgrading keeps the original's config file. Each feature it switches on that Butler
for Python does not have is listed by ``check-config`` and logged at start-up, once, with
what to use instead where there is something. The original's full template and a config
switching on every such feature go through both commands.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from butler.cli import main
from butler.config import (
    Config,
    ConfigContract,
    ConfigSection,
    EnableKey,
    always,
    default_contract,
)
from butler.config_schema import OpenSchema
from butler.testing.certs import CertPaths, generate_certificates
from butler.testing.processes import free_port, wait_until_answering
from butler.testing.qrs_simulator import QrsSimulator
from butler.unsupported import UNSUPPORTED
from tests.fixtures.butler_process import butler_process, stop
from tests.fixtures.mqtt import Mosquitto, mosquitto, mosquitto_factory
from tests.fixtures.original_config import changed, filled_template, template, write_config
from tests.fixtures.qrs import butler_qrs_config

__all__ = ["mosquitto", "mosquitto_factory"]

EVERY_UNSUPPORTED_FEATURE_ON: dict[str, Any] = {
    "anonTelemetry": True,
    "systemInfo.enable": True,
    "configVisualisation.enable": True,
    "heartbeat.enable": True,
    "dockerHealthCheck.enable": True,
    "uptimeMonitor.enable": True,
    "uptimeMonitor.storeNewRelic.enable": True,
    "influxDb.enable": True,
    "scriptLog.storeOnDisk.clientManaged.reloadTaskFailure.enable": True,
    "scriptLog.storeOnDisk.qsCloud.appReloadFailure.enable": True,
    "qlikSenseVersion.versionMonitor.enable": True,
    "qlikSenseLicense.serverLicenseMonitor.enable": True,
    "qlikSenseLicense.licenseMonitor.enable": True,
    "qlikSenseLicense.licenseRelease.enable": True,
    "teamsNotification.enable": True,
    "teamsNotification.reloadTaskFailure.enable": True,
    "teamsNotification.reloadTaskAborted.enable": True,
    "slackNotification.enable": True,
    "slackNotification.reloadTaskFailure.enable": True,
    "slackNotification.reloadTaskAborted.enable": True,
    "emailNotification.enable": True,
    "emailNotification.reloadTaskFailure.enable": True,
    "emailNotification.reloadTaskAborted.enable": True,
    "emailNotification.reloadTaskSuccess.enable": True,
    "emailNotification.distributeTaskFailure.enable": True,
    "emailNotification.distributeTaskSuccess.enable": True,
    "emailNotification.preloadTaskFailure.enable": True,
    "emailNotification.preloadTaskSuccess.enable": True,
    "webhookNotification.enable": True,
    "incidentTool.signl4.enable": True,
    "incidentTool.newRelic.enable": True,
    "signl4.enable": True,
    "newRelic.enable": True,
    "udpServerConfig.enable": True,
    "serviceMonitor.enable": True,
    "qlikSenseCloud.enable": "true",
    "mqttConfig.enable": True,
    "mqttConfig.qlikSenseCloud.event.mqttForward.enable": True,
    "restServerApiDocGenerate": True,
}
"""Every switch of the original's template for a feature outside this version (masters
such as ``emailNotification.enable`` with the alerts they gate)."""

EXPECTED_WARNINGS = [
    "anonTelemetry",
    "systemInfo.enable",
    "configVisualisation.enable",
    "heartbeat.enable",
    "dockerHealthCheck.enable",
    "uptimeMonitor.enable",
    "influxDb.enable",
    "scriptLog.storeOnDisk.clientManaged.reloadTaskFailure.enable",
    "scriptLog.storeOnDisk.qsCloud.appReloadFailure.enable",
    "qlikSenseVersion.versionMonitor.enable",
    "qlikSenseLicense.serverLicenseMonitor.enable",
    "qlikSenseLicense.licenseMonitor.enable",
    "qlikSenseLicense.licenseRelease.enable",
    "teamsNotification.reloadTaskFailure.enable",
    "teamsNotification.reloadTaskAborted.enable",
    "slackNotification.reloadTaskFailure.enable",
    "slackNotification.reloadTaskAborted.enable",
    "emailNotification.reloadTaskFailure.enable",
    "emailNotification.reloadTaskAborted.enable",
    "emailNotification.reloadTaskSuccess.enable",
    "emailNotification.distributeTaskFailure.enable",
    "emailNotification.distributeTaskSuccess.enable",
    "emailNotification.preloadTaskFailure.enable",
    "emailNotification.preloadTaskSuccess.enable",
    "webhookNotification.enable",
    "incidentTool.signl4.enable",
    "incidentTool.newRelic.enable",
    "signl4.enable",
    "newRelic.enable",
    "udpServerConfig.enable",
    "serviceMonitor.enable",
    "qlikSenseCloud.enable",
    "mqttConfig.qlikSenseCloud.event.mqttForward.enable",
    "restServerApiDocGenerate",
]
"""The switches named, in the order they are named: one line each."""

TEMPLATE_WARNINGS = ["systemInfo.enable", "configVisualisation.enable"]
"""What the template switches on that this version lacks (its ``anonTelemetry`` is false)."""

SUPPORTED_SECTIONS = {
    "logLevel",
    "fileLogging",
    "logDirectory",
    "thirdPartyToolsCredentials",
    "slackNotification",
    "mqttConfig",
    "restServerConfig",
    "fileCopyApprovedDirectories",
    "fileMoveApprovedDirectories",
    "fileDeleteApprovedDirectories",
    "restServerEndpointsEnable",
    "restServerEndpointsConfig",
    "startTaskFilter",
    "scheduler",
    "keyValueStore",
    "cert",
    "configEngine",
    "configQRS",
    "configDirectories",
}
"""Top-level sections of the original's template that this version reads."""

WARNING_LINE = re.compile(r"Butler\.(\S+) is on, but this version has no ")


def warned(text: str) -> list[str]:
    """The switch paths named by unsupported-feature warnings in ``text``, in order."""
    return WARNING_LINE.findall(text)


def every_feature_on() -> dict[str, Any]:
    return filled_template(EVERY_UNSUPPORTED_FEATURE_ON)


def test_every_section_of_the_original_template_is_read_or_named_as_unsupported() -> None:
    named = {item.path.split(".")[0] for item in UNSUPPORTED}
    assert set(template()) - SUPPORTED_SECTIONS - named == set()


def test_each_switched_on_unsupported_feature_is_one_warning(tmp_path: Path) -> None:
    config = Config.from_mapping(every_feature_on(), tmp_path)
    assert warned("\n".join(config.warnings)) == EXPECTED_WARNINGS
    assert len(config.warnings) == len(EXPECTED_WARNINGS)


def test_the_original_template_as_shipped_names_its_defaults(tmp_path: Path) -> None:
    config = Config.from_mapping(filled_template(), tmp_path)
    assert warned("\n".join(config.warnings)) == TEMPLATE_WARNINGS


def test_an_alert_under_a_switched_off_master_is_not_named(tmp_path: Path) -> None:
    butler = filled_template(
        {
            "anonTelemetry": False,
            "systemInfo.enable": False,
            "configVisualisation.enable": False,
            "emailNotification.enable": False,
            "emailNotification.reloadTaskFailure.enable": True,
            "mqttConfig.enable": False,
            "mqttConfig.qlikSenseCloud.event.mqttForward.enable": True,
        }
    )
    assert Config.from_mapping(butler, tmp_path).warnings == []


def test_the_replacement_is_named_only_when_a_plugin_serves_it(tmp_path: Path) -> None:
    butler = filled_template({"dockerHealthCheck.enable": True, "influxDb.enable": True})
    base = default_contract()
    keys = {
        name: key for name, key in base.enable_keys.items() if name not in ("health", "metrics")
    }
    without = Config.from_mapping(butler, tmp_path, contract=ConfigContract(keys, base.sections))
    served = {**keys, "health": EnableKey("health"), "metrics": EnableKey("metrics")}
    with_them = Config.from_mapping(
        butler, tmp_path, contract=ConfigContract(served, base.sections)
    )

    def line(config: Config, path: str) -> str:
        return next(w for w in config.warnings if w.startswith(f"Butler.{path} "))

    assert line(without, "dockerHealthCheck.enable") == (
        "Butler.dockerHealthCheck.enable is on, but this version has no Docker health-check "
        "server on dockerHealthCheck.port"
    )
    assert line(with_them, "dockerHealthCheck.enable") == (
        "Butler.dockerHealthCheck.enable is on, but this version has no Docker health-check "
        "server on dockerHealthCheck.port; use GET /health on the REST port instead, which "
        "needs Butler.restServerEndpointsEnable.health: true"
    )
    assert line(with_them, "influxDb.enable") == (
        "Butler.influxDb.enable is on, but this version has no InfluxDB storage of reload "
        "events and metrics; let a Prometheus scraper read GET /metrics instead (Telegraf can "
        "forward it to InfluxDB), which needs Butler.restServerEndpointsEnable.metrics: true"
    )
    butler["restServerEndpointsEnable"].update(health=True, metrics=True)
    on = Config.from_mapping(butler, tmp_path, contract=ConfigContract(served, base.sections))
    assert line(on, "dockerHealthCheck.enable").endswith(
        "; use GET /health on the REST port instead"
    )
    assert line(without, "configVisualisation.enable").endswith(
        "; `butler check-config -c <file>` summarises the config instead"
    )


def test_check_config_lists_every_unsupported_feature_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_certificates(tmp_path / "certs")  # check-config loads them, as run does
    path = write_config(tmp_path, every_feature_on())
    assert main(["check-config", "-c", str(path)]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert all(line.startswith("Warning: Butler.") for line in lines)
    assert warned(captured.err) == EXPECTED_WARNINGS
    assert captured.out.rstrip().endswith("Config OK")


def test_check_config_on_the_filled_original_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_certificates(tmp_path / "certs")  # check-config loads them, as run does
    assert main(["check-config", "-c", str(write_config(tmp_path, filled_template()))]) == 0
    captured = capsys.readouterr()
    assert warned(captured.err) == TEMPLATE_WARNINGS
    assert "Config OK" in captured.out


def _runnable(
    butler: dict[str, Any], simulator: QrsSimulator, certs: CertPaths, port: int
) -> dict[str, Any]:
    """``butler`` pointed at the QRS simulator and a free local port."""
    qrs = butler_qrs_config(simulator, certs)
    return changed(
        butler,
        {
            "configQRS": {**butler["configQRS"], **qrs["configQRS"]},
            "cert": qrs["cert"],
            "restServerConfig.serverPort": port,
        },
    )


def _start_and_stop(config: Path, port: int) -> str:
    with butler_process("-c", str(config)) as process:
        wait_until_answering(f"http://127.0.0.1:{port}/v4/butlerping", process)
        output = stop(process, signal.SIGINT)
    assert process.returncode == 0, output
    return output


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_logs_every_unsupported_feature_once_at_start_up(
    tmp_path: Path, qrs_simulator: QrsSimulator, qrs_certs: CertPaths, mosquitto: Mosquitto
) -> None:
    port = free_port()
    butler = _runnable(every_feature_on(), qrs_simulator, qrs_certs, port)
    butler["mqttConfig"].update(brokerHost=mosquitto.host, brokerPort=mosquitto.port)
    butler["restServerEndpointsEnable"]["dashboard"] = True
    output = _start_and_stop(write_config(tmp_path, butler), port)
    warnings = [line for line in output.splitlines() if " WARNING " in line]
    assert warned("\n".join(warnings)) == EXPECTED_WARNINGS
    assert warned(output) == EXPECTED_WARNINGS
    planned = "Butler.restServerEndpointsEnable.dashboard is true, but that feature is not"
    assert output.count(planned) == 1
    assert sum(planned in line for line in warnings) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_of_the_filled_original_template_names_its_defaults(
    tmp_path: Path, qrs_simulator: QrsSimulator, qrs_certs: CertPaths
) -> None:
    port = free_port()
    butler = _runnable(filled_template(), qrs_simulator, qrs_certs, port)
    output = _start_and_stop(write_config(tmp_path, butler), port)
    assert warned(output) == TEMPLATE_WARNINGS
    assert "Butler stopped" in output


def test_a_plugin_claiming_the_section_of_a_feature_silences_its_warning(tmp_path: Path) -> None:
    """The plugin guide's example plugin owns a ``heartbeat`` section: it is the feature."""
    butler = filled_template({"heartbeat.enable": True, "dockerHealthCheck.enable": True})
    base = default_contract()
    claimed = (*base.sections, ConfigSection("heartbeat", OpenSchema, always))
    config = Config.from_mapping(
        butler, tmp_path, contract=ConfigContract(base.enable_keys, claimed)
    )
    assert warned("\n".join(config.warnings)) == [*TEMPLATE_WARNINGS, "dockerHealthCheck.enable"]
    unclaimed = Config.from_mapping(butler, tmp_path)
    assert "heartbeat.enable" in warned("\n".join(unclaimed.warnings))
