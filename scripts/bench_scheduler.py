"""Benchmark the scheduler: fire lateness, idle CPU, memory, and load + first persist.

Run: ``.venv/bin/python scripts/bench_scheduler.py`` (about 3 minutes; ``--quick`` about
1 minute). Everything stays on 127.0.0.1 and in a temporary folder.

Fires go through Butler's real task starter and QRS client to the QRS simulator (TLS with
client certificates, in this process), so each fire is a real ``start/many`` call. The
task starter is wrapped to note the moment the scheduler called it; lateness is that
moment minus the planned slot (every slot here is a whole second, so the slot is the call
time rounded down; a call more than a second late would show up as missing calls).

Printed table, one row per measurement:
1. load + first persist of 10,000 schedules in Butler's layout (read, validate, plan every
   schedule, then ``start_all`` which rewrites the whole file), and of 1,000 schedules in a
   hand-written layout with comments (the slower comment-preserving path);
2. lateness p50/p99/max for 1,000 schedules firing every second, 10,000 schedules firing at
   second 0 of every minute, and 10,000 every-minute schedules spread over the 60 seconds;
3. process CPU while firing, idle CPU between fires (a quiet window with 10,000 loaded
   schedules, none due), and resident memory with 10,000 schedules loaded;
4. preview of 1,000 fires (``Scheduler.preview``, what both preview routes run): a daily
   schedule (crossing six DST changes), an every-5-minutes one with ``dst: skip`` and a
   Lord_Howe one with ``dst: both``.
Targets: p99 lateness < 50 ms, idle CPU < 1 %, load + persist < 2 s, preview <= 50 ms.

``--calendars`` gives every schedule ``excludeCalendars: [holidays]`` (Swedish public
holidays), so every plan and re-plan goes through the calendar search; on a Swedish public
holiday nothing would fire, so run it on another day.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from butler.qrs import QrsClient  # noqa: E402
from butler.schedules import Scheduler, ScheduleStore  # noqa: E402
from butler.schedules.calendars import Calendars, load_calendars  # noqa: E402
from butler.tasks import IdStarts, StartsScheduledTasks, TaskStarter, Trigger  # noqa: E402
from butler.testing.certs import generate_certificates  # noqa: E402
from butler.testing.qrs_simulator import QrsSimulator  # noqa: E402

ZONES = ["Europe/Stockholm", "Europe/London", "America/New_York", "Asia/Tokyo", "UTC"]
CALENDARS: Calendars | None = None
"""Set by ``--calendars``: every bench schedule then excludes this registry's ``holidays``."""


def open_store(path: Path) -> ScheduleStore:
    return ScheduleStore(path, calendars=CALENDARS)


def write_schedule_file(
    path: Path, count: int, cron: Callable[[int], str], tasks: Sequence[str]
) -> None:
    """A schedule file in the layout Butler writes (and the original's js-yaml wrote)."""
    lines = ["butlerSchedule:\n"]
    for i in range(count):
        lines.append(
            f"  - name: Bench schedule {i}\n"
            f"    cronSchedule: '{cron(i)}'\n"
            f"    timezone: {ZONES[i % len(ZONES)]}\n"
            f"    qlikSenseTaskId: {tasks[i % len(tasks)]}\n"
            "    startupState: started\n"
            "    tags:\n"
            "      - bench\n"
            f"      - group {i % 10}\n"
            f"    id: {uuid.uuid4()}\n"
            "    created: '2024-01-15T12:00:00.000Z'\n"
            "    lastKnownState: started\n"
        )
        if CALENDARS is not None:
            lines.append("    excludeCalendars:\n      - holidays\n")
    path.write_text("".join(lines), encoding="utf-8")


def write_hand_written_file(path: Path, count: int, task: str) -> None:
    """Comments and a folded name: what keeps a file on the comment-preserving path."""
    lines = ["# Hand-written schedules\nbutlerSchedule:\n"]
    for i in range(count):
        lines.append(
            f"  # schedule {i}\n"
            f"  - id: hand-{i}\n"
            "    name: >-\n"
            f"      Hand-written schedule number {i}\n"
            f"    cronSchedule: 0 {i % 60} 6 * * *\n"
            "    timezone: Europe/Paris\n"
            f"    qlikSenseTaskId: {task}\n"
            "    startupState: started\n"
        )
    path.write_text("".join(lines), encoding="utf-8")


class NoStarts:
    """A task starter that starts nothing: for measuring load, planning and persisting."""

    def start_ids_with_runs(self, task_ids: Sequence[str], trigger: Trigger) -> IdStarts:
        return IdStarts({})


@dataclass
class Recording:
    """Wraps the real task starter; notes when each call arrived."""

    target: StartsScheduledTasks
    lateness: list[float] = field(default_factory=list)
    results: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_ids_with_runs(self, task_ids: Sequence[str], trigger: Trigger) -> IdStarts:
        now = time.time()
        with self.lock:
            self.lateness.append(now - math.floor(now))
        started = self.target.start_ids_with_runs(task_ids, trigger)
        with self.lock:
            for outcome in started.outcomes.values():
                self.results[outcome] = self.results.get(outcome, 0) + 1
        return started

    def reset(self) -> None:
        with self.lock:
            self.lateness.clear()
            self.results.clear()


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


def rss_mib() -> float | None:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))


Row = tuple[str, str, str]


def bench_load(folder: Path, tasks: Sequence[str]) -> list[Row]:
    rows: list[Row] = []
    path = folder / "load.yaml"
    write_schedule_file(path, 10_000, lambda i: "0 0 * * *", tasks)
    started = time.perf_counter()
    store = open_store(path)
    loaded = time.perf_counter()
    scheduler = Scheduler(store, NoStarts())
    planned = time.perf_counter()
    scheduler.start_all()
    persisted = time.perf_counter()
    scheduler.stop()
    rows.append(
        (
            "10,000 schedules: load + plan + first persist",
            f"{persisted - started:.2f} s",
            f"read+validate {loaded - started:.2f} s, plan {planned - loaded:.2f} s, "
            f"persist {persisted - planned:.2f} s (target < 2 s)",
        )
    )
    hand = folder / "hand.yaml"
    write_hand_written_file(hand, 1_000, tasks[0])
    started = time.perf_counter()
    store = open_store(hand)
    scheduler = Scheduler(store, NoStarts())
    scheduler.start_all()
    persisted = time.perf_counter()
    scheduler.stop()
    rows.append(
        (
            "1,000 hand-written (comments kept): load + persist",
            f"{persisted - started:.2f} s",
            "ruamel round-trip path",
        )
    )
    return rows


def bench_fires(
    label: str,
    folder: Path,
    recording: Recording,
    count: int,
    cron: Callable[[int], str],
    tasks: Sequence[str],
    until: Callable[[float], float],
    expected_calls: Callable[[float, float], int],
) -> list[Row]:
    path = folder / f"{uuid.uuid4().hex}.yaml"
    write_schedule_file(path, count, cron, tasks)
    scheduler = Scheduler(open_store(path), recording)
    scheduler.start()
    sleep_until(math.floor(time.time()) + 1.5)
    recording.reset()
    begin_wall, begin_cpu = time.time(), time.process_time()
    sleep_until(until(begin_wall))
    end_wall, end_cpu = time.time(), time.process_time()
    scheduler.stop()
    samples = list(recording.lateness)
    cpu = 100 * (end_cpu - begin_cpu) / (end_wall - begin_wall)
    expected = expected_calls(begin_wall, end_wall)
    if not samples:
        return [(label, "no fires", "")]
    ms = [s * 1000 for s in samples]
    started = recording.results.get("started", 0)
    return [
        (
            f"{label}: lateness p50 / p99 / max",
            f"{statistics.median(ms):.1f} / {percentile(ms, 0.99):.1f} / {max(ms):.1f} ms",
            f"{len(samples)} start calls (expected {expected}), {started} tasks started, "
            f"CPU {cpu:.1f} % of one core (target p99 < 50 ms)",
        )
    ]


def bench_idle(folder: Path, tasks: Sequence[str], seconds: float) -> list[Row]:
    path = folder / "idle.yaml"
    write_schedule_file(path, 10_000, lambda i: f"0 {i % 60} 3 * * *", tasks)
    scheduler = Scheduler(open_store(path), NoStarts())
    scheduler.start()
    time.sleep(2)
    begin_wall, begin_cpu = time.time(), time.process_time()
    time.sleep(seconds)
    end_wall, end_cpu = time.time(), time.process_time()
    rss = rss_mib()
    scheduler.stop()
    cpu = 100 * (end_cpu - begin_cpu) / (end_wall - begin_wall)
    return [
        (
            "idle CPU, 10,000 schedules loaded, none due",
            f"{cpu:.2f} %",
            f"process CPU time over a {seconds:.0f} s quiet window (target < 1 %)",
        ),
        (
            "resident memory, 10,000 schedules loaded",
            f"{rss:.0f} MiB" if rss is not None else "n/a",
            "whole process (includes the QRS simulator and Python itself)",
        ),
    ]


PREVIEWS = [
    ("daily, Europe/Stockholm, vixie", "0 6 * * *", "Europe/Stockholm", "vixie"),
    ("every 5 min, America/New_York, skip", "*/5 * * * *", "America/New_York", "skip"),
    ("daily 02:15, Australia/Lord_Howe, both", "15 2 * * *", "Australia/Lord_Howe", "both"),
]


def bench_preview(folder: Path, tasks: Sequence[str], runs: int = 20) -> list[Row]:
    scheduler = Scheduler(ScheduleStore(folder / "preview.yaml"), NoStarts())
    after = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[Row] = []
    for label, cron, zone, dst in PREVIEWS:
        entry = {"cronSchedule": cron, "timezone": zone, "dst": dst, "qlikSenseTaskId": tasks[0]}
        ms = []
        for _ in range(runs):
            started = time.perf_counter()
            fires = scheduler.preview(entry, after, 1_000, False)
            ms.append((time.perf_counter() - started) * 1000)
            assert len(fires) == 1_000
        rows.append(
            (
                f"preview of 1,000 fires, {label}: p50 / max",
                f"{statistics.median(ms):.1f} / {max(ms):.1f} ms",
                f"{runs} runs (target <= 50 ms)",
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (about a minute)")
    parser.add_argument(
        "--calendars", action="store_true", help="every schedule excludes Swedish holidays"
    )
    args = parser.parse_args()
    if args.calendars:
        global CALENDARS
        CALENDARS = load_calendars({"holidays": {"holidays": {"country": "SE"}}}, Path)
    logging.basicConfig(level=logging.WARNING)
    per_second_run = 10 if args.quick else 30
    minute_fires = 1 if args.quick else 2
    spread_run = 20 if args.quick else 60

    rows: list[Row] = [("Python", sys.version.split()[0], f"{os.cpu_count()} CPU(s)")]
    rows.append(("RSS before loading schedules", f"{rss_mib() or 0:.0f} MiB", ""))
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        folder = Path(tmp)
        certs = generate_certificates(folder / "certs")
        simulator = QrsSimulator(certs, synthetic_tasks=20).start()
        client = QrsClient(
            "127.0.0.1",
            simulator.port,
            use_ssl=True,
            client_cert=certs.client_cert,
            client_key=certs.client_key,
            ca_cert=certs.ca,
            reject_unauthorized=True,
        )
        starter = TaskStarter(client)
        tasks = simulator.task_ids(tag="bench")[:10]
        recording = Recording(starter)
        try:
            rows += bench_load(folder, tasks)
            rows += bench_fires(
                "1,000 every second",
                folder,
                recording,
                1_000,
                lambda i: "* * * * * *",
                tasks,
                lambda begin: begin + per_second_run,
                lambda begin, end: math.floor(end) - math.ceil(begin) + 1,
            )
            rows += bench_fires(
                "10,000 every minute at :00",
                folder,
                recording,
                10_000,
                lambda i: "* * * * *",
                tasks,
                lambda begin: (math.floor(begin / 60) + minute_fires) * 60 + 2,
                lambda begin, end: math.floor(end / 60) - math.ceil(begin / 60) + 1,
            )
            rows += bench_fires(
                "10,000 every minute, spread",
                folder,
                recording,
                10_000,
                lambda i: f"{i % 60} * * * * *",
                tasks,
                lambda begin: begin + spread_run,
                lambda begin, end: math.floor(end) - math.ceil(begin) + 1,
            )
            rows += bench_idle(folder, tasks, 10 if args.quick else 20)
            rows += bench_preview(folder, tasks)
        finally:
            starter.close()
            client.close()
            simulator.stop()
    print_table(rows)
    return 0


def print_table(rows: list[Row]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    header = ("Measurement", "Result", "Notes")
    print(f"Scheduler benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"| {header[0]:<{widths[0]}} | {header[1]:<{widths[1]}} | {header[2]}")
    print(f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 2)}|{'-' * 7}")
    for name, result, notes in rows:
        print(f"| {name:<{widths[0]}} | {result:<{widths[1]}} | {notes}")


if __name__ == "__main__":
    raise SystemExit(main())
