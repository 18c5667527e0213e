"""Task-start benchmark: Butler (a real process) against the QRS simulator (this process).

For 1, 20 and 100 tasks, named by ids in the body or by one tag, at 0 and 20 ms simulated QRS
latency: median and p99 request latency and requests/s with 1 client, requests/s with 16
clients, QRS requests per API call and new TLS connections to QRS per API call (steady state,
after a warm-up). Loopback only, bounded request counts. Prints a Markdown table.

    python scripts/bench_task_start.py [--requests 40]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from ruamel.yaml import YAML

from butler.qrs import QrsClient
from butler.testing.certs import generate_certificates
from butler.testing.processes import free_port, wait_until_answering
from butler.testing.qrs_simulator import QrsSimulator

SIZES = (1, 20, 100)


def add_bench_tasks(simulator: QrsSimulator) -> dict[int, list[str]]:
    """Tasks tagged ``bench-N`` for each size N (each size its own tasks)."""
    ids: dict[int, list[str]] = {}
    for size in SIZES:
        ids[size] = []
        for index in range(size):
            task_id = f"{size:08x}-0000-4000-8000-{index:012x}"
            simulator.add_task(
                {"id": task_id, "name": f"Bench {size} #{index}", "tags": [f"bench-{size}"]}
            )
            ids[size].append(task_id)
    return ids


def write_config(workdir: Path, port: int, simulator: QrsSimulator, certs) -> Path:  # type: ignore[no-untyped-def]
    butler = {
        "logLevel": "warn",
        "restServerConfig": {"enable": True, "serverHost": "127.0.0.1", "serverPort": port},
        "restServerEndpointsEnable": {"senseStartTask": True},
        "cert": {
            "clientCert": str(certs.client_cert),
            "clientCertKey": str(certs.client_key),
            "clientCertCA": str(certs.ca),
        },
        "configQRS": {
            "host": "127.0.0.1",
            "port": simulator.port,
            "useSSL": True,
            "rejectUnauthorized": True,
        },
    }
    path = workdir / "butler.yaml"
    with path.open("w", encoding="utf-8") as handle:
        YAML().dump({"Butler": butler}, handle)
    return path


def call(session: requests.Session, url: str, body: object, expected: int) -> float:
    started = time.perf_counter()
    response = session.put(url, json=body, timeout=30)
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or response.json()["totalTasksStarted"] != expected:
        raise SystemExit(f"unexpected answer: {response.status_code} {response.text[:300]}")
    return elapsed


def measure(
    simulator: QrsSimulator, url: str, body: object, size: int, args: argparse.Namespace
) -> tuple[float, float, float, float, float, float]:
    """Median/p99 ms and req/s at 1 client, req/s at 16, QRS requests and new TLS per call."""
    session = requests.Session()
    for _ in range(3):
        call(session, url, body, size)
    simulator.reset_log()
    connections_before = simulator.new_connections
    started = time.perf_counter()
    times = sorted(call(session, url, body, size) for _ in range(args.requests))
    wall = time.perf_counter() - started
    qrs_calls = len(simulator.requests()) / args.requests
    new_tls = (simulator.new_connections - connections_before) / args.requests

    clients, per_client = 16, max(2, args.requests // 4)

    def client_run(client_session: requests.Session) -> None:
        for _ in range(per_client):
            call(client_session, url, body, size)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_run, [requests.Session() for _ in range(clients)]))
    wall16 = time.perf_counter() - started
    return (
        statistics.median(times) * 1000,
        times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
        args.requests / wall,
        clients * per_client / wall16,
        qrs_calls,
        new_tls,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=40, help="API calls per measurement")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    certs = generate_certificates(workdir / "certs")
    rows = []
    with QrsSimulator(certs) as simulator:
        ids = add_bench_tasks(simulator)
        port = free_port()
        config = write_config(workdir, port, simulator, certs)
        butler = subprocess.Popen(
            [str(Path(sys.executable).parent / "butler"), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}/v4/reloadtask/-/start"
        try:
            try:
                wait_until_answering(f"http://127.0.0.1:{port}/documentation/json", butler)
            except RuntimeError as exc:
                sys.exit(f"butler did not start: {exc}")
            bare = QrsClient(
                "127.0.0.1",
                simulator.port,
                client_cert=certs.client_cert,
                client_key=certs.client_key,
                ca_cert=certs.ca,
                reject_unauthorized=True,
            )
            round_trips = []
            for _ in range(args.requests + 3):
                started = time.perf_counter()
                bare.find_tasks_by_ids([ids[1][0]])
                round_trips.append(time.perf_counter() - started)
            bare.close()
            bare_rtt_ms = statistics.median(round_trips[3:]) * 1000
            for latency_ms in (0, 20):
                simulator.set_latency(latency_ms / 1000)
                for size in SIZES:
                    for mode in ("ids", "tag"):
                        if mode == "ids":
                            body: object = [
                                {"type": "starttaskid", "payload": {"taskId": t}} for t in ids[size]
                            ]
                        else:
                            body = [{"type": "starttasktag", "payload": {"tag": f"bench-{size}"}}]
                        rows.append(
                            (latency_ms, size, mode, *measure(simulator, base, body, size, args))
                        )
        finally:
            butler.send_signal(signal.SIGTERM)
            butler.wait(timeout=20)
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"Bare QRS round trip (simulator, latency 0, from a QrsClient in this process): "
        f"median {bare_rtt_ms:.1f} ms; Butler's own time for a call is about its median "
        f"minus two such round trips.\n"
    )
    print(
        "| QRS latency ms | tasks | by | median ms | p99 ms | req/s (1 client) "
        "| req/s (16 clients) | QRS requests/call | new TLS conns/call |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row[0]} | {row[1]} | {row[2]} | {row[3]:.1f} | {row[4]:.1f} | {row[5]:.0f} "
            f"| {row[6]:.0f} | {row[7]:.1f} | {row[8]:.2f} |"
        )


if __name__ == "__main__":
    main()
