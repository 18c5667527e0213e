"""No acknowledged write is lost when the server is killed with SIGKILL mid-load."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from butler.kvstore import KvStore

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "durability"


def _read_port(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    """The port the child prints, read on a helper thread so a stuck child cannot hang us."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    assert lines and lines[0].startswith("PORT "), f"server did not start: {lines!r}"
    return int(lines[0].split()[1])


@contextmanager
def kv_server(db_file: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kv.kv_server_proc", str(db_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc, f"http://127.0.0.1:{_read_port(proc)}"
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _write_until_killed(
    url: str, prefix: str, acknowledged: dict[str, str], progress: threading.Condition
) -> None:
    with requests.Session() as session:
        for n in itertools.count():
            key, value = f"{prefix}-{n}", f"value {prefix} {n}"
            try:
                response = session.post(
                    f"{url}/v4/keyvalues/{NAMESPACE}",
                    json={"key": key, "value": value},
                    timeout=10,
                )
            except requests.RequestException:
                return
            if response.status_code != 201:
                return
            with progress:
                acknowledged[key] = value
                progress.notify_all()


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    db_file = tmp_path / "kv.sqlite"
    acknowledged: dict[str, str] = {}
    progress = threading.Condition()

    for round_no in range(3):
        with kv_server(db_file) as (proc, url):
            with requests.Session() as session:
                for key, value in acknowledged.items():
                    got = session.get(
                        f"{url}/v4/keyvalues/{NAMESPACE}", params={"key": key}, timeout=10
                    )
                    assert got.status_code == 200, f"lost {key} (seed {seed})"
                    assert got.json()["value"] == value
            target = len(acknowledged) + rng.randrange(30, 300)
            writers = [
                threading.Thread(
                    target=_write_until_killed,
                    args=(url, f"r{round_no}w{w}", acknowledged, progress),
                )
                for w in range(4)
            ]
            for writer in writers:
                writer.start()
            with progress:
                reached = progress.wait_for(lambda n=target: len(acknowledged) >= n, timeout=60)
            proc.kill()
            for writer in writers:
                writer.join(timeout=30)
            assert reached, f"writers stalled (seed {seed})"
            assert not any(writer.is_alive() for writer in writers)

    store = KvStore(db_file)
    try:
        stored = {key: store.get(NAMESPACE, key).value for key in store.keys(NAMESPACE)}
    finally:
        store.close()
    missing = sorted(set(acknowledged) - set(stored))
    assert missing == [], f"acknowledged writes lost: {missing[:10]} (seed {seed})"
    assert all(stored[key] == value for key, value in acknowledged.items())
