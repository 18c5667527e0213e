"""HTTP benchmark: Butler against a bare Flask app on the same server, side by side, one run.

Starts ``butler`` as a real process on a loopback port, the QRS simulator as a second process
(``python -m butler.testing.qrs_simulator``, so its CPU is not counted as ours) and the
yardstick: a bare Flask app with one trivial view per case, served by the same server with
the same number of worker threads, as a third process. wrk (installed with apt-get when
missing and possible) drives each case at 1 and 16 clients, ours and bare back to back:

- ``ping``         GET  /v4/butlerping
- ``KV GET``       GET  /v4/keyvalues/bench?key=k1       (memory store, key set beforehand)
- ``KV POST``      POST /v4/keyvalues/bench              (``{"key":..., "value":..., "ttl":...}``)
- ``start 1``      PUT  /v4/reloadtask/-/start           (one task by id)
- ``start tag 20`` PUT  /v4/reloadtask/-/start           (one tag naming 20 tasks)

For each row: req/s, p50 and p99 (wrk's latency distribution), CPU ms per request (utime +
stime of the server process from /proc, over the requests wrk counted; the simulator and
wrk are other processes), and the server's RSS idle and after all the load. The bare views
for the task starts answer a canned body without calling QRS: they are the stack's floor,
not a like-for-like start. Loopback only; every run is bounded in time.

    python scripts/bench_http.py [--server waitress] [--duration 5] [--rounds 1] [--quick]

Rows are run ours then bare, case after case; with ``--rounds N`` the whole series is run N
times and each figure is the median of its N measurements.

``--yardstick auth-off`` measures what authentication and the audit trail cost instead:
"ours" is Butler with ``restServerConfig.auth`` on (every request sends a valid
``X-Api-Key``) and ``Butler.audit`` on (a SQLite file, each record committed before the
answer), the yardstick the same Butler with both off (it gets the same header and ignores
it); the cases default to ping, KV GET and KV POST.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from ruamel.yaml import YAML

from butler.testing.certs import generate_certificates
from butler.testing.processes import free_port, wait_until_answering

SERVERS = ("waitress", "granian")
"""Servers this script can put both apps on (``restServerConfig.server`` when there is one)."""

TAG_TASKS = 20
ONE_TASK = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
"""A task of the simulator's default catalogue."""
KV_BODY = {"key": "k1", "value": "2020-09-29", "ttl": 60000}


@dataclass(frozen=True)
class Case:
    label: str
    method: str
    path: str
    body: object = None


CASES = (
    Case("ping", "GET", "/v4/butlerping"),
    Case("KV GET", "GET", "/v4/keyvalues/bench?key=k1"),
    Case("KV POST", "POST", "/v4/keyvalues/bench", KV_BODY),
    Case(
        "start 1 task",
        "PUT",
        "/v4/reloadtask/-/start",
        [{"type": "starttaskid", "payload": {"taskId": ONE_TASK}}],
    ),
    Case(
        f"start {TAG_TASKS}-task tag",
        "PUT",
        "/v4/reloadtask/-/start",
        [{"type": "starttasktag", "payload": {"tag": "bench"}}],
    ),
)


# ------------------------------------------------------------------------ the bare yardstick


def bare_app():  # type: ignore[no-untyped-def]
    """Flask "hello" per case: the least a Flask view on this server can cost."""
    from flask import Flask, request

    from butler import __version__

    app = Flask("bare")

    @app.get("/v4/butlerping")
    def ping():  # type: ignore[no-untyped-def]
        return {"response": "Butler reporting for duty", "butlerVersion": __version__}

    @app.get("/v4/keyvalues/<namespace>")
    def kv_get(namespace: str):  # type: ignore[no-untyped-def]
        return {"namespace": namespace, "key": request.args["key"], "value": "v", "ttl": 0}

    @app.post("/v4/keyvalues/<namespace>")
    def kv_post(namespace: str):  # type: ignore[no-untyped-def]
        body = request.get_json()
        return {"namespace": namespace, **body}, 201

    @app.put("/v4/reloadtask/-/start")
    def start():  # type: ignore[no-untyped-def]
        request.get_json()
        return {"tasksId": {"started": []}, "totalTasksStarted": 0}

    return app


def serve_bare(server: str, port: int, threads: int) -> None:
    if server == "waitress":
        import waitress

        waitress.serve(bare_app(), host="127.0.0.1", port=port, threads=threads, ident="bare")
    else:
        from butler.server import build_server

        app = bare_app()
        app.config.update(  # what Butler's app factory sets for its server
            BUTLER_WORKERS=threads,
            BUTLER_READ_TIMEOUT=10.0,
            BUTLER_MAX_CONNECTIONS_PER_CLIENT=1000,
            MAX_CONTENT_LENGTH=1_048_576,
        )
        build_server(app, "127.0.0.1", port, server="granian").serve_forever()


# ------------------------------------------------------------------------ measuring


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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def to_ms(text: str) -> float:
    """wrk's duration text (``512.00us``, ``1.20ms``, ``2.00s``, ``1.00m``) in ms."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk_script(workdir: Path, case: Case, api_key: str | None = None) -> Path | None:
    if case.body is None and api_key is None:
        return None
    path = workdir / f"{case.label.replace(' ', '_')}.lua"
    lines = [f'wrk.method = "{case.method}"']
    if case.body is not None:
        body = json.dumps(case.body).replace("\\", "\\\\").replace('"', '\\"')
        lines += [f'wrk.body = "{body}"', 'wrk.headers["Content-Type"] = "application/json"']
    if api_key is not None:
        lines.append(f'wrk.headers["X-Api-Key"] = "{api_key}"')
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class Row:
    rps: float
    p50: float
    p99: float
    cpu_ms: float
    errors: bool


def median_row(rows: list[Row]) -> Row:
    """Each figure's median over the rounds (so one noisy round does not decide a row)."""
    return Row(
        statistics.median(r.rps for r in rows),
        statistics.median(r.p50 for r in rows),
        statistics.median(r.p99 for r in rows),
        statistics.median(r.cpu_ms for r in rows),
        any(r.errors for r in rows),
    )


def run_wrk(
    wrk: str, url: str, script: Path | None, clients: int, duration: float, pid: int
) -> Row:
    command = [wrk, "-t", str(min(clients, 2)), "-c", str(clients), "-d", f"{duration:g}s"]
    command += ["--latency", "--timeout", "10s"]
    if script is not None:
        command += ["-s", str(script)]
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        [*command, url], check=True, capture_output=True, text=True, timeout=duration + 30
    ).stdout
    cpu = cpu_seconds(pid) - cpu_before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = "Non-2xx" in out or "Socket errors" in out
    if errors:
        print(out, file=sys.stderr)
    return Row(rps, p50, p99, cpu * 1000 / max(total, 1), errors)


# ------------------------------------------------------------------------ processes


def butler_config(
    workdir: Path,
    args: argparse.Namespace,
    port: int,
    qrs_port: int,
    key_hash: str | None = None,
    name: str = "butler",
) -> Path:
    """Butler's config; with ``key_hash``, auth (that one key, every scope) and audit on."""
    certs = workdir / "certs"
    butler = {
        "logLevel": args.loglevel,
        "restServerConfig": {
            "enable": True,
            "serverHost": "127.0.0.1",
            "serverPort": port,
            "threads": args.threads,
            "maxWaiting": args.max_waiting,
        },
        "restServerEndpointsEnable": {
            "butlerping": True,
            "keyValueStore": True,
            "senseStartTask": True,
            "health": False,
            "metrics": False,
        },
        "keyValueStore": {
            "persistence": args.kv,
            "dbFile": str(workdir / f"{name}-kv.sqlite"),
        },
        "runs": {"dbFile": str(workdir / "runs.sqlite")},
        "cert": {
            "clientCert": str(certs / "client.pem"),
            "clientCertKey": str(certs / "client_key.pem"),
            "clientCertCA": str(certs / "root.pem"),
        },
        "configQRS": {
            "host": "127.0.0.1",
            "port": qrs_port,
            "useSSL": True,
            "rejectUnauthorized": True,
        },
    }
    if args.server != "waitress":
        butler["restServerConfig"]["server"] = args.server  # type: ignore[index]
    if key_hash is not None:
        butler["restServerConfig"]["auth"] = {  # type: ignore[index]
            "enable": True,
            "apiKeys": [{"name": "bench", "keyHash": key_hash, "scopes": ["*"]}],
        }
        butler["audit"] = {
            "enable": True,
            "dbFile": str(workdir / f"{name}-audit.sqlite"),
            "flushEachCommit": not args.audit_unflushed,
        }
        butler["runs"] = {"dbFile": str(workdir / f"{name}-runs.sqlite")}
    path = workdir / f"{name}.yaml"
    with path.open("w", encoding="utf-8") as handle:
        YAML().dump({"Butler": butler}, handle)
    return path


@contextmanager
def process(command: list[str], url: str, ready_line: str | None = None) -> Iterator[int]:
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE if ready_line else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        if ready_line is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith(ready_line):
                sys.exit(f"{command[:3]} did not start: {line!r}")
        else:
            try:
                wait_until_answering(url, proc)
            except RuntimeError as exc:
                sys.exit(f"{command[:3]} did not start: {exc}")
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def check_certs(workdir: Path) -> None:
    certs = generate_certificates(workdir / "certs")
    expected = {certs.client_cert.name, certs.client_key.name, certs.ca.name}
    if expected != {"client.pem", "client_key.pem", "root.pem"}:
        sys.exit(f"certificate names changed: {sorted(expected)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", choices=SERVERS, default="waitress", help="HTTP server")
    parser.add_argument("--duration", type=float, default=5, help="seconds per measurement")
    parser.add_argument("--quick", action="store_true", help="2 s per measurement, 1 round")
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds over all rows (medians are printed)"
    )
    parser.add_argument("--threads", type=int, default=16, help="restServerConfig.threads")
    parser.add_argument("--max-waiting", type=int, default=100, help="restServerConfig.maxWaiting")
    parser.add_argument(
        "--bare-threads",
        type=int,
        default=None,
        help="worker threads of the bare app (default: Butler's, threads + maxWaiting)",
    )
    parser.add_argument("--loglevel", default="info", help="Butler's log level (info: access log)")
    parser.add_argument("--cases", default=None, help="comma-separated case labels to run")
    parser.add_argument("--clients", default="1,16", help="comma-separated client counts")
    parser.add_argument(
        "--yardstick",
        choices=("bare", "auth-off"),
        default="bare",
        help="bare: a bare Flask app; auth-off: Butler without auth and audit (ours has both)",
    )
    parser.add_argument(
        "--kv",
        choices=("memory", "sqlite"),
        default="memory",
        help="keyValueStore.persistence (sqlite, the default of a real config, flushes each write)",
    )
    parser.add_argument(
        "--audit-unflushed",
        action="store_true",
        help="with --yardstick auth-off: Butler.audit.flushEachCommit false",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    bare_threads = args.bare_threads or args.threads + args.max_waiting
    if args.serve_bare:
        serve_bare(args.server, args.serve_bare, bare_threads)
        return
    duration = 2.0 if args.quick else args.duration
    if args.quick:
        args.rounds = 1
    auth_mode = args.yardstick == "auth-off"
    wanted = args.cases or ("ping,KV GET,KV POST" if auth_mode else None)
    cases = [c for c in CASES if wanted is None or c.label in wanted.split(",")]
    clients_list = [int(c) for c in args.clients.split(",")]
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    try:
        check_certs(workdir)
        qrs_port, port, bare_port = free_port(), free_port(), free_port()
        api_key = None
        if auth_mode:
            from butler.auth.keys import hash_key, new_key

            api_key = new_key()
            config = butler_config(workdir, args, port, qrs_port, hash_key(api_key), "ours")
            plain = butler_config(workdir, args, bare_port, qrs_port, name="auth-off")
        else:
            config = butler_config(workdir, args, port, qrs_port)
        simulator = [sys.executable, "-m", "butler.testing.qrs_simulator", "--port", str(qrs_port)]
        simulator += ["--certs", str(workdir / "certs"), "--synthetic-tasks", str(TAG_TASKS)]
        simulator += ["--max-concurrent-reloads", "1000"]
        ours_cmd = [str(Path(sys.executable).parent / "butler"), "-c", str(config)]
        bare_cmd = [sys.executable, __file__, "--server", args.server]
        bare_cmd += ["--bare-threads", str(bare_threads), "--serve-bare", str(bare_port)]
        if auth_mode:
            bare_cmd = [ours_cmd[0], "-c", str(plain)]
        ours_url, bare_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        with (
            process(simulator, "", ready_line="QRS simulator on"),
            process(ours_cmd, ours_url + "/v4/butlerping") as ours_pid,
            process(bare_cmd, bare_url + "/v4/butlerping") as bare_pid,
        ):
            session = requests.Session()
            if api_key is not None:
                session.headers["X-Api-Key"] = api_key
            for base in (ours_url, bare_url) if auth_mode else (ours_url,):
                warm = session.post(base + "/v4/keyvalues/bench", json=KV_BODY, timeout=10)
                warm.raise_for_status()
            for case in CASES[3:]:
                answer = session.put(ours_url + case.path, json=case.body, timeout=30)
                if answer.status_code != 200 or answer.json()["totalTasksStarted"] < 1:
                    sys.exit(f"{case.label}: {answer.status_code} {answer.text[:300]}")
            session.close()
            time.sleep(1)
            idle = {"ours": rss_mb(ours_pid), "bare": rss_mb(bare_pid)}
            samples: dict[tuple[int, int], tuple[list[Row], list[Row]]] = {}
            for number in range(1, args.rounds + 1):
                for index, case in enumerate(cases):
                    script = wrk_script(workdir, case, api_key)
                    for clients in clients_list:
                        ours_rows, bare_rows = samples.setdefault((index, clients), ([], []))
                        url = case.path
                        ours_rows.append(
                            run_wrk(wrk, ours_url + url, script, clients, duration, ours_pid)
                        )
                        bare_rows.append(
                            run_wrk(wrk, bare_url + url, script, clients, duration, bare_pid)
                        )
                        print(f"  round {number}, {case.label}, {clients}: done", file=sys.stderr)
            loaded = {"ours": rss_mb(ours_pid), "bare": rss_mb(bare_pid)}
            results = [
                (cases[index], clients, median_row(ours_rows), median_row(bare_rows))
                for (index, clients), (ours_rows, bare_rows) in samples.items()
            ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    yardstick = "Butler, auth and audit off" if auth_mode else f"bare Flask {bare_threads} threads"
    ours_name = "Butler with auth and audit on" if auth_mode else "Butler"
    if auth_mode and args.audit_unflushed:
        ours_name += " (flushEachCommit false)"
    other = "off" if auth_mode else "bare"
    print(
        f"\n{args.server}: {ours_name} ({args.threads} threads + {args.max_waiting} "
        f"maxWaiting), yardstick {yardstick}; log level {args.loglevel}; KV store {args.kv}; "
        f"{duration:g} s per row, median of {args.rounds} round(s); {os.cpu_count()} CPUs\n"
    )
    print(
        f"| case | clients | req/s ours | req/s {other} | ours / {other} "
        f"| p50 ms ours / {other} | p99 ms ours / {other} | p99 / p50 ours "
        f"| CPU ms/req ours / {other} |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case, clients, ours, bare in results:
        flag = " (errors)" if ours.errors or bare.errors else ""
        print(
            f"| {case.label}{flag} | {clients} | {ours.rps:,.0f} | {bare.rps:,.0f} "
            f"| {ours.rps / bare.rps:.2f} | {ours.p50:.2f} / {bare.p50:.2f} "
            f"| {ours.p99:.2f} / {bare.p99:.2f} | {ours.p99 / max(ours.p50, 1e-6):.1f} "
            f"| {ours.cpu_ms:.2f} / {bare.cpu_ms:.2f} |"
        )
    print(
        f"\nRSS MB: ours idle {idle['ours']:.1f}, after load {loaded['ours']:.1f}; "
        f"{other} idle {idle['bare']:.1f}, after load {loaded['bare']:.1f}"
    )


if __name__ == "__main__":
    main()
