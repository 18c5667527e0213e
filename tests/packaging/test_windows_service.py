"""The WinSW service definition and the ``butler service`` command, on any OS.

What WinSW does with the file (SCM registration, CTRL_C on stop) happens on Windows only;
what Butler writes and runs is checked here: the XML, the command lines, and that the
command the service starts is one Butler accepts and stops cleanly on SIGINT.
"""

import json
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path, PureWindowsPath

import pytest
import requests

from butler import __version__
from butler.cli import build_parser, main
from butler.plugins import default_plugin_manager
from butler.testing.processes import free_port, wait_until_answering
from butler.windows_service import (
    ServiceError,
    ServiceSpec,
    definition_xml,
    install_commands,
    uninstall_commands,
)
from tests.fixtures.butler_process import child_process, stop

SPEC = ServiceSpec(
    service_id="butler",
    python=PureWindowsPath(r"C:\Butler\.venv\Scripts\python.exe"),
    config=PureWindowsPath(r"D:\Butler Data\config & certs\butler.yaml"),
    service_dir=PureWindowsPath(r"D:\Butler Data\service"),
)


def parsed(spec=SPEC):
    return ET.fromstring(definition_xml(spec))


def test_definition_runs_butler_with_the_config_from_its_folder():
    root = parsed()
    assert root.tag == "service"
    assert root.findtext("id") == "butler"
    assert root.findtext("executable") == r"C:\Butler\.venv\Scripts\python.exe"
    # One element per argument, unquoted: WinSW quotes the one with spaces itself.
    assert [a.text for a in root.findall("argument")] == [
        "-m",
        "butler",
        "run",
        "-c",
        r"D:\Butler Data\config & certs\butler.yaml",
    ]
    assert root.findtext("workingdirectory") == r"D:\Butler Data\config & certs"
    assert {e.get("name"): e.get("value") for e in root.findall("env")} == {
        "PYTHONUTF8": "1",
        "PYTHONUNBUFFERED": "1",
    }


def test_definition_starts_at_boot_restarts_on_failure_and_stops_with_a_timeout():
    root = parsed()
    assert root.findtext("startmode") == "Automatic"
    assert root.findtext("delayedAutoStart") == "true"
    assert [(e.get("action"), e.get("delay")) for e in root.findall("onfailure")] == [
        ("restart", "10 sec"),
        ("restart", "30 sec"),
        ("restart", "60 sec"),
    ]
    assert root.findtext("resetfailure") == "1 hour"
    assert root.findtext("stoptimeout") == "30 sec"
    # Not stopargument: that would make WinSW start a second process instead of CTRL_C.
    assert root.find("stopargument") is None
    assert root.find("stopexecutable") is None


def test_definition_logs_to_rolling_files_in_the_service_folder():
    root = parsed()
    assert root.findtext("logpath") == r"D:\Butler Data\service\logs"
    log = root.find("log")
    assert log is not None
    assert log.get("mode") == "roll-by-size"
    assert log.findtext("sizeThreshold") == "10240"
    assert log.findtext("keepFiles") == "8"


def test_definition_paths_have_backslashes_and_no_account_secrets():
    text = definition_xml(SPEC)
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    root = ET.fromstring(text)
    for tag in ("executable", "workingdirectory", "logpath"):
        assert "/" not in (root.findtext(tag) or "/")
    assert root.find("serviceaccount") is None
    assert "password" not in text.lower()


def test_service_name_and_paths_are_checked():
    with pytest.raises(ServiceError, match="letters, digits"):
        ServiceSpec("Butler for Python", SPEC.python, SPEC.config, SPEC.service_dir)
    with pytest.raises(ServiceError, match="absolute"):
        ServiceSpec("butler", SPEC.python, PureWindowsPath("butler.yaml"), SPEC.service_dir)
    with pytest.raises(ServiceError, match="expand"):
        ServiceSpec(
            "butler", SPEC.python, PureWindowsPath(r"C:\%TEMP%\butler.yaml"), SPEC.service_dir
        )


def test_install_and_uninstall_command_lines():
    exe = r"D:\Butler Data\service\butler.exe"
    assert SPEC.wrapper == PureWindowsPath(exe)
    assert SPEC.definition_file == PureWindowsPath(r"D:\Butler Data\service\butler.xml")
    assert install_commands(SPEC.wrapper) == [[exe, "install"], [exe, "start"]]
    assert uninstall_commands(SPEC.wrapper) == [[exe, "stop"], [exe, "uninstall"]]
    second = ServiceSpec("butler-test", SPEC.python, SPEC.config, SPEC.service_dir)
    assert second.wrapper == PureWindowsPath(r"D:\Butler Data\service\butler-test.exe")


def test_service_arguments_are_a_run_command_butler_accepts():
    args = build_parser(default_plugin_manager()).parse_args(SPEC.arguments[2:])
    assert args.command == "run"
    assert args.configfile == str(SPEC.config)


def test_python_dash_m_butler_is_the_butler_command():
    result = subprocess.run(
        [sys.executable, "-m", "butler", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"butler {__version__}"


def write_config(folder: Path, port: int = 8080) -> Path:
    path = folder / "butler.yaml"
    path.write_text(
        "Butler:\n  restServerConfig:\n    enable: true\n    serverHost: 127.0.0.1\n"
        f"    serverPort: {port}\n  restServerEndpointsEnable:\n    butlerping: true\n",
        encoding="utf-8",
    )
    return path


def dry_run_definition(output: str) -> ET.Element:
    start = output.index("<?xml")
    return ET.fromstring(output[start : output.index("Would run:")])


def test_dry_run_checks_the_config_then_prints_the_plan(tmp_path, capsys):
    config = write_config(tmp_path)
    winsw = tmp_path / "WinSW-x64.exe"
    code = main(["service", "install", "--dry-run", "-c", str(config), "--winsw", str(winsw)])
    assert code == 0
    out = capsys.readouterr().out
    service_dir = PureWindowsPath(tmp_path / "service")
    assert f"Would copy {winsw} to {service_dir / 'butler.exe'}" in out
    assert f"Would write {service_dir / 'butler.xml'}:" in out
    root = dry_run_definition(out)
    assert root.findall("argument")[-1].text == str(PureWindowsPath(config))
    assert root.findtext("executable") == str(PureWindowsPath(sys.executable))
    assert f"  {service_dir / 'butler.exe'} install\n" in out
    assert not (tmp_path / "service").exists()


def test_install_refuses_a_config_that_check_config_refuses(tmp_path, capsys):
    config = tmp_path / "butler.yaml"
    config.write_text("Butler:\n  restServerConfig:\n    serverPort: 80x\n", encoding="utf-8")
    assert main(["service", "install", "--dry-run", "-c", str(config)]) == 2
    captured = capsys.readouterr()
    assert "Butler.restServerConfig.serverPort: must be an integer" in captured.err
    assert "not installed" in captured.err
    assert "Would write" not in captured.out


def test_uninstall_needs_a_config_or_a_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BUTLER_CONFIG", raising=False)
    assert main(["service", "uninstall", "--dry-run"]) == 2
    assert "--configfile" in capsys.readouterr().err
    assert main(["service", "uninstall", "--dry-run", "--dir", str(tmp_path)]) == 0
    assert f"{PureWindowsPath(tmp_path) / 'butler.exe'} uninstall" in capsys.readouterr().out


@pytest.mark.skipif(sys.platform == "win32", reason="the refusal is for other OSes")
def test_install_elsewhere_than_windows_says_what_to_use_and_changes_nothing(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["service", "install", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Windows only" in err
    assert "systemd" in err
    assert not (tmp_path / "service").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_service_command_stops_cleanly_on_sigint(tmp_path):
    """WinSW stops the service with CTRL_C_EVENT, which Python delivers as SIGINT."""
    port = free_port()
    config = write_config(tmp_path, port)
    command = [sys.executable, *SPEC.arguments[:-1], str(config)]
    with child_process(command, cwd=tmp_path) as process:
        wait_until_answering(f"http://127.0.0.1:{port}/v4/butlerping", process)
        assert requests.get(f"http://127.0.0.1:{port}/v4/butlerping", timeout=5).ok
        output = stop(process, signal.SIGINT)
    assert process.returncode == 0
    assert "Butler stopped" in output


def documented_service_commands() -> list[list[str]]:
    root = Path(__file__).parents[2]
    found = []
    for page in ("README.md", "docs/running-as-a-service.md"):
        for line in (root / page).read_text(encoding="utf-8").splitlines():
            match = re.search(r"butler(?:\.exe)? (service .*)$", line)
            if match and not match.group(1).startswith("service install`"):
                found.append(match.group(1).split())
    return found


def test_every_documented_service_command_parses():
    commands = documented_service_commands()
    assert {words[1] for words in commands} == {"install", "uninstall"}
    parser = build_parser(default_plugin_manager())
    for words in commands:
        args = parser.parse_args(words)
        assert args.command == "service"
        assert args.configfile == r"C:\Butler\butler.yaml"


FAKE_WINSW = """#!{python}
import json, os, sys
from pathlib import Path
me = Path(sys.argv[0])
with me.with_name("calls.jsonl").open("a") as calls:
    calls.write(json.dumps([sys.argv[1], me.with_suffix(".xml").is_file()]) + "\\n")
sys.exit(1 if sys.argv[1] in os.environ.get("FAKE_WINSW_FAILS", "").split(",") else 0)
"""


@pytest.fixture
def fake_windows(tmp_path, monkeypatch):
    """A stand-in WinSW that records each call, on a host that says it is Windows."""
    if sys.platform == "win32":
        pytest.skip("the stand-in WinSW is a script, not an .exe")
    winsw = tmp_path / "download" / "WinSW-x64.exe"
    winsw.parent.mkdir()
    winsw.write_text(FAKE_WINSW.format(python=sys.executable), encoding="utf-8")
    winsw.chmod(0o755)
    monkeypatch.setattr(sys, "platform", "win32")
    return winsw


def calls(folder: Path) -> list[list]:
    lines = (folder / "calls.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_install_copies_winsw_writes_the_definition_then_installs_and_starts(
    tmp_path, fake_windows, capsys
):
    config = write_config(tmp_path)
    assert main(["service", "install", "-c", str(config), "--winsw", str(fake_windows)]) == 0
    folder = tmp_path / "service"
    assert (folder / "butler.exe").read_bytes() == fake_windows.read_bytes()
    written = ET.fromstring((folder / "butler.xml").read_text(encoding="utf-8"))
    assert written.findall("argument")[-1].text == str(PureWindowsPath(config))
    assert (folder / "logs").is_dir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "butler.exe",
        "butler.xml",
        "calls.jsonl",
        "logs",
    ]
    # The XML is in place before WinSW reads it.
    assert calls(folder) == [["install", True], ["start", True]]
    assert f"> {folder / 'butler.exe'} install" in capsys.readouterr().out


def test_a_failing_winsw_step_stops_the_install_with_its_exit_code(
    tmp_path, fake_windows, capsys, monkeypatch
):
    monkeypatch.setenv("FAKE_WINSW_FAILS", "install")
    config = write_config(tmp_path)
    assert main(["service", "install", "-c", str(config), "--winsw", str(fake_windows)]) == 2
    assert calls(tmp_path / "service") == [["install", True]]
    assert "install exited with 1" in capsys.readouterr().err


def test_install_needs_winsw_once(tmp_path, fake_windows, capsys):
    config = write_config(tmp_path)
    assert main(["service", "install", "-c", str(config)]) == 2
    assert "pass --winsw" in capsys.readouterr().err
    assert main(["service", "install", "-c", str(config), "--winsw", str(fake_windows)]) == 0
    (tmp_path / "service" / "calls.jsonl").unlink()
    assert main(["service", "install", "-c", str(config)]) == 0
    assert calls(tmp_path / "service") == [["install", True], ["start", True]]


def test_uninstall_stops_then_unregisters_even_when_already_stopped(
    tmp_path, fake_windows, monkeypatch
):
    config = write_config(tmp_path)
    assert main(["service", "uninstall", "-c", str(config)]) == 2
    assert main(["service", "install", "-c", str(config), "--winsw", str(fake_windows)]) == 0
    monkeypatch.setenv("FAKE_WINSW_FAILS", "stop")
    assert main(["service", "uninstall", "-c", str(config)]) == 0
    assert calls(tmp_path / "service")[2:] == [["stop", True], ["uninstall", True]]
    assert (tmp_path / "service" / "butler.xml").is_file()
