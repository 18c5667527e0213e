"""Memory: Butler's RSS idle and after a fixed load, with and without a malloc arena cap.

Butler runs as a real process (``butler -c``, waitress or granian) against the QRS simulator
(a child process, ``python -m butler.testing.qrs_simulator``, as in ``bench_http.py``). The
load is fixed in requests, not in seconds, so two runs open the same number of runs whatever
the machine's speed: ``--pings`` pings (wrk-free, 16 client threads), then ``--starts``
1-task starts and ``--starts`` / 2 starts of a 20-task tag (about 20,000 runs by default,
what ``bench_http.py``'s start rows open), then two tracker polls' worth of waiting. RSS
(``VmRSS``) after each phase, and each phase's requests per second.

``--arena-max N`` puts ``MALLOC_ARENA_MAX=N`` in Butler's environment; Butler leaves an
explicit value alone (``butler/memory.py``), so ``--arena-max 16`` (glibc's default on two
cores, 8 per core) gives the behaviour before Butler capped the arenas itself.

    python scripts/bench_memory.py [--server waitress|granian] [--arena-max N] [--starts 2000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from ruamel.yaml import YAML

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
for folder in (REPO, SCRIPTS):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from bench_http import CASES, KV_BODY, TAG_TASKS, butler_config, check_certs, rss_mb  # noqa: E402

from butler.testing.processes import free_port, wait_until_answering  # noqa: E402

CLIENTS = 16


def drive(base: str, method: str, path: str, body: object, count: int) -> float:
    """``count`` requests from ``CLIENTS`` threads (one session each); requests per second."""
    sessions = [requests.Session() for _ in range(CLIENTS)]

    def worker(index: int) -> None:
        session = sessions[index]
        for _ in range(index, count, CLIENTS):
            answer = session.request(method, base + path, json=body, timeout=60)
            if answer.status_code >= 300:
                raise SystemExit(f"{method} {path}: {answer.status_code} {answer.text[:200]}")

    began = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(worker, range(CLIENTS)))
    elapsed = time.perf_counter() - began
    for session in sessions:
        session.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=("waitress", "granian"), default="waitress")
    parser.add_argument("--arena-max", type=int, default=None, help="MALLOC_ARENA_MAX for Butler")
    parser.add_argument("--pings", type=int, default=10_000)
    parser.add_argument("--starts", type=int, default=2_000, help="1-task starts (tag: half)")
    parser.add_argument(
        "--poll-interval", type=float, default=None, help="Butler.runs.pollIntervalSeconds"
    )
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the load")
    args = parser.parse_args()
    args.loglevel, args.threads, args.max_waiting = "info", 16, 100
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    phases: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        workdir = Path(tmp)
        check_certs(workdir)
        qrs_port, port = free_port(), free_port()
        config = butler_config(workdir, args, port, qrs_port)
        if args.poll_interval is not None:
            yaml = YAML()
            data = yaml.load(config.read_text(encoding="utf-8"))
            data["Butler"]["runs"]["pollIntervalSeconds"] = args.poll_interval
            with config.open("w", encoding="utf-8") as handle:
                yaml.dump(data, handle)
        command = [sys.executable, "-m", "butler.testing.qrs_simulator", "--port", str(qrs_port)]
        command += ["--certs", str(workdir / "certs"), "--synthetic-tasks", str(TAG_TASKS)]
        command += ["--max-concurrent-reloads", "1000"]
        simulator = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        env = dict(os.environ)
        env.pop("MALLOC_ARENA_MAX", None)
        if args.arena_max is not None:
            env["MALLOC_ARENA_MAX"] = str(args.arena_max)
        assert simulator.stdout is not None
        if not simulator.stdout.readline().startswith("QRS simulator on"):
            raise SystemExit("QRS simulator did not start")
        butler = subprocess.Popen(
            [str(Path(sys.executable).parent / "butler"), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(base + "/v4/butlerping", butler)
            drive(base, "POST", "/v4/keyvalues/bench", KV_BODY, 1)
            for case in CASES[3:]:
                drive(base, case.method, case.path, case.body, 1)
            time.sleep(1)
            phases.append(("idle (after one call of each kind)", rss_mb(butler.pid), "—"))
            for case, count in (
                (CASES[0], args.pings),
                (CASES[1], args.pings),
                (CASES[3], args.starts),
                (CASES[4], args.starts // 2),
            ):
                rps = drive(base, case.method, case.path, case.body, count)
                phases.append(
                    (f"after {count:,} x {case.label}", rss_mb(butler.pid), f"{rps:,.0f}")
                )
                print(f"  {case.label}: done", file=sys.stderr)
            time.sleep(args.settle)
            phases.append((f"{args.settle:g} s later (tracker polls)", rss_mb(butler.pid), "—"))
        finally:
            butler.send_signal(signal.SIGTERM)
            butler.wait(30)
            simulator.terminate()
            simulator.wait(10)
            simulator.stdout.close()
    load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    arenas = "unset" if args.arena_max is None else str(args.arena_max)
    print(
        f"\n{args.server}, MALLOC_ARENA_MAX {arenas}, {CLIENTS} client threads; "
        f"load average before {load_before}, after {load_after}\n"
    )
    print("| phase | RSS MB | req/s |")
    print("|---|---:|---:|")
    for label, rss, rps in phases:
        print(f"| {label} | {rss:.1f} | {rps} |")


if __name__ == "__main__":
    main()
