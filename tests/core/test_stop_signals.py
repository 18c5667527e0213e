"""A real ``butler`` process stops on its stop signals, TLS or not, answering what is in flight.

Only a process shows this: the signal handler runs on the thread that serves, which is
where cheroot's ``stop()`` waited for itself.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from butler.testing.certs import CertPaths, generate_certificates
from butler.testing.processes import free_port, wait_until_answering
from tests.fixtures.butler_process import butler_process
from tests.fixtures.http_receiver import Answer, HttpReceiver

SIGNALS = [signal.SIGINT, signal.SIGTERM]
if hasattr(signal, "SIGBREAK"):
    SIGNALS.append(signal.SIGBREAK)
SLACK = {"channel": "#reload", "from_user": "Butler", "msg": "in flight"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return generate_certificates(tmp_path_factory.mktemp("stop-tls"))


@pytest.fixture
def slow_webhook() -> object:
    receiver = HttpReceiver()
    receiver.start()
    receiver.answer(Answer(200, "ok", delay=1.5))
    yield receiver
    receiver.stop()


def tls_config(
    tmp_path: Path, port: int, certs: CertPaths, webhook: str, server: str, tls: bool = True
) -> Path:
    path = tmp_path / "butler.yaml"
    path.write_text(
        "Butler:\n  logLevel: info\n  restServerConfig:\n    enable: true\n"
        f"    server: {server}\n"
        f"    serverHost: 127.0.0.1\n    serverPort: {port}\n"
        f"    tls: {{enable: {'true' if tls else 'false'}, "
        f"cert: '{certs.server_cert}', key: '{certs.server_key}'}}\n"
        "  restServerEndpointsEnable: {butlerping: true, slackPostMessage: true}\n"
        f"  slackNotification: {{restMessage: {{webhookURL: '{webhook}/hook'}}}}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals sent with send_signal")
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize(
    ("server", "tls"),
    [("waitress", True), ("granian", True), ("granian", False)],
    ids=["cheroot-tls", "granian-tls", "granian-plain"],
)
def test_butler_stops_within_5_s_answering_the_request_in_flight(
    tmp_path: Path, certs: CertPaths, slow_webhook: HttpReceiver, sig: int, server: str, tls: bool
) -> None:
    port = free_port()
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    config = tls_config(tmp_path, port, certs, slow_webhook.url, server, tls)
    answers: list[requests.Response] = []
    with butler_process("-c", str(config)) as process:
        wait_until_answering(f"{base}/v4/butlerping", process, verify=str(certs.ca))

        def call() -> None:
            answers.append(
                requests.put(
                    f"{base}/v4/slackpostmessage", json=SLACK, verify=str(certs.ca), timeout=10
                )
            )

        caller = threading.Thread(target=call)
        caller.start()
        assert slow_webhook.wait_for(1), "the request never reached the webhook"
        signalled = time.monotonic()
        process.send_signal(sig)
        try:
            output, _ = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("butler did not stop within 5 s of the signal")
        stopped_after = time.monotonic() - signalled
        caller.join(10)
    assert process.returncode == 0, output[-2000:]
    assert stopped_after < 5
    assert [answer.status_code for answer in answers] == [201]
    assert "Butler stopped" in output


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals sent with send_signal")
def test_headless_butler_says_what_it_runs_and_logs_its_stop(tmp_path: Path) -> None:
    path = tmp_path / "butler.yaml"
    path.write_text("Butler:\n  restServerConfig: {enable: false}\n", encoding="utf-8")
    with butler_process("-c", str(path)) as process:
        assert process.stdout is not None
        first = [process.stdout.readline() for _ in range(2)]
        process.send_signal(signal.SIGTERM)
        output = "".join(first) + process.communicate(timeout=5)[0]
    assert process.returncode == 0
    assert (
        "WARNING butler: REST API off (Butler.restServerConfig.enable is false): runs nothing "
        "(scheduler and MQTT are off too)" in output
    )
    assert "Signal SIGTERM received: shutting down" in output
    assert output.rstrip().endswith("INFO butler: Butler stopped")
