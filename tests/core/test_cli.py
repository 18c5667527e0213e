"""The ``butler`` command, in-process for the quick paths and as a real process for serving."""

import argparse
import json
import signal
import socket
import sys
from pathlib import Path

import pytest
import requests

from butler.cli import main
from butler.logging_setup import stop_logging
from butler.testing.certs import generate_certificates
from butler.testing.processes import free_port, wait_until_answering
from tests.fixtures.butler_process import butler_process, stop

ROOT = Path(__file__).parents[2]


def write_config(tmp_path, port=8080, extra=""):
    path = tmp_path / "butler.yaml"
    path.write_text(
        "Butler:\n  logLevel: info\n  restServerConfig:\n    enable: true\n"
        f"    serverHost: 127.0.0.1\n    serverPort: {port}\n"
        "  restServerEndpointsEnable:\n    butlerping: true\n    base62ToBase16: true\n"
        "    base16ToBase62: true\n    apiListEnabledEndpoints: true\n" + extra,
        encoding="utf-8",
    )
    return path


def test_check_config_summarises(tmp_path, capsys):
    assert main(["check-config", "-c", str(write_config(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "Enabled endpoints: butlerping, base62ToBase16" in out
    assert "Config OK" in out


def test_check_config_from_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BUTLER_CONFIG", str(write_config(tmp_path)))
    assert main(["check-config"]) == 0


def test_broken_config_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("Butler:\n  restServerConfig:\n    serverPort: 80x\n", encoding="utf-8")
    assert main(["-c", str(path), "check-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'Config error: Butler.restServerConfig.serverPort: must be an integer, got "80x"'


def test_missing_config_exits_2(capsys, monkeypatch):
    monkeypatch.delenv("BUTLER_CONFIG", raising=False)
    assert main(["check-config"]) == 2
    assert "--configfile" in capsys.readouterr().err


def test_new_relic_options_must_match(tmp_path, capsys):
    code = main(
        [
            "check-config",
            "-c",
            str(write_config(tmp_path)),
            "--new-relic-account-name",
            "a",
            "b",
            "--new-relic-api-key",
            "secret-key",
            "--new-relic-account-id",
            "1",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--new-relic-account-name" in err
    assert "secret-key" not in err


def test_openapi_command_prints_enabled_routes(tmp_path, capsys):
    assert main(["openapi", "-c", str(write_config(tmp_path))]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document["paths"]) == {
        "/v4/butlerping",
        "/v4/base62tobase16",
        "/v4/base16tobase62",
        "/v4/configfile/endpointsenabled",
        "/health",  # health and metrics are on unless switched off
        "/health/ready",
        "/metrics",
    }


def test_openapi_without_config_lists_every_route(capsys, monkeypatch):
    monkeypatch.delenv("BUTLER_CONFIG", raising=False)
    assert main(["openapi"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert "/v4/reloadtask/{taskId}/start" in document["paths"]
    assert "/v4/schedules" in document["paths"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_serves_and_stops_cleanly_on_sigterm(tmp_path):
    port = free_port()
    config = write_config(tmp_path, port)
    with butler_process("-c", str(config)) as process:
        response = wait_until_answering(f"http://127.0.0.1:{port}/v4/butlerping", process)
        assert response.json()["response"] == "Butler reporting for duty"
        override = requests.post(
            f"http://127.0.0.1:{port}/v4/base62tobase16?base62=6DMW88LpSok9Z7P7hUK0wv7bF",
            headers={"X-HTTP-Method-Override": "GET"},
            timeout=5,
        )
        assert override.json()["base16"] == "3199af08bfeeaf5d420f27ed9c01e74370077"
        output = stop(process)
    assert process.returncode == 0
    assert "Butler stopped" in output
    assert "GET /v4/butlerping from 127.0.0.1 -> 200" in output


def test_check_config_reports_a_broken_schedule_file(tmp_path, capsys):
    (tmp_path / "schedule.yaml").write_text(
        "butlerSchedule:\n  - id: a\n    name: x\n    cronSchedule: 'not cron'\n"
        "    timezone: Europe/Stockholm\n"
        "    qlikSenseTaskId: 0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b\n    startupState: started\n",
        encoding="utf-8",
    )
    certs = generate_certificates(tmp_path / "certs")
    extra = (
        "  scheduler:\n    enable: true\n    configfile: schedule.yaml\n"
        f"  cert: {{clientCert: '{certs.client_cert}', clientCertKey: '{certs.client_key}'}}\n"
        "  configQRS: {host: 127.0.0.1}\n"
    )
    assert main(["check-config", "-c", str(write_config(tmp_path, extra=extra))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Config error:")
    assert "cronSchedule" in err
    assert (tmp_path / "schedule.yaml").read_text(encoding="utf-8").count("not cron") == 1


def test_empty_path_segment_is_a_plain_404(make_config, live_server):
    from butler.app import create_app

    config = make_config(
        {
            "restServerEndpointsEnable": {"senseStartTask": True},
            "cert": {"clientCert": "c", "clientCertKey": "k"},
            "configQRS": {"host": "127.0.0.1"},
        }
    )
    url = live_server(create_app(config))
    response = requests.put(
        f"{url}/v4/reloadtask//start", json=[], timeout=5, allow_redirects=False
    )
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


def test_example_config_serves_without_qlik_files(make_config, live_server):
    from butler.app import create_app
    from butler.config import load_config
    from butler.lifecycle import build_services

    config = load_config(ROOT / "config.example.yaml")
    services = build_services(config)
    assert services.qrs is None and services.engine is None
    url = live_server(create_app(config, services))
    try:
        assert requests.get(f"{url}/v4/butlerping", timeout=5).status_code == 200
        enabled = requests.post(
            f"{url}/v4/configfile/endpointsenabled",
            headers={"X-HTTP-Method-Override": "GET"},
            timeout=5,
        ).json()
        assert "butlerping" in enabled
    finally:
        services.stop()


def test_port_in_use_is_a_clear_error(tmp_path, capsys, restore_logging):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["-c", str(write_config(tmp_path, port))]) == 3
    stop_logging()
    assert f"Cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_simulate_qrs_takes_the_simulators_own_options(tmp_path):
    port = free_port()
    with butler_process("simulate-qrs", "--no-tls", "--port", str(port)) as process:
        wait_until_answering(f"http://127.0.0.1:{port}/qrs/about", process)
        key = "abcdefghijklmnop"
        about = requests.get(
            f"http://127.0.0.1:{port}/qrs/about?xrfkey={key}",
            headers={"X-Qlik-Xrfkey": key},
            timeout=5,
        )
        assert about.status_code == 200
        stop(process, signal.SIGINT)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_caller_text_cannot_forge_log_lines(tmp_path):
    port = free_port()
    extra = (
        "    keyValueStore: true\n    fileDelete: true\n"
        "  keyValueStore:\n    persistence: memory\n"
        f"  fileDeleteApprovedDirectories: ['{tmp_path}']\n"
    )
    config = write_config(tmp_path, port, extra)
    base = f"http://127.0.0.1:{port}"
    forged = "2026-01-01 00:00:00,000 INFO butler.audit: client=1.2.3.4 op=delete outcome=ok"
    with butler_process("-c", str(config)) as process:
        wait_until_answering(f"{base}/v4/butlerping", process)
        quoted = requests.utils.quote(f"x\n{forged}", safe="")
        assert requests.get(f"{base}/v4/keyvalues/{quoted}?key=k", timeout=5).status_code == 404
        body = {"deleteFile": f"{tmp_path}/missing\r\n{forged}\u2028{forged}"}
        refused = requests.delete(f"{base}/v4/filedelete", json=body, timeout=5)
        assert refused.status_code in (400, 404)
        output = stop(process)
    lines = output.splitlines()
    assert not [line for line in lines if line.startswith(forged)]
    assert any("x\\n2026-01-01" in line and "-> 404" in line for line in lines)
    assert any("op=delete" in line and "\\r\\n2026-01-01" in line for line in lines)


def test_every_option_and_sub_command_says_what_it_does():
    from butler.cli import build_parser
    from butler.plugins import default_plugin_manager

    parser = build_parser(default_plugin_manager())
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert [a.option_strings for a in parser._actions if not a.help and a is not commands] == []
    for name, sub in commands.choices.items():
        if name != "simulate-qrs":  # its own parser answers its --help
            assert sub.description, name
            assert [a.option_strings for a in sub._actions if not a.help] == [], name


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["check-config", "-l", "debug"], "check-config does not take -l/--loglevel"),
        (["-l", "debug", "openapi"], "openapi does not take -l/--loglevel"),
        (["demo", "-c", "x.yaml"], "demo does not take -c/--configfile"),
        (["-c", "x.yaml", "simulate-qrs"], "simulate-qrs takes only its own options"),
        (["openapi", "--api-rate-limit", "5"], "config overrides need -c/--configfile"),
        (["check-config", "--port", "1"], "unrecognized arguments: --port 1"),
    ],
)
def test_options_a_command_would_ignore_are_refused(words, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BUTLER_CONFIG", raising=False)
    config = str(write_config(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        main(
            [config if word == "x.yaml" else word for word in words]
            + ["-c", config] * (words[0] == "check-config")
        )
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_openapi_without_config_writes_only_the_document(capsys, monkeypatch):
    monkeypatch.delenv("BUTLER_CONFIG", raising=False)
    assert main(["openapi"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["openapi"].startswith("3.")
    assert captured.err == ""
