"""scripts/packaging/butler.service: systemd accepts it, and what it starts and sends works."""

import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from butler.cli import build_parser
from butler.plugins import default_plugin_manager
from butler.runner import EXIT_CONFIG
from butler.testing.processes import free_port, wait_until_answering
from tests.fixtures.butler_process import BUTLER, child_process, stop

UNIT = Path(__file__).parents[2] / "scripts" / "packaging" / "butler.service"
INSTALLED_BUTLER = "/opt/butler/.venv/bin/butler"


def directives() -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values in file order (a key may repeat in a unit file)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"directive outside a section: {raw}"
        current.setdefault(key, []).append(value)
    return sections


def one(section: str, key: str) -> str:
    values = directives()[section].get(key, [])
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def test_unit_runs_butler_as_its_own_user_and_restarts_on_failure():
    assert set(directives()) == {"Unit", "Service", "Install"}
    assert one("Service", "User") == "butler"
    assert one("Service", "WorkingDirectory") == "/var/lib/butler"
    assert one("Service", "Restart") == "on-failure"
    assert one("Service", "RestartPreventExitStatus") == str(EXIT_CONFIG)
    assert one("Service", "KillSignal") in {"SIGINT", "SIGTERM"}
    assert one("Service", "StateDirectory") == "butler"
    assert one("Service", "LogsDirectory") == "butler"
    assert one("Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in one("Unit", "After")


def test_exec_start_is_a_run_command_butler_accepts():
    command = shlex.split(one("Service", "ExecStart"))
    assert command[0] == INSTALLED_BUTLER
    args = build_parser(default_plugin_manager()).parse_args(command[1:])
    assert args.command == "run"
    assert args.configfile == "/etc/butler/butler.yaml"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    # verify also checks that ExecStart's program exists: point it at this checkout's butler.
    unit = tmp_path / "butler.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace(INSTALLED_BUTLER, str(BUTLER)), encoding="utf-8"
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_kill_signal_stops_butler_within_the_stop_timeout(tmp_path):
    port = free_port()
    config = tmp_path / "butler.yaml"
    config.write_text(
        "Butler:\n  restServerConfig:\n    enable: true\n    serverHost: 127.0.0.1\n"
        f"    serverPort: {port}\n  restServerEndpointsEnable:\n    butlerping: true\n",
        encoding="utf-8",
    )
    command = shlex.split(one("Service", "ExecStart"))
    command[0] = str(BUTLER)
    command[-1] = str(config)
    with child_process(command, cwd=tmp_path) as process:
        wait_until_answering(f"http://127.0.0.1:{port}/v4/butlerping", process)
        output = stop(
            process,
            signal.Signals[one("Service", "KillSignal")],
            timeout=float(one("Service", "TimeoutStopSec")),
        )
    assert process.returncode == 0
    assert "Butler stopped" in output
