"""Profile Butler's hot paths in-process: the WSGI app called directly, no HTTP server.

Builds the app as ``butler run`` does (same config shape as ``scripts/bench_http.py``, log
level info so the access log runs), with the QRS simulator as a child process, and for each
case (ping, KV GET, KV POST, start 1 task, start 20-task tag) calls the WSGI app ``--requests``
times: prints µs of process CPU per call (all our threads, the simulator excluded), the same
for a bare Flask app, and cProfile's top entries in CPU time (calling thread only: the lookup pool's
threads and the log listener are not in it) by own time and by cumulative time.

    python scripts/profile_hot_paths.py [--requests 3000] [--top 25] [--cases ping,KV GET]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_http import CASES, TAG_TASKS, Case, bare_app, butler_config, check_certs

from butler.app import create_app
from butler.config import load_config
from butler.lifecycle import build_services
from butler.logging_setup import LogSettings, configure_logging
from butler.testing.processes import free_port

BLOCKS = 5
"""CPU per call is the least of this many blocks of ``--requests / BLOCKS`` calls."""


def environ_for(case: Case) -> Callable[[], dict[str, Any]]:
    path, _, query = case.path.partition("?")
    body = json.dumps(case.body).encode() if case.body is not None else b""

    def make() -> dict[str, Any]:
        environ = {
            "REQUEST_METHOD": case.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8080",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "50000",
            "HTTP_HOST": "127.0.0.1:8080",
            "HTTP_USER_AGENT": "wrk",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if body:
            environ["CONTENT_TYPE"] = "application/json"
            environ["CONTENT_LENGTH"] = str(len(body))
        return environ

    return make


def call(app: Any, make: Callable[[], dict[str, Any]]) -> str:
    status: list[str] = []

    def start_response(line: str, headers: Any, exc_info: Any = None) -> None:
        status.append(line)

    chunks = app(make(), start_response)
    b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    return status[0]


def cpu_per_call(app: Any, case: Case, count: int) -> float:
    make = environ_for(case)
    for _ in range(min(20, count)):
        status = call(app, make)
        if not status[0] == "2":
            raise SystemExit(f"{case.label}: {status}")
    began = time.process_time()
    for _ in range(count):
        call(app, make)
    return (time.process_time() - began) / count * 1e6


def profile(app: Any, case: Case, count: int, top: int) -> str:
    make = environ_for(case)
    # Process CPU time, not wall time: waits on QRS and the disk cost nothing here.
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for _ in range(count):
        call(app, make)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="calls per case")
    parser.add_argument("--top", type=int, default=25, help="profile entries shown")
    parser.add_argument("--cases", default=None, help="comma-separated case labels")
    parser.add_argument("--no-profile", action="store_true", help="CPU per call only")
    args = parser.parse_args()
    args.loglevel, args.threads, args.max_waiting, args.server = "info", 16, 100, "waitress"
    cases = [c for c in CASES if args.cases is None or c.label in args.cases.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="profile-hot-"))
    check_certs(workdir)
    qrs_port = free_port()
    simulator = subprocess.Popen(
        [
            *(sys.executable, "-m", "butler.testing.qrs_simulator", "--port", str(qrs_port)),
            *("--certs", str(workdir / "certs"), "--synthetic-tasks", str(TAG_TASKS)),
            *("--max-concurrent-reloads", "1000"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        simulator.stdout.readline()
        config = load_config(butler_config(workdir, args, free_port(), qrs_port))
        # Records go to a queue and a listener thread writes them: to /dev/null here.
        sys.stderr = Path(os.devnull).open("w")  # noqa: SIM115 - the listener writes there
        configure_logging(LogSettings.from_config(config))
        services = build_services(config)
        services.start()
        ours = create_app(config, services)
        bare = bare_app()
        call(ours, environ_for(CASES[2]))  # the key KV GET reads
        rows = []
        for case in cases:
            count = args.requests if not case.label.startswith("start") else args.requests // 10
            # Alternating blocks, the least of each side: the machine's noise only adds time.
            block = max(1, count // BLOCKS)
            own = min(cpu_per_call(ours, case, block) for _ in range(BLOCKS))
            floor = min(cpu_per_call(bare, case, block) for _ in range(BLOCKS))
            rows.append((case.label, own, floor))
            if not args.no_profile:
                print(f"\n=== {case.label}: ours ===", file=sys.__stdout__)
                print(profile(ours, case, count, args.top), file=sys.__stdout__)
        print("\n| case | own CPU µs/call ours | bare | ours - bare |", file=sys.__stdout__)
        print("|---|---:|---:|---:|", file=sys.__stdout__)
        for label, o, b in rows:
            print(f"| {label} | {o:.0f} | {b:.0f} | {o - b:.0f} |", file=sys.__stdout__)
        services.stop()
    finally:
        simulator.terminate()
        simulator.wait(10)


if __name__ == "__main__":
    main()
