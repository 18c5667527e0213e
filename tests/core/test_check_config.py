"""``check-config`` loads what ``run`` loads, so both refuse the same configs the same way.

Each problem is tried through both commands: exit 2 and the key path on one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from butler.cli import main
from butler.logging_setup import stop_logging
from butler.testing.certs import CertPaths, generate_certificates
from butler.testing.processes import free_port

COMMANDS = ["check-config", "run"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return generate_certificates(tmp_path_factory.mktemp("check-certs"))


def write(tmp_path: Path, body: str, *, rest: str = "enable: true") -> Path:
    path = tmp_path / "butler.yaml"
    path.write_text(
        f"Butler:\n  logLevel: info\n  restServerConfig:\n    {rest}\n"
        f"    serverHost: 127.0.0.1\n    serverPort: {free_port()}\n" + body,
        encoding="utf-8",
    )
    return path


def qrs_with(cert: str, key: str) -> str:
    return (
        "  restServerEndpointsEnable: {senseStartTask: true}\n"
        "  configQRS: {host: 127.0.0.1, port: 4242}\n"
        f"  cert: {{clientCert: '{cert}', clientCertKey: '{key}'}}\n"
    )


def tls_with(cert: str, key: str) -> str:
    return f"    tls: {{enable: true, cert: '{cert}', key: '{key}'}}\n"


def outcome(command: str, config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([command, "-c", str(config)])
    stop_logging()
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.mark.parametrize("command", COMMANDS)
def test_a_placeholder_certificate_path_is_a_config_error(
    command, tmp_path, capsys, restore_logging
):
    config = write(tmp_path, qrs_with("<path/to/cert/client.pem>", "<path/to/cert/client_key.pem>"))
    code, output = outcome(command, config, capsys)
    assert code == 2
    assert "Config error: Butler.cert.clientCert: still the config template's placeholder" in output
    assert "<path/to/cert/client.pem>" in output
    assert "Config OK" not in output


@pytest.mark.parametrize("command", COMMANDS)
def test_a_key_that_does_not_match_its_certificate_is_a_config_error(
    command, tmp_path, capsys, restore_logging, certs
):
    config = write(tmp_path, qrs_with(str(certs.client_cert), str(certs.server_key)))
    code, output = outcome(command, config, capsys)
    assert code == 2
    assert "Butler.cert.clientCert / Butler.cert.clientCertKey" in output
    assert "do not load as a pair" in output


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_tls_file_is_a_config_error_not_a_listen_error(
    command, tmp_path, capsys, restore_logging, certs
):
    body = tls_with(str(tmp_path / "no-such.pem"), str(certs.server_key))
    code, output = outcome(command, write(tmp_path, body), capsys)
    assert code == 2
    assert "Butler.restServerConfig.tls.cert: file not found:" in output
    assert "Cannot listen" not in output


@pytest.mark.parametrize("command", COMMANDS)
def test_a_tls_key_that_does_not_load_is_a_config_error(
    command, tmp_path, capsys, restore_logging, certs
):
    broken = tmp_path / "broken_key.pem"
    broken.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n", encoding="utf-8")
    code, output = outcome(
        command, write(tmp_path, tls_with(str(certs.server_cert), str(broken))), capsys
    )
    assert code == 2
    assert "Butler.restServerConfig.tls.cert / Butler.restServerConfig.tls.key" in output
    assert "Cannot listen" not in output


def test_good_certificates_pass_check_config(tmp_path, capsys, certs):
    body = tls_with(str(certs.server_cert), str(certs.server_key)) + qrs_with(
        str(certs.client_cert), str(certs.client_key)
    )
    code, output = outcome("check-config", write(tmp_path, body), capsys)
    assert code == 0, output
    assert "(TLS)" in output
    assert output.rstrip().endswith("Config OK")


def test_with_the_rest_api_off_the_summary_says_what_runs(tmp_path, capsys):
    code, output = outcome("check-config", write(tmp_path, "", rest="enable: false"), capsys)
    assert code == 0
    assert (
        "REST server: off (Butler.restServerConfig.enable is false): runs nothing "
        "(scheduler and MQTT are off too)" in output
    )
    assert "127.0.0.1:" not in output
    assert "Enabled endpoints: none served (the REST API is off)" in output


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        ("{dates: ['2026-13-01']}", "Butler.scheduler.calendars.closed.dates.0: must be an ISO"),
        ("{dates: [2026-13-01]}", "butler.yaml: not valid YAML: month must be in 1..12"),
        ("{icsFile: nowhere.ics}", "Butler.scheduler.calendars.closed.icsFile: cannot read"),
        ("{holidays: {country: XX}}", "Butler.scheduler.calendars.closed.holidays.country"),
    ],
)
def test_a_bad_calendar_stops_start_up_naming_the_key(
    tmp_path, capsys, restore_logging, certs, calendar, message
):
    config = write(
        tmp_path,
        qrs_with(str(certs.client_cert), str(certs.client_key))
        + f"  scheduler:\n    enable: true\n    calendars:\n      closed: {calendar}\n",
    )
    code, output = outcome("check-config", config, capsys)
    assert code == 2
    assert "Config error: " in output and message in output
