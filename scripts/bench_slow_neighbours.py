"""Slow neighbours: does a slow request delay ping? Butler a real process, one run.

Issue 14, item 3b: "a slow request (app reload with wait=true, a waited task start) never
delays ping by more than 10 ms p99". Butler runs as a real process (``butler -c``) on the
chosen server, against the QRS simulator and the Engine simulator, both in one child process
of this script (real sockets, TLS with client certificates, as in production), so neither
their CPU nor this script's is Butler's. wrk measures ``GET /v4/butlerping`` with 1 and with
16 clients (p50, p99 and max) in each case:

- ``a``  nothing else going on (the yardstick);
- ``b``  while N app reloads with ``?wait=true`` of the Engine simulator's slow app
  (``Big Reload``, held until released) are held;
- ``c``  while N waited task starts (``PUT /v4/reloadtask/{id}/start?wait=true``) of tasks
  the QRS simulator runs for an hour are held: N open runs, the run tracker polling them;
- ``d``  while the run tracker follows M open runs (one fire-and-forget tag start of M
  hour-long tasks just before the measurement, so it includes the first poll, the one that
  finds M new executions, and the steady polls after it).

Each case gets a fresh Butler (its own run store), so no case inherits another's runs; each
measures its own ``a`` first and the table's "added p99" is against that. The ping rows are
measured with the slow calls held, after the simulators have seen every one of them arrive
(DoReload calls, task starts). Butler's per-thread CPU over each measurement (from
``/proc/<pid>/task/*/stat``) is printed under the table: the busiest threads show where the
time went when a case misses its target.

    python scripts/bench_slow_neighbours.py [--server waitress|granian] [--duration 5]
        [--held 8,50] [--open-runs 1000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent
for folder in (REPO, SCRIPTS):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from bench_http import CLOCK_TICKS, check_certs, ensure_wrk, rss_mb, to_ms  # noqa: E402

from butler.testing.processes import free_port, wait_until_answering  # noqa: E402

SERVERS = ("waitress", "granian")
TARGET_MS = 10.0
LONG_RUN = 3600.0
SLOW_APP = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"
"""``Big Reload`` of the Engine simulator's demo apps: its DoReload waits to be released."""


# ------------------------------------------------------------------------ the simulators


def serve_simulators(certs_dir: Path, tasks: int) -> None:
    """Child process: QRS and Engine simulators; a line protocol on stdin/stdout.

    Prints ``ready <qrs port> <engine port>`` then ``tasks <id,id,...>``; answers ``count``
    with ``<DoReload calls of the slow app> <task starts>``, ``release`` by letting the slow
    app's held reloads finish (later ones are held again) and ``reset`` by forgetting every
    execution. Stops at end of input.
    """
    from butler.testing.certs import generate_certificates
    from butler.testing.engine_simulator import EngineSimulator
    from butler.testing.qrs_simulator import QrsSimulator

    certs = generate_certificates(certs_dir)
    with (
        QrsSimulator(certs, synthetic_tasks=tasks, max_concurrent_reloads=tasks * 10) as qrs,
        EngineSimulator(certs) as engine,
    ):
        ids = qrs.task_ids(tag="bench")
        for task_id in ids:
            qrs.set_execution(task_id, duration=LONG_RUN)
        print(f"ready {qrs.port} {engine.port}", flush=True)
        print("tasks " + ",".join(ids), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                reloads = len(engine.calls_to("DoReload", SLOW_APP))
                print(f"{reloads} {len(qrs.starts())}", flush=True)
            elif command == "release":
                engine.release_reload(SLOW_APP)
                # The next case's reloads must be held again: a fresh gate (the released
                # ones wait on the old one, which stays set).
                with engine._lock:
                    engine._gates.pop(SLOW_APP, None)
                print("released", flush=True)
            elif command == "reset":
                qrs.reset_log()
                qrs.clear_executions()
                print("reset", flush=True)


class Simulators:
    def __init__(self, certs_dir: Path, tasks: int):
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-simulators", str(certs_dir), str(tasks)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready = self._line().split()
        if not ready or ready[0] != "ready":
            raise SystemExit(f"simulators did not start: {ready}")
        self.qrs_port, self.engine_port = int(ready[1]), int(ready[2])
        self.task_ids = self._line().split(" ", 1)[1].split(",")
        self._lock = threading.Lock()

    def _line(self) -> str:
        assert self._proc.stdout is not None
        return self._proc.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self._proc.stdin is not None
        with self._lock:
            self._proc.stdin.write(command + "\n")
            self._proc.stdin.flush()
            return self._line()

    def counts(self) -> tuple[int, int]:
        reloads, starts = self.ask("count").split()
        return int(reloads), int(starts)

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# ------------------------------------------------------------------------ Butler


def write_config(
    workdir: Path, name: str, args: argparse.Namespace, port: int, sims: Simulators
) -> Path:
    certs = workdir / "certs"
    rest: dict[str, Any] = {
        "enable": True,
        "serverHost": "127.0.0.1",
        "serverPort": port,
    }
    if args.server != "waitress":
        rest["server"] = args.server
    butler = {
        "logLevel": args.loglevel,
        "restServerConfig": rest,
        "restServerEndpointsEnable": {
            "butlerping": True,
            "senseStartTask": True,
            "senseAppReload": True,
            "health": False,
            "metrics": False,
        },
        "runs": {
            "dbFile": str(workdir / f"runs-{name}.sqlite"),
            "pollIntervalSeconds": args.poll_interval,
        },
        "cert": {
            "clientCert": str(certs / "client.pem"),
            "clientCertKey": str(certs / "client_key.pem"),
            "clientCertCA": str(certs / "root.pem"),
        },
        "configQRS": {"host": "127.0.0.1", "port": sims.qrs_port, "rejectUnauthorized": True},
        "configEngine": {
            "host": "127.0.0.1",
            "port": sims.engine_port,
            "rejectUnauthorized": True,
        },
    }
    path = workdir / f"butler-{name}.yaml"
    with path.open("w", encoding="utf-8") as handle:
        YAML().dump({"Butler": butler}, handle)
    return path


@contextmanager
def butler_process(config: Path, base: str) -> Iterator[int]:
    # BENCH_BUTLER_COMMAND (a command line) replaces the ``butler`` script, e.g. with a
    # wrapper that samples Butler's stacks.
    command = os.environ.get("BENCH_BUTLER_COMMAND", "").split() or [
        str(Path(sys.executable).parent / "butler")
    ]
    proc = subprocess.Popen(
        [*command, "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        try:
            wait_until_answering(f"{base}/v4/butlerping", proc)
        except RuntimeError as exc:
            raise SystemExit(f"butler did not start: {exc}") from None
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------ measuring


@dataclass(frozen=True)
class Ping:
    p50: float
    p99: float
    max: float
    requests: int
    errors: bool


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (utime + stime) of each thread of ``pid``."""
    found: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def busiest(pid: int, before: dict[int, float], after: dict[int, float], seconds: float) -> str:
    """All threads' CPU and the three busiest over a measurement, as % of one core."""
    spent = sorted(((after[t] - before.get(t, 0.0), t) for t in after), reverse=True)
    total = sum(cpu for cpu, _ in spent)
    top = ", ".join(
        f"{'main' if t == pid else t}: {100 * cpu / seconds:.0f} %" for cpu, t in spent[:3] if cpu
    )
    return f"all {len(after)} threads {100 * total / seconds:.0f} % (busiest {top})"


def wrk_ping(wrk: str, base: str, clients: int, duration: float) -> Ping:
    command = [wrk, "-t", str(min(clients, 2)), "-c", str(clients), "-d", f"{duration:g}s"]
    command += ["--latency", "--timeout", "10s", f"{base}/v4/butlerping"]
    out = subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=duration + 30
    ).stdout
    latency = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if latency is None or p50 is None or p99 is None or total is None:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    errors = "Non-2xx" in out or "Socket errors" in out
    return Ping(
        to_ms(p50.group(1)),
        to_ms(p99.group(1)),
        to_ms(latency.group(3)),
        int(total.group(1)),
        errors,
    )


@dataclass
class Row:
    case: str
    clients: int
    ping: Ping
    base: Ping
    threads: str
    rss: float


def measure_pings(
    wrk: str, base: str, pid: int, args: argparse.Namespace, case: str, yardstick: dict[int, Ping]
) -> list[Row]:
    rows = []
    for clients in args.clients:
        before, began = thread_cpu(pid), time.monotonic()
        ping = wrk_ping(wrk, base, clients, args.duration)
        threads = busiest(pid, before, thread_cpu(pid), time.monotonic() - began)
        base_ping = yardstick.setdefault(clients, ping)
        rows.append(Row(case, clients, ping, base_ping, threads, rss_mb(pid)))
        print(f"  {case}, {clients} client(s): done", file=sys.stderr)
    return rows


def wait_for(sims: Simulators, reloads: int, starts: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen_reloads, seen_starts = sims.counts()
        if seen_reloads >= reloads and seen_starts >= starts:
            return
        time.sleep(0.05)
    raise SystemExit(f"held calls did not arrive: {sims.counts()} of {(reloads, starts)}")


def held_case(
    wrk: str,
    workdir: Path,
    args: argparse.Namespace,
    sims: Simulators,
    kind: str,
    count: int,
) -> list[Row]:
    """``a`` then ``b`` (kind ``reload``), ``c`` (``start``) or ``d`` (``runs``) on one Butler."""
    name = f"{kind}-{count}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(workdir, name, args, port, sims)
    sims.ask("reset")
    yardstick: dict[int, Ping] = {}
    with butler_process(config, base) as pid:
        session = requests.Session()
        for _ in range(200):
            session.get(f"{base}/v4/butlerping", timeout=10)
        session.close()
        rows = measure_pings(wrk, base, pid, args, f"a: nothing else (before {name})", yardstick)
        reloads_before, starts_before = sims.counts()
        held = ThreadPoolExecutor(max(count, 1))
        try:
            if kind == "reload":
                label = f"b: {count} waited app reloads held"
                calls = [
                    held.submit(_put, f"{base}/v4/app/{SLOW_APP}/reload", {"wait": "true"}, {})
                    for _ in range(count)
                ]
                wait_for(sims, reloads_before + count, 0)
            elif kind == "start":
                label = f"c: {count} waited task starts held"
                query = {"wait": "true", "timeout": "600"}
                calls = [
                    held.submit(_put, f"{base}/v4/reloadtask/{task}/start", query, [])
                    for task in sims.task_ids[:count]
                ]
                wait_for(sims, 0, starts_before + count)
            else:
                label = f"d: run tracker following {count:,} open runs"
                body = [{"type": "starttasktag", "payload": {"tag": "bench"}}]
                answer = _put(f"{base}/v4/reloadtask/-/start", {}, body)
                if answer.get("totalTasksStarted") != count:
                    raise SystemExit(f"tag start: {str(answer)[:300]}")
                calls = []
            time.sleep(0.2)
            rows += measure_pings(wrk, base, pid, args, label, yardstick)
            for call in calls:
                if call.done() and call.exception() is None:
                    raise SystemExit(f"{label}: a held call answered early: {call.result()}")
            if kind == "reload":
                sims.ask("release")
                for call in calls:
                    call.result(timeout=60)
        finally:
            held.shutdown(wait=False, cancel_futures=True)
    # Waited task starts end with Butler's stop (their runs are hour-long); the stop
    # answers them or cuts them, either is fine here.
    return rows


def _put(url: str, params: dict[str, str], body: Any) -> dict[str, Any]:
    try:
        response = requests.put(url, params=params, json=body, timeout=600)
    except requests.RequestException as exc:
        return {"error": str(exc)}
    try:
        answer: dict[str, Any] = response.json()
    except ValueError:
        answer = {"status": response.status_code, "text": response.text[:300]}
    return answer


# ------------------------------------------------------------------------ main


def print_table(rows: list[Row], args: argparse.Namespace, load: tuple[str, str]) -> None:
    print(
        f"\n{args.server}: ping latency, wrk {args.duration:g} s per row, Butler log level "
        f"{args.loglevel}; {os.cpu_count()} CPUs; load average before {load[0]}, after {load[1]}\n"
    )
    print(
        "| case | clients | ping p50 ms | p99 ms | max ms | added p99 vs (a) ms "
        f"| target ≤ {TARGET_MS:g} ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        flag = " (errors)" if row.ping.errors else ""
        if row.case.startswith("a:"):
            added, verdict = "—", "—"
        else:
            delta = row.ping.p99 - row.base.p99
            added = f"{delta:+.2f}"
            verdict = "met" if delta <= TARGET_MS else "NOT MET"
        print(
            f"| {row.case}{flag} | {row.clients} | {row.ping.p50:.2f} | {row.ping.p99:.2f} "
            f"| {row.ping.max:.2f} | {added} | {verdict} |"
        )
    print("\nBusiest Butler threads per row (thread id: % of one core), RSS MB after the row:")
    for row in rows:
        print(f"- {row.case}, {row.clients}: {row.threads or '-'}; RSS {row.rss:.1f}")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=SERVERS, default="waitress")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk row")
    parser.add_argument("--held", default="8,50", help="held calls per b/c case (comma list)")
    parser.add_argument("--open-runs", type=int, default=1000, help="open runs of case d")
    parser.add_argument("--clients", default="1,16", help="wrk connections per row")
    parser.add_argument("--loglevel", default="info", help="Butler's log level")
    parser.add_argument(
        "--poll-interval", type=float, default=2.0, help="Butler.runs.pollIntervalSeconds"
    )
    parser.add_argument("--cases", default="b,c,d", help="which of b, c, d to run (a always)")
    parser.add_argument("--repeat", type=int, default=1, help="run each case this many times")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s rows, 1 client")
    parser.add_argument("--serve-simulators", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_simulators:
        serve_simulators(Path(args.serve_simulators[0]), int(args.serve_simulators[1]))
        return
    if args.quick:
        args.duration, args.held, args.open_runs, args.clients = 1.0, "4", 100, "1"
    args.clients = [int(c) for c in args.clients.split(",")]
    held = [int(n) for n in args.held.split(",") if n]
    wrk = ensure_wrk()
    load_before = loadavg()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
        workdir = Path(tmp)
        check_certs(workdir)
        sims = Simulators(workdir / "certs", max(args.open_runs, *held))
        try:
            cases = args.cases.split(",")
            for _ in range(args.repeat):
                if "b" in cases:
                    for count in held:
                        rows += held_case(wrk, workdir, args, sims, "reload", count)
                if "c" in cases:
                    for count in held:
                        rows += held_case(wrk, workdir, args, sims, "start", count)
                if "d" in cases:
                    rows += held_case(wrk, workdir, args, sims, "runs", args.open_runs)
        finally:
            sims.close()
    print_table(rows, args, (load_before, loadavg()))


if __name__ == "__main__":
    main()
