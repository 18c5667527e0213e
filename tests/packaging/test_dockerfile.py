"""scripts/packaging/Dockerfile: linted here always; built and run where a docker daemon is.

The lint reads the instructions the way the builder does (continuations joined, comments
dropped). Its HEALTHCHECK command is run for real against a local receiver, so the probe's
answer to 200, 503 and a dead port is known without docker.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from butler.cli import build_parser
from butler.plugins import default_plugin_manager
from butler.testing.processes import free_port
from tests.fixtures.http_receiver import Answer

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "scripts" / "packaging" / "Dockerfile"
DOCKERIGNORE = ROOT / "scripts" / "packaging" / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def final(name: str) -> list[str]:
    return [arguments for instruction, arguments in stages()[-1] if instruction == name]


def env() -> dict[str, str]:
    values: dict[str, str] = {}
    for arguments in final("ENV"):
        values.update(item.split("=", 1) for item in shlex.split(arguments))
    return values


def healthcheck_command() -> list[str]:
    (healthcheck,) = final("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    return json.loads(command)


def test_every_stage_is_python_slim():
    for stage in stages():
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.\d+-slim", image), image


def test_final_image_runs_as_a_non_root_user():
    (user,) = final("USER")
    assert user not in {"root", "0"}
    names = [instruction for instruction, _ in stages()[-1]]
    assert names.index("USER") < names.index("ENTRYPOINT")
    assert [run for run in final("RUN") if re.search(rf"useradd --system .* {user}$", run)]


def test_exposes_the_configured_port_and_stops_with_a_handled_signal():
    assert final("EXPOSE") == ["8080"]
    assert final("STOPSIGNAL") in (["SIGTERM"], ["SIGINT"])


def test_entrypoint_is_a_butler_run_reading_the_mounted_config():
    assert json.loads(final("ENTRYPOINT")[0]) == ["butler"]
    args = build_parser(default_plugin_manager()).parse_args(json.loads(final("CMD")[0]))
    assert args.command == "run"
    assert env()["BUTLER_CONFIG"] == "/etc/butler/butler.yaml"


def test_healthcheck_probes_health_with_python_alone():
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert env()["BUTLER_HEALTH_URL"] == "http://127.0.0.1:8080/health"


def test_no_compilers_and_no_secrets_in_the_image():
    text = " ".join(arguments for _, arguments in instructions())
    for tool in ("apt-get", "apk ", "gcc", "build-essential", "make "):
        assert tool not in text
    assert "--only-binary=:all:" in " ".join(final("RUN"))
    secret = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
    for instruction, arguments in instructions():
        if instruction in ("ENV", "ARG"):
            names = [item.split("=", 1)[0] for item in shlex.split(arguments)]
            assert not [name for name in names if secret.search(name)], arguments


def test_only_the_package_sources_are_copied_and_sent_to_the_build():
    copied = set()
    for instruction, arguments in instructions():
        if instruction == "COPY" and "--from" not in arguments:
            copied.update(arguments.split()[:-1])
    assert copied == {"setup.cfg", "pyproject.toml", "README.md", "LICENSE", "butler", "plugins"}
    rules = [
        line
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert rules[0] == "*"
    assert {rule[1:] for rule in rules if rule.startswith("!")} == copied


def run_probe(url: str) -> int:
    return subprocess.run(
        healthcheck_command(),
        env={**os.environ, "BUTLER_HEALTH_URL": url},
        executable=sys.executable,
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


def test_healthcheck_command_passes_on_200_and_fails_otherwise(http_receiver):
    http_receiver.answer(Answer(200, {"status": "ok"}), path="/health")
    http_receiver.answer(Answer(503, {"status": "fail"}), path="/down/health")
    assert run_probe(f"{http_receiver.url}/health") == 0
    assert [r.path for r in http_receiver.wait_for(1)] == ["/health"]
    assert run_probe(f"{http_receiver.url}/down/health") != 0
    assert run_probe(f"http://127.0.0.1:{free_port()}/health") != 0


BASE_IMAGE = "python:3.11-slim"


def docker_daemon_problem() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not on PATH"
    info = subprocess.run(
        ["docker", "info"], capture_output=True, text=True, timeout=60, check=False
    )
    return None if info.returncode == 0 else "no docker daemon answers `docker info`"


def docker(*args: str, timeout: float = 60) -> str:
    """stdout and stderr together (``docker logs`` replays the container's stderr on stderr)."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    return (result.stdout + result.stderr).strip()


def wait_for_health(name: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    status = "starting"
    while status == "starting" and time.monotonic() < deadline:
        status = docker("inspect", "-f", "{{.State.Health.Status}}", name)
        time.sleep(0.5)
    return status


@pytest.mark.skipif(docker_daemon_problem() is not None, reason=str(docker_daemon_problem()))
def test_image_builds_turns_healthy_and_stops_cleanly(tmp_path):
    tag = f"butler-py-test:{uuid.uuid4().hex[:12]}"
    name = f"butler-test-{uuid.uuid4().hex[:12]}"
    config = tmp_path / "butler.yaml"
    config.write_text(
        "Butler:\n  restServerConfig:\n    enable: true\n    serverHost: 0.0.0.0\n"
        "    serverPort: 8080\n  restServerEndpointsEnable:\n    butlerping: true\n"
        "  keyValueStore:\n    persistence: memory\n",
        encoding="utf-8",
    )
    config.chmod(0o644)
    pulled = subprocess.run(
        ["docker", "pull", BASE_IMAGE], capture_output=True, text=True, timeout=300, check=False
    )
    if pulled.returncode != 0:
        pytest.skip(f"the base image {BASE_IMAGE} cannot be pulled here: {pulled.stderr[-300:]}")
    docker("build", "-f", str(DOCKERFILE), "-t", tag, str(ROOT), timeout=900)
    try:
        docker(
            "run", "-d", "--name", name, "-p", "127.0.0.1::8080",
            "--health-interval=1s", "--health-start-period=30s",
            "-v", f"{tmp_path}:/etc/butler:ro", tag,
        )  # fmt: skip
        port = docker("port", name, "8080/tcp").splitlines()[0].rsplit(":", 1)[1]
        assert wait_for_health(name) == "healthy", docker("logs", name)
        assert requests.get(f"http://127.0.0.1:{port}/v4/butlerping", timeout=5).ok
        docker("stop", "-t", "30", name, timeout=60)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", name) == "0"
        assert "Butler stopped" in docker("logs", name)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def test_the_base_image_the_build_test_pulls_is_the_dockerfiles():
    froms = [
        line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("FROM ")
    ]
    assert froms and set(froms) == {BASE_IMAGE}
