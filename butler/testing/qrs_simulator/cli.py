"""``butler simulate-qrs``: the QRS simulator as a foreground process.

A person trying Butler without a Qlik Sense site (or pointing curl at it) needs the
simulator running on a fixed port with certificates on disk that Butler's configuration can
name; this command creates them when missing and prints where they are. They go to a
per-user data folder, not the current one, so trying the simulator leaves no key files in
whatever folder the command happened to run in.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from butler.testing.certs import generate_certificates
from butler.testing.qrs_simulator.simulator import QrsSimulator

__all__ = ["default_certs_folder", "main"]


def default_certs_folder() -> Path:
    """``%LOCALAPPDATA%\\butler\\qrs-simulator-certs`` on Windows, else under
    ``$XDG_DATA_HOME`` (default ``~/.local/share``)."""
    base = os.environ.get("LOCALAPPDATA") or os.environ.get("XDG_DATA_HOME")
    root = Path(base) if base else Path.home() / ".local" / "share"
    return root / "butler" / "qrs-simulator-certs"


def main(argv: Sequence[str] | None = None, *, stop: threading.Event | None = None) -> int:
    """``butler simulate-qrs``: run the simulator in the foreground until Ctrl+C (or ``stop``)."""
    parser = argparse.ArgumentParser(
        prog="butler simulate-qrs",
        description="Run the QRS simulator (test/demo stand-in for Qlik Sense's QRS API).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=4242, help="port to listen on (4242)")
    parser.add_argument(
        "--certs",
        type=Path,
        default=None,
        help="folder for the CA/server/client certificates, created when missing "
        f"(default: {default_certs_folder()})",
    )
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    parser.add_argument("--catalogue", type=Path, help="task catalogue (YAML or JSON)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay for every answer")
    parser.add_argument(
        "--synthetic-tasks", type=int, default=0, help="add N generated tasks sharing one tag"
    )
    parser.add_argument("--synthetic-tag", default="bench", help="tag of the generated tasks")
    parser.add_argument(
        "--max-concurrent-reloads",
        type=int,
        default=4,
        help="executions running at once; later starts wait Queued (4)",
    )
    args = parser.parse_args(argv)

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    certs = None if args.no_tls else generate_certificates(args.certs or default_certs_folder())
    simulator = QrsSimulator(
        certs,
        host=args.host,
        port=args.port,
        catalogue=args.catalogue,
        synthetic_tasks=args.synthetic_tasks,
        synthetic_tag=args.synthetic_tag,
        latency=args.latency_ms / 1000.0,
        max_concurrent_reloads=args.max_concurrent_reloads,
    )
    with simulator:
        print(f"QRS simulator on {simulator.url} with {len(simulator.task_ids())} tasks")
        if certs is not None:
            print(f"  CA certificate:     {certs.ca.resolve()}")
            print(f"  client certificate: {certs.client_cert.resolve()}")
            print(f"  client key:         {certs.client_key.resolve()}")
        print("Press Ctrl+C to stop.")
        stop = stop or threading.Event()
        try:
            # A timed wait keeps Ctrl+C working on Windows, where an untimed wait ignores it.
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            print("Stopping.")
    return 0
