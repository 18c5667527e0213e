"""Runs benchmark: what recording and tracking runs cost QRS, a start and a waiting caller.

Run: ``.venv/bin/python scripts/bench_runs.py`` (about 30 s; ``--quick`` under 10 s, for
the smoke test). Everything stays on 127.0.0.1 and in a temporary folder; the run store's
``synchronous=FULL`` commits are flushed there (cheaper if ``/tmp`` is a tmpfs).

One table, one row per measurement:

1. QRS requests per tracker poll (``Runs.poll_once``) with 1, 100 and 1,000 open runs:
   tasks started through the real task starter and QRS client against the QRS simulator (in
   this process) with hour-long executions, so the runs stay open. The first poll after a
   start (execution ids not known yet: one ``createdDate ge`` clause) and the steady state
   (every execution known: ``executionID eq`` clauses, grouped by ``filter_chunks``, whose
   chunk count is shown as the bound). Poll wall time includes the simulator's work.
2. What recording runs adds to a fire-and-forget start: ``TaskStarter.start`` timed
   in-process with ``runs=None`` (before) and with a real ``Runs`` on a SQLite file (after),
   alternating A/B every iteration, for a 1-task start by id and a 20-task tag start. Here
   the simulator is a child process (``python -m butler.testing.qrs_simulator``), so the
   CPU time per start (``time.process_time``) is the starter's alone. The tracker thread is
   not running, so only the recording is measured.
3. Wall time of a waited (``?wait=true``) 100-task tag start over HTTP, Butler a real
   process, the tasks taking 1 s each at 20 ms QRS latency and all running at once, with
   ``Butler.runs.pollIntervalSeconds`` 2 (the default) and 0.5.

Targets: 1 QRS request per poll for 100 runs and no more than the chunk count for 1,000;
at most 1 ms median added to a start; a waited start done within 1 s + 3 poll intervals.

    python scripts/bench_runs.py [--quick] [--iterations 1000]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench_kv import percentile, print_table  # noqa: E402
from bench_task_start import write_config  # noqa: E402

from butler.qrs import QrsClient, filter_chunks  # noqa: E402
from butler.runs import Runs, RunStore  # noqa: E402
from butler.runs.tracker import Poll  # noqa: E402
from butler.tasks import StartRequest, TaskStarter, Trigger  # noqa: E402
from butler.testing.certs import CertPaths, generate_certificates  # noqa: E402
from butler.testing.processes import free_port, wait_until_answering  # noqa: E402
from butler.testing.qrs_simulator import QrsSimulator  # noqa: E402

Row = list[str]
POLL_SIZES = (1, 100, 1_000)
LONG_RUN = 3600.0
WAITED_TASKS = 100
TRIGGER = Trigger.rest("127.0.0.1")
POLL_PATH = "/qrs/executionresult"


class TimedQrs(QrsClient):
    """A QRS client that adds up the seconds spent in ``execution_results`` (the poll's
    QRS calls, simulator included), so the rest of a poll is Butler's own time."""

    in_qrs = 0.0

    def execution_results(self, clauses: Sequence[str]) -> list[dict[str, Any]]:
        began = time.perf_counter()
        try:
            return super().execution_results(clauses)
        finally:
            self.in_qrs += time.perf_counter() - began


def qrs_client(port: int, certs: CertPaths) -> TimedQrs:
    return TimedQrs(
        "127.0.0.1",
        port,
        client_cert=certs.client_cert,
        client_key=certs.client_key,
        ca_cert=certs.ca,
        reject_unauthorized=True,
    )


# ----------------------------------------------------------------- 1. QRS requests per poll


def poll_rows(workdir: Path, certs: CertPaths, steady_polls: int) -> list[Row]:
    rows: list[Row] = []
    with QrsSimulator(
        certs, synthetic_tasks=max(POLL_SIZES), max_concurrent_reloads=max(POLL_SIZES)
    ) as simulator:
        qrs = qrs_client(simulator.port, certs)
        try:
            for size in POLL_SIZES:
                rows += _poll_size(workdir, simulator, qrs, size, steady_polls)
        finally:
            qrs.close()
    return rows


def _poll_size(
    workdir: Path, simulator: QrsSimulator, qrs: TimedQrs, size: int, steady_polls: int
) -> list[Row]:
    simulator.reset_catalogue()  # no executions left from the previous size
    ids = simulator.task_ids(tag="bench")[:size]
    for task_id in ids:
        simulator.set_execution(task_id, duration=LONG_RUN)
    runs = Runs(RunStore(workdir / f"poll-{size}.sqlite"), qrs)
    starter = TaskStarter(qrs, runs=runs)
    try:
        result = starter.start(StartRequest(task_ids=ids), TRIGGER)
        if len(result.started) != size:
            raise SystemExit(f"started {len(result.started)} of {size} tasks")
        first_chunks = _chunk_count(runs)
        first_count, first_ms, first_own = _one_poll(simulator, qrs, runs)
        open_runs = runs.store.open_runs()
        unmatched = sum(1 for run in open_runs if run.execution_id is None)
        if len(open_runs) != size or unmatched:
            raise SystemExit(f"{size} runs: {len(open_runs)} open, {unmatched} without execution")
        chunks = _chunk_count(runs)
        steady = [_one_poll(simulator, qrs, runs) for _ in range(steady_polls)]
    finally:
        starter.close()
        runs.close()
    counts = sorted({count for count, _, _ in steady})
    steady_ms = statistics.median(ms for _, ms, _ in steady)
    steady_own = statistics.median(own for _, _, own in steady)
    target = "1" if size <= 100 else f"≤ {chunks} (URL-length chunks)"
    met = all(count <= (1 if size <= 100 else chunks) for count in counts)
    label = f"{size:,} open run{'s' if size > 1 else ''}"
    rows = [
        [
            f"QRS requests per poll, {label}, steady",
            f"{'/'.join(map(str, counts))} (filter_chunks: {chunks}); "
            f"{steady_ms:.1f} ms, own {steady_own:.1f} ms",
            f"{target} {'met' if met else 'NOT MET'}",
        ]
    ]
    if size >= 100:
        first_met = first_count <= first_chunks
        first_target = "1" if size <= 100 else f"≤ {first_chunks}"
        rows.append(
            [
                f"QRS requests per poll, {label}, first poll (createdDate ge)",
                f"{first_count} (filter_chunks: {first_chunks}); "
                f"{first_ms:.1f} ms, own {first_own:.1f} ms",
                f"{first_target} {'met' if first_met else 'NOT MET'}",
            ]
        )
    return rows


def _chunk_count(runs: Runs) -> int:
    return len(list(filter_chunks(Poll.of(runs.store.open_runs()).clauses)))


def _one_poll(simulator: QrsSimulator, qrs: TimedQrs, runs: Runs) -> tuple[int, float, float]:
    """QRS requests, wall ms and Butler's own ms (outside the QRS calls) of one poll."""
    simulator.reset_log()
    qrs.in_qrs = 0.0
    began = time.perf_counter()
    runs.poll_once()
    elapsed = time.perf_counter() - began
    return simulator.request_count, elapsed * 1000, (elapsed - qrs.in_qrs) * 1000


# ----------------------------------------------------------------- 2. start path, A/B


@contextmanager
def simulator_process(certs: CertPaths, tasks: int) -> Iterator[int]:
    """The QRS simulator as a child process (its CPU is not ours); yields its port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "butler.testing.qrs_simulator",
            "--port",
            str(port),
            "--certs",
            str(certs.ca.parent),
            "--synthetic-tasks",
            str(tasks),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("QRS simulator on"):
            raise SystemExit(f"QRS simulator did not start: {line!r}")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def start_rows(workdir: Path, certs: CertPaths, iterations: int) -> list[Row]:
    rows: list[Row] = []
    with simulator_process(certs, tasks=20) as port:
        qrs = qrs_client(port, certs)
        runs = Runs(RunStore(workdir / "start.sqlite"), qrs)
        before = TaskStarter(qrs, runs=None)
        after = TaskStarter(qrs, runs=runs)
        try:
            bench = sorted(str(task["id"]) for task in qrs.find_tasks_by_tag("bench"))
            cases = (
                ("1-task start by id", StartRequest(task_ids=bench[:1]), 1, iterations),
                ("20-task tag start", StartRequest(tags=["bench"]), 20, max(10, iterations // 2)),
            )
            for label, request, size, count in cases:
                rows += _ab_rows(label, before, after, request, size, count)
        finally:
            before.close()
            after.close()
            runs.close()
            qrs.close()
    return rows


def _ab_rows(
    label: str,
    before: TaskStarter,
    after: TaskStarter,
    request: StartRequest,
    size: int,
    iterations: int,
) -> list[Row]:
    samples: dict[str, tuple[list[float], list[float]]] = {"A": ([], []), "B": ([], [])}

    def one(starter: TaskStarter, into: str | None) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        result = starter.start(request, TRIGGER)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if len(result.started) != size:
            raise SystemExit(f"{label}: started {len(result.started)} of {size}")
        if into is not None:
            samples[into][0].append(wall * 1000)
            samples[into][1].append(cpu * 1000)

    for _ in range(5):
        one(before, None)
        one(after, None)
    for index in range(iterations):
        pair = ((before, "A"), (after, "B"))
        for starter, into in pair if index % 2 == 0 else pair[::-1]:
            one(starter, into)
    (wall_a, cpu_a), (wall_b, cpu_b) = samples["A"], samples["B"]
    added = statistics.median(wall_b) - statistics.median(wall_a)
    note = f"{iterations} each, A/B alternating"
    return [
        [
            f"{label}: median ms, runs off → on",
            _before_after(statistics.median(wall_a), statistics.median(wall_b)),
            f"added ≤ 1 ms {'met' if added <= 1.0 else 'NOT MET'} ({note})",
        ],
        [
            f"{label}: p99 ms, runs off → on",
            _before_after(percentile(wall_a, 0.99), percentile(wall_b, 0.99)),
            "—",
        ],
        [
            f"{label}: CPU ms per start, runs off → on",
            _before_after(statistics.median(cpu_a), statistics.median(cpu_b)),
            "— (median; simulator in a child process)",
        ],
    ]


def _before_after(before: float, after: float) -> str:
    return f"{before:.2f} → {after:.2f} ({after - before:+.2f})"


# ----------------------------------------------------------------- 3. waited start over HTTP


def waited_rows(workdir: Path, certs: CertPaths, repeats: int) -> list[Row]:
    rows: list[Row] = []
    with QrsSimulator(
        certs,
        synthetic_tasks=WAITED_TASKS,
        latency=0.020,
        max_concurrent_reloads=WAITED_TASKS,
    ) as simulator:
        for task_id in simulator.task_ids(tag="bench"):
            simulator.set_execution(task_id, duration=1.0)
        for interval in (2.0, 0.5):
            rows.append(_waited_row(workdir, certs, simulator, interval, repeats))
    return rows


def _waited_row(
    workdir: Path, certs: CertPaths, simulator: QrsSimulator, interval: float, repeats: int
) -> Row:
    port = free_port()
    config = _runs_config(workdir, port, simulator, certs, interval)
    butler = subprocess.Popen(
        [str(Path(sys.executable).parent / "butler"), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    times: list[float] = []
    polls: list[int] = []
    try:
        try:
            wait_until_answering(f"{base}/documentation/json", butler)
        except RuntimeError as exc:
            raise SystemExit(f"butler did not start: {exc}") from None
        with requests.Session() as session:
            for _ in range(repeats):
                simulator.reset_log()
                began = time.perf_counter()
                answer = _waited_start(session, base)
                times.append(time.perf_counter() - began)
                polls.append(sum(1 for r in simulator.requests() if r.path.startswith(POLL_PATH)))
                if answer.get("outcome") != "success" or len(answer["runs"]) != WAITED_TASKS:
                    raise SystemExit(f"waited start: {str(answer)[:300]}")
    finally:
        butler.terminate()
        butler.wait(20)
    target = 1.0 + 3 * interval
    worst = max(times)
    spread = f"median of {repeats}, max {worst:.2f} s; " if repeats > 1 else ""
    return [
        f"Waited {WAITED_TASKS}-task tag start (1 s tasks, 20 ms QRS), poll {interval:g} s",
        f"{statistics.median(times):.2f} s ({spread}{max(polls)} poll(s) of QRS)",
        f"≤ {target:g} s {'met' if worst <= target else 'NOT MET'}",
    ]


def _runs_config(
    workdir: Path, port: int, simulator: QrsSimulator, certs: CertPaths, interval: float
) -> Path:
    """bench_task_start's config plus ``Butler.runs``, one file per poll interval."""
    yaml = YAML()
    base = write_config(workdir, port, simulator, certs)
    data: dict[str, Any] = yaml.load(base.read_text(encoding="utf-8"))
    data["Butler"]["runs"] = {
        "pollIntervalSeconds": interval,
        "dbFile": str(workdir / f"waited-{interval:g}.sqlite"),
    }
    path = workdir / f"butler-poll-{interval:g}.yaml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


def _waited_start(session: requests.Session, base: str) -> dict[str, Any]:
    response = session.put(
        f"{base}/v4/reloadtask/-/start",
        params={"wait": "true", "timeout": "60"},
        json=[{"type": "starttasktag", "payload": {"tag": "bench"}}],
        timeout=90,
    )
    if response.status_code != 200:
        raise SystemExit(f"waited start answered {response.status_code}: {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer


# ----------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="few iterations (a smoke run of a few seconds)"
    )
    parser.add_argument(
        "--iterations", type=int, default=1000, help="A/B pairs of 1-task starts (20-task: half)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    iterations = 20 if args.quick else args.iterations
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average before the run {os.getloadavg()[0]:.2f}"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        workdir = Path(tmp)
        certs = generate_certificates(workdir / "certs")
        rows += poll_rows(workdir, certs, steady_polls=1 if args.quick else 5)
        rows += start_rows(workdir, certs, iterations)
        rows += waited_rows(workdir, certs, repeats=1 if args.quick else 3)
    print_table(
        f"Runs benchmark{' (--quick)' if args.quick else ''}: Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPU(s){load}",
        ["measurement", "result", "target"],
        rows,
    )


if __name__ == "__main__":
    main()
