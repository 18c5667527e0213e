"""A record ``record`` returned for survives kill -9 of the process that wrote it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from butler.audit import AuditFilter, AuditStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from butler.audit import AuditRecord, AuditStore, AuditTrail

    trail = AuditTrail(AuditStore(Path(sys.argv[1])))
    trail.start()
    for number in range(3):
        trail.record(AuditRecord(time=time.time(), caller=f"caller-{number}",
                                 method="PUT", route="/v4/keyvalues/{namespace}",
                                 params={"namespace": "Sales"}, status=200,
                                 resources={"namespace": "Sales", "key": "k"}))
    print("recorded", flush=True)
    time.sleep(60)
    """
)


def test_a_returned_record_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == "recorded\n", line + child.stdout.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL

    store = AuditStore(db)
    try:
        found, _ = store.query(AuditFilter(), 10)
    finally:
        store.close()
    assert [r.caller for r in found] == ["caller-2", "caller-1", "caller-0"]
    assert found[0].resources == {"namespace": "Sales", "key": "k"}
