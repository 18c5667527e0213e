"""Quick calls while waiting calls hang: ping and key-value latency, Butler as a real process.

The QRS and Engine simulators run in this process. For each worker layout, 50 app reloads
with ``?wait=true`` are held by a slow Engine and 16 task starts by a hung QRS; meanwhile
16 client threads send pings and key-value reads. The same calls with nothing held are the
yardstick. ``4 + 12`` is the shape of the previous release's default (16 workers, of which
12 could wait); ``16 + 100`` is today's default. Prints a Markdown table.

    python scripts/bench_held_workers.py [--requests 400]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from ruamel.yaml import YAML

from butler.testing.certs import CertPaths, generate_certificates
from butler.testing.engine_catalogue import demo_apps
from butler.testing.engine_simulator import EngineSimulator
from butler.testing.processes import free_port, wait_until_answering
from butler.testing.qrs_simulator import QrsSimulator

SLOW_APP = next(app.id for app in demo_apps() if app.reload == "slow")
TASK = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
RELOADS, STARTS, CLIENTS = 50, 16, 16
LAYOUTS = ((4, 12), (16, 100))


def write_config(
    workdir: Path, port: int, layout: tuple[int, int], qrs: int, engine: int, certs: CertPaths
) -> Path:
    threads, waiting = layout
    butler = {
        "logLevel": "error",
        "restServerConfig": {
            "enable": True,
            "serverHost": "127.0.0.1",
            "serverPort": port,
            "threads": threads,
            "maxWaiting": waiting,
        },
        "restServerEndpointsEnable": {
            "butlerping": True,
            "keyValueStore": True,
            "senseStartTask": True,
            "senseAppReload": True,
        },
        "keyValueStore": {"persistence": "memory"},
        "cert": {
            "clientCert": str(certs.client_cert),
            "clientCertKey": str(certs.client_key),
            "clientCertCA": str(certs.ca),
        },
        "configQRS": {"host": "127.0.0.1", "port": qrs, "rejectUnauthorized": True},
        "configEngine": {"host": "127.0.0.1", "port": engine, "rejectUnauthorized": True},
    }
    path = workdir / f"butler-{threads}-{waiting}.yaml"
    with path.open("w", encoding="utf-8") as handle:
        YAML().dump({"Butler": butler}, handle)
    return path


def quick_latencies(base: str, count: int, clients: int) -> list[float]:
    """Milliseconds per call, pings and key-value reads alternating, from ``clients`` threads."""

    def one(index: int, session: requests.Session) -> float:
        started = time.perf_counter()
        if index % 2:
            response = session.get(f"{base}/v4/keyvalues/ns", params={"key": "k"}, timeout=30)
        else:
            response = session.get(f"{base}/v4/butlerping", timeout=30)
        if response.status_code != 200:
            raise SystemExit(f"quick call answered {response.status_code}: {response.text}")
        return (time.perf_counter() - started) * 1000

    sessions = [requests.Session() for _ in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        return sorted(pool.map(lambda i: one(i, sessions[i % clients]), range(count)))


def quick_row(base: str, count: int) -> str:
    """Latency with one client, then with 16 at once."""
    alone = summary(quick_latencies(base, count, 1))
    return f"{alone} | {summary(quick_latencies(base, count, CLIENTS))}"


def summary(times: list[float]) -> str:
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return f"{statistics.median(times):.1f} | {p99:.1f}"


def measure(layout: tuple[int, int], args: argparse.Namespace, qrs: QrsSimulator) -> list[str]:
    with EngineSimulator(args.certs) as engine:
        return _measure(layout, args, qrs, engine)


def _measure(
    layout: tuple[int, int], args: argparse.Namespace, qrs: QrsSimulator, engine: EngineSimulator
) -> list[str]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-held-"))
    port = free_port()
    config = write_config(workdir, port, layout, qrs.port, engine.port, args.certs)
    butler = subprocess.Popen(
        [str(Path(sys.executable).parent / "butler"), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        wait_until_answering(f"{base}/v4/butlerping", butler)
        requests.post(f"{base}/v4/keyvalues/ns", json={"key": "k", "value": "v"}, timeout=10)
        quick_latencies(base, 50, CLIENTS)
        idle = quick_row(base, args.requests)
        qrs.add_fault("/qrs/task", delay=600)
        with ThreadPoolExecutor(RELOADS + STARTS) as held:
            waiting: list[Future[Any]] = [
                held.submit(
                    requests.put,
                    f"{base}/v4/app/{SLOW_APP}/reload",
                    params={"wait": "true"},
                    json={},
                    timeout=600,
                )
                for _ in range(RELOADS)
            ]
            waiting += [
                held.submit(
                    requests.put, f"{base}/v4/reloadtask/{TASK}/start", json=[], timeout=600
                )
                for _ in range(STARTS)
            ]
            refused = _refused_once_settled(waiting, qrs, engine)
            busy = quick_row(base, args.requests)
            engine.release_reload(SLOW_APP)
            qrs.reset()
        label = f"{layout[0]} + {layout[1]}"
        held_count = RELOADS + STARTS - refused
        rows.append(f"| {label} | nothing held | - | {idle} |")
        rows.append(f"| {label} | {held_count} held | {refused} | {busy} |")
    finally:
        butler.terminate()
        butler.wait(10)
    return rows


def _refused_once_settled(
    waiting: list[Future[Any]], qrs: QrsSimulator, engine: EngineSimulator
) -> int:
    """Wait until every waiting call is held at QRS or the Engine, or refused; the refusals."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        refused = sum(1 for f in waiting if f.done() and f.result().status_code == 429)
        held = qrs.delayed_requests + len(engine.calls_to("DoReload", SLOW_APP))
        if refused + held >= len(waiting):
            return refused
        time.sleep(0.05)
    raise SystemExit("the waiting calls neither reached an upstream nor were refused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400, help="quick calls per row")
    args = parser.parse_args()
    args.certs = generate_certificates(Path(tempfile.mkdtemp(prefix="bench-held-certs-")))
    rows = []
    with QrsSimulator(args.certs) as qrs:
        for layout in LAYOUTS:
            rows += measure(layout, args, qrs)
    print(f"Quick calls (ping + KV read, {args.requests} per cell) with 1 and {CLIENTS} clients")
    print(f"while {RELOADS} waiting reloads and {STARTS} starts against a hung QRS are sent\n")
    print(
        "| threads + maxWaiting | waiting calls | refused (429) "
        "| 1 client median ms | p99 ms | 16 clients median ms | p99 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
