"""Benchmark the key-value store: HTTP throughput and latency, reopen time, connection choice.

Run: ``.venv/bin/python scripts/bench_kv.py`` (about a minute). Everything stays on
127.0.0.1 and in a temporary folder. The server runs in a child process (this script with
``--serve``) so the load generator does not share its interpreter lock; on a 2-core machine
client and server still compete for the CPU, so absolute numbers are a floor.

Printed tables:
1. HTTP set (POST) and get (GET) at 1 and 16 clients, SQLite vs memory mode: requests/s,
   p50 and p99 latency. Each client is a thread with its own ``requests.Session``.
2. Time to open a store file holding 100,000 keys (what start-up costs).
3. Raw SQLite write rate from 16 threads: one lock-guarded connection (what the store does)
   vs one connection per thread.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from butler.kvstore import KvStore  # noqa: E402

VALUE = "2020-09-29 17:14:56 some parameter value"


def serve(target: str) -> None:
    """Child process: serve the KV API on a free port and print it."""
    from butler.app import create_app
    from butler.config import Config
    from butler.server import build_server
    from butler.services import Services

    path = None if target == "memory" else Path(target)
    config = Config.from_mapping(
        {"restServerEndpointsEnable": {"keyValueStore": True}}, Path(tempfile.gettempdir())
    )
    store = KvStore(path, max_keys_per_namespace=1_000_000)
    app = create_app(config, Services(config=config, kv_store=store))
    server = build_server(app, "127.0.0.1", 0)
    print(f"PORT {server.url.rsplit(':', 1)[1]}", flush=True)
    server.serve_forever()


@contextmanager
def server_process(target: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def run_load(url: str, op: str, clients: int, per_client: int) -> tuple[int, float, list[float]]:
    """Each client sends ``per_client`` requests; returns (count, wall seconds, latencies)."""
    start = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]

    def client(c: int) -> None:
        with requests.Session() as session:
            session.get(f"{url}/v4/keyvaluesnamespaces", timeout=30)
            start.wait()
            mine = latencies[c]
            for i in range(per_client):
                began = time.perf_counter()
                if op == "set":
                    response = session.post(
                        f"{url}/v4/keyvalues/bench{c}",
                        json={"key": f"k{i}", "value": VALUE, "ttl": ""},
                        timeout=30,
                    )
                    expected = 201
                else:
                    response = session.get(
                        f"{url}/v4/keyvalues/bench{c}", params={"key": f"k{i}"}, timeout=30
                    )
                    expected = 200
                mine.append(time.perf_counter() - began)
                if response.status_code != expected:
                    raise RuntimeError(f"{op} answered {response.status_code}: {response.text}")

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client, c) for c in range(clients)]
        start.wait()
        began = time.perf_counter()
        for future in futures:
            future.result()
        wall = time.perf_counter() - began
    flat = [lat for per in latencies for lat in per]
    return len(flat), wall, flat


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def http_table(workdir: Path, total_1: int, per_client_16: int) -> list[list[str]]:
    rows: list[list[str]] = []
    for mode in ("sqlite", "memory"):
        target = str(workdir / f"http-{mode}.sqlite") if mode == "sqlite" else "memory"
        for clients, per_client in ((1, total_1), (16, per_client_16)):
            with server_process(target) as url:
                for op in ("set", "get"):
                    count, wall, lat = run_load(url, op, clients, per_client)
                    rows.append(
                        [
                            mode,
                            op,
                            str(clients),
                            str(count),
                            f"{count / wall:,.0f}",
                            f"{statistics.median(lat) * 1000:.2f}",
                            f"{percentile(lat, 0.99) * 1000:.2f}",
                        ]
                    )
    return rows


def build_big_store(path: Path, keys: int, namespaces: int) -> None:
    """Fill a store file directly (one transaction) so the setup does not take minutes."""
    KvStore(path).close()
    per_ns = keys // namespaces
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO namespaces (name, seq) VALUES (?, ?)",
            [(f"ns{n}", n) for n in range(namespaces)],
        )
        db.executemany(
            "INSERT INTO entries (namespace, key, value, expires_at, seq) VALUES (?, ?, ?, ?, ?)",
            (
                (f"ns{i % namespaces}", f"key-{i}", VALUE, None, namespaces + i)
                for i in range(per_ns * namespaces)
            ),
        )


def reopen_table(workdir: Path, keys: int) -> list[list[str]]:
    path = workdir / "big.sqlite"
    build_big_store(path, keys, namespaces=100)
    size_mb = path.stat().st_size / 1e6
    times = []
    for _ in range(3):
        began = time.perf_counter()
        store = KvStore(path, max_keys_per_namespace=None)
        times.append(time.perf_counter() - began)
        assert sum(len(store.keys(ns)) for ns in store.namespaces()) == keys
        store.close()
    return [[f"{keys:,}", f"{size_mb:.1f}", f"{min(times) * 1000:.0f}", f"{max(times) * 1000:.0f}"]]


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def _write(db: sqlite3.Connection, key: str) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)", (key, VALUE))
    db.execute("COMMIT")


def _connection_run(path: Path, guarded: bool, threads: int, per_thread: int) -> list[str]:
    shared = _sqlite_connect(path)
    shared.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
    lock = threading.Lock()
    local = threading.local()
    opened: list[sqlite3.Connection] = [shared]

    def write(key: str) -> None:
        if guarded:
            with lock:
                _write(shared, key)
            return
        if not hasattr(local, "db"):
            local.db = _sqlite_connect(path)
            opened.append(local.db)
        _write(local.db, key)

    start = threading.Barrier(threads + 1)
    latencies: list[float] = []

    def worker(w: int) -> None:
        start.wait()
        for i in range(per_thread):
            began = time.perf_counter()
            write(f"{w}-{i}")
            latencies.append(time.perf_counter() - began)

    pool = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - began
    for db in opened:
        db.close()
    count = threads * per_thread
    return [
        "one guarded connection" if guarded else "connection per thread",
        str(threads),
        str(count),
        f"{count / wall:,.0f}",
        f"{percentile(latencies, 0.99) * 1000:.2f}",
        f"{max(latencies) * 1000:.2f}",
    ]


def connection_table(workdir: Path, threads: int, per_thread: int) -> list[list[str]]:
    return [
        _connection_run(workdir / f"conn-{guarded}.sqlite", guarded, threads, per_thread)
        for guarded in (True, False)
    ]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", metavar="DBFILE|memory", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=2000, help="requests at 1 client")
    parser.add_argument("--per-client", type=int, default=250, help="requests per client at 16")
    parser.add_argument("--reopen-keys", type=int, default=100_000)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if hasattr(os, "getloadavg"):
        print(f"CPUs: {os.cpu_count()}, load average before the run: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-kv-") as tmp:
        workdir = Path(tmp)
        print_table(
            "HTTP key-value API (server in a child process, waitress 16 threads, loopback)",
            ["mode", "op", "clients", "requests", "req/s", "p50 ms", "p99 ms"],
            http_table(workdir, args.requests, args.per_client),
        )
        print_table(
            "Open a store file (loads every key into memory)",
            ["keys", "file MB", "best ms", "worst ms"],
            reopen_table(workdir, args.reopen_keys),
        )
        print_table(
            "Raw SQLite commits (WAL, synchronous=FULL) from 16 threads",
            ["strategy", "threads", "writes", "writes/s", "p99 ms", "max ms"],
            connection_table(workdir, threads=16, per_thread=150),
        )


if __name__ == "__main__":
    main()
