"""``scripts/bench_runs.py --quick`` still runs, so the figures in docs/benchmarks.md can be
remeasured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_bench_runs_quick_prints_its_table():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_runs.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| measurement" in result.stdout
    assert "QRS requests per poll, 1,000 open runs, steady" in result.stdout
    assert "Waited 100-task tag start" in result.stdout
