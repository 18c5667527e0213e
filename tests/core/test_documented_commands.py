"""Every command line README.md and docs/*.md show runs as shown.

The forms are read from the documents (code blocks and inline code); each must be in
``DOCUMENTED`` below, so a new one cannot be added to the docs without a run here. Each
form is run with ``--help`` appended (argparse refuses an unknown option before it
answers help, so this proves every documented option exists), and the cheap ones are
really started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from butler.testing.processes import free_port, wait_until_answering
from tests.fixtures.butler_process import child_process, stop

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
EXAMPLE_PLUGIN = ROOT / "tests" / "example_plugin"
FORM = re.compile(r"^(?:\.venv/bin/)?(?:butler |python3? -m butler|python3? scripts/)")
CONFIG = "/path/to/butler.yaml"

DOCUMENTED = {
    "butler demo": "help",
    "butler -c /path/to/butler.yaml": "serve",
    "butler check-config -c /path/to/butler.yaml": "check",
    "butler openapi -c /path/to/butler.yaml": "openapi",
    "butler simulate-qrs --port 4242": "simulator",
    "butler -c config.example.yaml": "serve",
    "butler check-config": "help",
    "butler --heartbeat-message x run": "help",
    "butler run --heartbeat-message x": "help",
    "butler simulate-qrs [--host 127.0.0.1] [--port 4242] [--certs DIR] [--no-tls] "
    "[--catalogue FILE] [--latency-ms N] [--synthetic-tasks N] [--synthetic-tag bench] "
    "[--max-concurrent-reloads 4]": "help",
    "butler simulate-qrs": "help",
    "python -m butler.testing.qrs_simulator": "help",
    "python scripts/bench_http.py --duration 10 [--loglevel info]": "help",
    "python scripts/bench_task_start.py --requests 40": "help",
    "python scripts/bench_held_workers.py": "help",
    "python scripts/bench_kv.py": "help",
    "python scripts/bench_scheduler.py": "help",
    "python scripts/bench_runs.py": "help",
    "python scripts/count_request_calls.py": "help",
    "python scripts/bench_http.py --duration 5 --rounds 3": "help",
    "python scripts/bench_http.py": "help",
    "python scripts/bench_http.py --server waitress": "help",
    "python scripts/bench_http.py --server waitress --duration 4": "help",
    "python scripts/bench_http.py --yardstick auth-off": "help",
    "python scripts/profile_hot_paths.py": "help",
    "python scripts/bench_slow_neighbours.py [--server granian]": "help",
    "python scripts/bench_memory.py [--server granian] [--arena-max N] [--poll-interval N]": "help",
    "butler check-config -c <file>": "help",
    "butler service install": "help",
    "butler new-api-key --name nightly-etl --scopes senseStartTask,read": "help",
    "butler new-api-key --name nightly-etl-2026": "help",
    "butler new-api-key --name N": "help",
    "python -m butler": "help",
    "python -m butler check-config -c C:\\Butler\\butler.yaml": "help",
    "python -m butler run -c ...": "help",
}
"""Each documented form and how far it is run: ``help`` only, or really started."""


def documented_forms() -> set[str]:
    found: set[str] = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        fence = r"^```[^\n]*\n(.*?)^```"
        candidates = []
        for block in re.findall(fence, text, re.S | re.M):
            # A usage synopsis continues on indented "[--option]" lines.
            for line in re.sub(r"\n\s+\[", " [", block).splitlines():
                candidates += [part.split(" #")[0] for part in line.split("&&")]
        prose = re.sub(fence, "", text, flags=re.S | re.M)
        candidates += re.findall(r"`([^`\n]+)`", prose)
        found |= {c.strip().removeprefix(".venv/bin/") for c in candidates if FORM.match(c.strip())}
    return found


def test_every_documented_command_line_is_listed_here():
    assert documented_forms() == set(DOCUMENTED)


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, str]:
    """Stand-ins for the forms' placeholders, and a config.example.yaml on a free port."""
    port = free_port()
    example = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    config = tmp_path / "config.example.yaml"
    config.write_text(re.sub(r"serverPort: \d+", f"serverPort: {port}", example), encoding="utf-8")
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text("tasks: []\n", encoding="utf-8")
    return {
        CONFIG: str(config),
        "config.example.yaml": str(config),
        "DIR": str(tmp_path / "certs"),
        "FILE": str(catalogue),
        " N": " 1",
        "port": str(port),
    }


def argv(form: str, workspace: dict[str, str]) -> list[str]:
    placeholders = (CONFIG, "config.example.yaml", "DIR", "FILE", " N")
    pattern = "|".join(re.escape(p) for p in placeholders)
    line = re.sub(pattern, lambda m: workspace[m.group()], form.replace("[", "").replace("]", ""))
    words = line.split()
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    return [str(BIN / "butler"), *words[1:]]


def run(words: list[str], tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE_PLUGIN), "XDG_DATA_HOME": str(tmp_path)}
    env.pop("LOCALAPPDATA", None)
    env.pop("BUTLER_CONFIG", None)
    return subprocess.run(
        words, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("form", sorted(DOCUMENTED))
def test_documented_form_answers_help(form, workspace, tmp_path):
    result = run([*argv(form, workspace), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
    assert result.stderr == ""


def test_check_config_form_checks(workspace, tmp_path):
    result = run(argv("butler check-config -c /path/to/butler.yaml", workspace), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("Config OK")


def test_openapi_form_prints_only_the_document(workspace, tmp_path):
    result = run(argv("butler openapi -c /path/to/butler.yaml", workspace), tmp_path)
    assert result.returncode == 0
    assert "/v4/butlerping" in json.loads(result.stdout)["paths"]
    assert result.stderr == ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    "form", ["butler -c /path/to/butler.yaml", "butler -c config.example.yaml"]
)
def test_serve_forms_serve(form, workspace, tmp_path):
    with child_process(argv(form, workspace)) as process:
        url = f"http://127.0.0.1:{workspace['port']}/v4/butlerping"
        assert wait_until_answering(url, process).status_code == 200
        output = stop(process, signal.SIGTERM, timeout=10)
    assert process.returncode == 0, output
    assert "Butler stopped" in output


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_simulator_form_serves_with_certificates_outside_the_current_folder(workspace, tmp_path):
    port = free_port()
    words = argv("butler simulate-qrs --port 4242", workspace)
    words[words.index("4242")] = str(port)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    env.pop("LOCALAPPDATA", None)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with subprocess.Popen(
        words, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(6)]
            assert f"QRS simulator on https://127.0.0.1:{port} with 11 tasks\n" in lines, lines
            with pytest.raises(requests.exceptions.SSLError):
                requests.get(f"https://127.0.0.1:{port}/qrs/about", timeout=5)
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=10)
    certs = tmp_path / "data" / "butler" / "qrs-simulator-certs"
    assert f"  CA certificate:     {certs / 'root.pem'}\n" in lines
    assert (certs / "client_key.pem").is_file()
    assert list(cwd.iterdir()) == []
