"""Butler as a Windows service, run by WinSW: the service definition and its install steps.

WinSW (https://github.com/winsw/winsw) is one executable that becomes the service; it reads
an XML file of the same name next to it, starts Butler as a console child, and on a stop
request sends that child CTRL_C_EVENT (Python's SIGINT, which Butler's runner handles),
waits ``stoptimeout`` and only then terminates it. The Service Control Manager does the
rest: start at boot, restart on failure. So Butler needs no Windows API of its own, and the
definition is a file an administrator can read, diff and keep in change control.

Everything here except :func:`install` and :func:`uninstall` is plain data and text, so it
is tested on any OS; those two run WinSW and work on Windows only. Paths are
``PureWindowsPath`` so the file always carries backslashes, whatever OS wrote it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath

STOP_TIMEOUT = "30 sec"
"""As long as ``configQRS.timeout``'s default, so a task start waiting on QRS can finish."""

RESTART_DELAYS = ("10 sec", "30 sec", "60 sec")
"""SCM restarts after a crash; the last delay repeats for every later failure."""

RESET_FAILURE = "1 hour"
"""A run this long without failing starts the delays above from the first one again."""

LOG_ROLL_KB = 10240
LOG_KEEP_FILES = 8

ENVIRONMENT = {"PYTHONUTF8": "1", "PYTHONUNBUFFERED": "1"}
"""UTF-8 so task and file names in the log never fail to encode on a cp1252 console;
unbuffered so the captured log is current when someone reads it."""

GENERATED_NOTE = "Written by `butler service install`; to change it, uninstall and install again."

_SERVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")


class ServiceError(ValueError):
    """A service definition or step that cannot work; the message says which and why."""


@dataclass(frozen=True)
class ServiceSpec:
    """What the service runs: ``python -m butler run -c config`` from the config's folder."""

    service_id: str
    python: PureWindowsPath
    config: PureWindowsPath
    service_dir: PureWindowsPath

    def __post_init__(self) -> None:
        if not _SERVICE_ID.fullmatch(self.service_id):
            raise ServiceError(
                f"service name {self.service_id!r}: letters, digits, '-' and '_' only "
                "(WinSW uses it as the Windows service id)"
            )
        for label, path in (
            ("Python", self.python),
            ("config file", self.config),
            ("service folder", self.service_dir),
        ):
            if not path.root:
                raise ServiceError(f"{label} {path}: must be an absolute path")
            if "%" in str(path):
                raise ServiceError(
                    f"{label} {path}: contains '%', which WinSW would expand as a variable"
                )

    @property
    def wrapper(self) -> PureWindowsPath:
        """The WinSW copy that is the service; WinSW finds its XML by this name."""
        return self.service_dir / f"{self.service_id}.exe"

    @property
    def definition_file(self) -> PureWindowsPath:
        return self.service_dir / f"{self.service_id}.xml"

    @property
    def log_dir(self) -> PureWindowsPath:
        return self.service_dir / "logs"

    @property
    def arguments(self) -> list[str]:
        return ["-m", "butler", "run", "-c", str(self.config)]


def definition_xml(spec: ServiceSpec) -> str:
    """The WinSW XML for ``spec``, using only elements WinSW 2.x and 3.x both read."""
    service = ET.Element("service")

    def add(tag: str, text: str | None = None, **attributes: str) -> ET.Element:
        element = ET.SubElement(service, tag, attributes)
        element.text = text
        return element

    add("id", spec.service_id)
    add("name", f"Butler for Python ({spec.service_id})")
    add("description", f"Butler for Python, REST API companion for Qlik Sense; {spec.config}")
    add("executable", str(spec.python))
    for argument in spec.arguments:
        # One element each: WinSW quotes an argument with spaces itself.
        add("argument", argument)
    add("workingdirectory", str(spec.config.parent))
    for name, value in ENVIRONMENT.items():
        add("env", name=name, value=value)
    add("startmode", "Automatic")
    # Presence is what WinSW 2.x reads; 3.x parses the text as a boolean.
    add("delayedAutoStart", "true")
    add("stoptimeout", STOP_TIMEOUT)
    for delay in RESTART_DELAYS:
        add("onfailure", action="restart", delay=delay)
    add("resetfailure", RESET_FAILURE)
    add("logpath", str(spec.log_dir))
    log = add("log", mode="roll-by-size")
    ET.SubElement(log, "sizeThreshold").text = str(LOG_ROLL_KB)
    ET.SubElement(log, "keepFiles").text = str(LOG_KEEP_FILES)
    service.insert(0, ET.Comment(f" {GENERATED_NOTE} "))
    ET.indent(service)
    body = ET.tostring(service, encoding="unicode")
    return f'<?xml version="1.0" encoding="utf-8"?>\n{body}\n'


def install_commands(wrapper: PurePath) -> list[list[str]]:
    """Register the service with the SCM, then start it (it also starts at every boot)."""
    return [[str(wrapper), "install"], [str(wrapper), "start"]]


def uninstall_commands(wrapper: PurePath) -> list[list[str]]:
    """Stop (a clean CTRL_C stop; fails harmlessly when already stopped), then unregister."""
    return [[str(wrapper), "stop"], [str(wrapper), "uninstall"]]


def install(spec: ServiceSpec, folder: Path, winsw: Path | None) -> None:
    """Copy WinSW into ``folder`` (``spec.service_dir`` on this host) as the service
    executable, write its XML there, then install and start it."""
    _require_windows()
    wrapper = folder / spec.wrapper.name
    if winsw is None and not wrapper.is_file():
        raise ServiceError(f"{wrapper} does not exist: pass --winsw with the WinSW executable")
    if winsw is not None and not winsw.is_file():
        raise ServiceError(f"--winsw {winsw}: no such file")
    (folder / spec.log_dir.name).mkdir(parents=True, exist_ok=True)
    if winsw is not None:
        shutil.copy2(winsw, wrapper)
    partial = folder / f"{spec.definition_file.name}.tmp"
    partial.write_text(definition_xml(spec), encoding="utf-8")
    partial.replace(folder / spec.definition_file.name)
    for command in install_commands(wrapper):
        _run(command)


def uninstall(spec: ServiceSpec, folder: Path) -> None:
    """Stop and unregister the service; ``folder`` (XML, WinSW copy, logs) stays."""
    _require_windows()
    wrapper = folder / spec.wrapper.name
    if not wrapper.is_file():
        raise ServiceError(f"{wrapper} does not exist: nothing installed there")
    stop, remove = uninstall_commands(wrapper)
    _run(stop, check=False)
    _run(remove)


def _run(command: Sequence[str], check: bool = True) -> None:
    print("> " + subprocess.list2cmdline(command), flush=True)
    result = subprocess.run(command, check=False)
    if check and result.returncode != 0:
        raise ServiceError(f"{subprocess.list2cmdline(command)} exited with {result.returncode}")


def _require_windows() -> None:
    if sys.platform != "win32":
        raise ServiceError(
            "Windows services exist on Windows only; on Linux use the systemd unit or the "
            "Dockerfile (docs/running-as-a-service.md), or --dry-run to see the definition"
        )
