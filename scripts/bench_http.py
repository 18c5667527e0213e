"""HTTP benchmark: requests/s and latency of ping and base conversion, plus server RSS.

Starts ``butler`` as a real process on a free loopback port and loads it with wrk (installed
with apt-get when missing and possible), once with ``metrics: false`` and once with
``metrics: true`` (health off in both), alternating for ``--rounds`` rounds so that drift of
the shared machine hits both alike. Prints Markdown tables: each setting, then the median
req/s side by side with what metrics cost. Loopback only; every run is bounded in time.

    python scripts/bench_http.py [--duration 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from butler.testing.processes import free_port, wait_until_answering

CONFIG = """\
Butler:
  logLevel: {loglevel}
  restServerConfig:
    enable: true
    serverHost: 127.0.0.1
    serverPort: {port}
    threads: {threads}
  restServerEndpointsEnable:
    butlerping: true
    base62ToBase16: true
    base16ToBase62: true
    health: false
    metrics: {metrics}
"""

TARGETS = {
    "GET /v4/butlerping": "/v4/butlerping",
    "GET /v4/base62tobase16": "/v4/base62tobase16?base62=6DMW88LpSok9Z7P7hUK0wv7bF",
}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is needed: apt-get install wrk")
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def to_ms(text: str) -> float:
    """wrk's duration text (``512.00us``, ``1.20ms``, ``2.00s``, ``1.00m``) in ms."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(wrk: str, url: str, clients: int, duration: int) -> tuple[float, float, float]:
    out = subprocess.run(
        [
            wrk,
            "-t",
            str(min(clients, 2)),
            "-c",
            str(clients),
            "-d",
            f"{duration}s",
            "--latency",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=duration + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in out or "Socket errors" in out:
        print(out, file=sys.stderr)
    return rps, p50, p99


Row = tuple[str, int, float, float, float]


def measure(wrk: str, args: argparse.Namespace, metrics: bool) -> tuple[list[Row], float, float]:
    """One butler process: every target at 1 and 16 clients; rows, idle and loaded RSS."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    config = workdir / "butler.yaml"
    config.write_text(
        CONFIG.format(
            port=port,
            threads=args.threads,
            loglevel=args.loglevel,
            metrics="true" if metrics else "false",
        )
    )
    butler = Path(sys.executable).parent / "butler"
    server = subprocess.Popen(
        [str(butler), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_answering(f"{base}/v4/butlerping", server)
        except RuntimeError as exc:
            sys.exit(f"butler did not start: {exc}")
        time.sleep(1)
        idle = rss_mb(server.pid)
        rows = []
        for label, path in TARGETS.items():
            for clients in (1, 16):
                rps, p50, p99 = run_wrk(wrk, base + path, clients, args.duration)
                rows.append((label, clients, rps, p50, p99))
        loaded = rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        shutil.rmtree(workdir, ignore_errors=True)
    return rows, idle, loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds")
    parser.add_argument("--threads", type=int, default=16, help="server worker threads")
    parser.add_argument("--loglevel", default="warn", help="server log level (info logs each call)")
    args = parser.parse_args()
    wrk = ensure_wrk()
    runs: dict[bool, list[tuple[list[Row], float, float]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for metrics in (False, True):
            runs[metrics].append(measure(wrk, args, metrics))
    print(f"\nbutler {args.threads} threads, log level {args.loglevel}, {args.duration} s per row")
    for metrics, results in runs.items():
        for number, (rows, idle, loaded) in enumerate(results, 1):
            print(f"\nmetrics {'on' if metrics else 'off'}, round {number}")
            print("| endpoint | clients | req/s | p50 ms | p99 ms |")
            print("|---|---:|---:|---:|---:|")
            for label, clients, rps, p50, p99 in rows:
                print(f"| {label} | {clients} | {rps:,.0f} | {p50:.2f} | {p99:.2f} |")
            print(f"\nServer RSS: idle {idle:.1f} MB, after load {loaded:.1f} MB")
    print(f"\nMedian req/s over {args.rounds} round(s), metrics off and on")
    print("| endpoint | clients | metrics off | metrics on | cost |")
    print("|---|---:|---:|---:|---:|")
    for i, (label, clients, *_) in enumerate(runs[False][0][0]):
        off = statistics.median(rows[i][2] for rows, _, _ in runs[False])
        on = statistics.median(rows[i][2] for rows, _, _ in runs[True])
        print(f"| {label} | {clients} | {off:,.0f} | {on:,.0f} | {(off - on) / off:+.1%} |")


if __name__ == "__main__":
    main()
