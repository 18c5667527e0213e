"""``butler service install|uninstall``: the command line around :mod:`butler.windows_service`.

Install first runs ``check-config`` with the interpreter the service will use, so a config
that ``run`` would refuse is reported now, not as a service that fails and restarts in a
loop. ``--dry-run`` shows the definition and the commands on any OS and changes nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path, PureWindowsPath

from butler import windows_service
from butler.windows_service import ServiceError, ServiceSpec

EXIT_USAGE = 2


def add_service_parser(commands: argparse._SubParsersAction) -> None:
    """The ``service`` subcommand with its ``install`` and ``uninstall`` actions."""
    service = commands.add_parser(
        "service",
        help="install or remove Butler as a Windows service (WinSW)",
        description="Run Butler as a Windows service under WinSW: starts at boot, restarts "
        "on failure, stops cleanly, logs to files. See docs/running-as-a-service.md.",
    )
    actions = service.add_subparsers(
        dest="service_action", required=True, metavar="ACTION", help="install or uninstall"
    )
    install = actions.add_parser(
        "install", help="check the config, write the WinSW definition, install and start"
    )
    install.add_argument(
        "--winsw",
        type=Path,
        default=None,
        help="the WinSW executable (e.g. WinSW-x64.exe) to copy in as the service; "
        "optional when the service folder already has it",
    )
    uninstall = actions.add_parser("uninstall", help="stop the service and unregister it")
    for action in (install, uninstall):
        action.add_argument(
            "-c",
            "--configfile",
            default=None,
            help="Butler YAML config file (default: $BUTLER_CONFIG)",
        )
        action.add_argument("--name", default="butler", help="Windows service id (default: butler)")
        action.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="folder for the WinSW copy, its XML and logs (default: a 'service' folder "
            "next to the config file)",
        )
        action.add_argument(
            "--dry-run",
            action="store_true",
            help="print the definition and the commands; change nothing",
        )


def run_service_command(args: argparse.Namespace) -> int:
    try:
        spec, config, folder = _spec(args)
        if config is not None and args.service_action == "install":
            failed = _check_config(config)
            if failed:
                return failed
        if args.dry_run:
            _print_plan(spec, args.service_action, getattr(args, "winsw", None))
            return 0
        if args.service_action == "install":
            windows_service.install(spec, folder, args.winsw)
            print(f"Service {spec.service_id} installed and started; logs in {spec.log_dir}")
        else:
            windows_service.uninstall(spec, folder)
            print(f"Service {spec.service_id} removed; {spec.service_dir} was left in place")
    except ServiceError as exc:
        print(f"butler service: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _spec(args: argparse.Namespace) -> tuple[ServiceSpec, Path | None, Path]:
    """The definition's view of the paths, and the config and folder on this host."""
    configfile = args.configfile or os.environ.get("BUTLER_CONFIG")
    if configfile:
        config = Path(configfile).resolve()
        folder = args.dir.resolve() if args.dir is not None else config.parent / "service"
    elif args.service_action == "uninstall" and args.dir is not None:
        # Uninstalling needs only the folder; the config path is not written anywhere.
        config, folder = None, args.dir.resolve()
    else:
        raise ServiceError("no config file: pass -c/--configfile or set BUTLER_CONFIG")
    spec = ServiceSpec(
        service_id=args.name,
        python=PureWindowsPath(sys.executable),
        config=PureWindowsPath(config or folder / "butler.yaml"),
        service_dir=PureWindowsPath(folder),
    )
    return spec, config, folder


def _check_config(config: Path) -> int:
    """``check-config`` in a child process: the same interpreter and code the service runs."""
    result = subprocess.run(
        [sys.executable, "-m", "butler", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        print(
            "butler service: not installed, the config does not pass check-config", file=sys.stderr
        )
    return result.returncode


def _print_plan(spec: ServiceSpec, action: str, winsw: Path | None) -> None:
    if action == "install":
        if winsw is not None:
            print(f"Would copy {winsw} to {spec.wrapper}")
        print(f"Would write {spec.definition_file}:")
        print(windows_service.definition_xml(spec))
        commands = windows_service.install_commands(spec.wrapper)
    else:
        commands = windows_service.uninstall_commands(spec.wrapper)
    print("Would run:")
    for command in commands:
        print("  " + subprocess.list2cmdline(command))
