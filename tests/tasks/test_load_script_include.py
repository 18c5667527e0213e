"""The load-script include docs/butler_runs.qvs, checked against a real Butler.

The test reads the include, takes the request its ``StartTaskAndWait`` sub sends (URL,
headers and body from the ``WITH CONNECTION`` clause and the ``LET`` lines that build
them) with a small parser, and sends exactly that request over HTTP to Butler wired to
the QRS simulator, as Qlik's REST connector would. The answer must carry every field the
sub's ``SQL SELECT`` reads.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from butler.app import create_app
from butler.lifecycle import build_services
from butler.runs import FINAL_STATUSES
from tests.fixtures.qrs import butler_qrs_config

QVS = Path(__file__).resolve().parents[2] / "docs" / "butler_runs.qvs"

APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
APP2 = "7552d9fc-d1bb-4975-9a38-18357de531ea"
APP3 = "fb0f317d-da91-4b86-aafa-0174ae1e8c8f"
FAILING = "2d4e6f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
UNKNOWN = "11111111-2222-4333-8444-555555555555"


# --- a small reader for the include ---------------------------------------------------


def _connector_literals(text: str) -> list[str]:
    """The REST connector's "..." literals in ``text``, with "" read as "."""
    return [m.replace('""', '"') for m in re.findall(r'"((?:[^"]|"")*)"', text)]


def _raw_connector_literal(text: str) -> str:
    match = re.search(r'"((?:[^"]|"")*)"', text)
    assert match, text
    return match.group(1)


class _Expression:
    """Qlik string expressions as the sub's LET lines use them: 'text' literals ('' is
    one quote), variable names, ``&`` and ``Replace(a, b, c)``. Anything else is not
    evaluated here; the test gives such variables' values itself."""

    TOKEN = re.compile(r"\s*(?:('(?:[^']|'')*')|(&)|([(),])|([A-Za-z_][\w.]*))")

    def __init__(self, source: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        source = source.strip()
        while pos < len(source):
            match = self.TOKEN.match(source, pos)
            if not match or match.end() == pos:
                raise ValueError(f"not a string expression: {source!r}")
            literal, amp, punct, name = match.groups()
            if literal is not None:
                self.tokens.append(("str", literal[1:-1].replace("''", "'")))
            elif amp:
                self.tokens.append(("&", amp))
            elif punct:
                self.tokens.append((punct, punct))
            else:
                self.tokens.append(("name", name))
            pos = match.end()
            if source[pos:].strip() == "":
                break
        self.source = source

    def names(self) -> set[str]:
        found = {value for kind, value in self.tokens if kind == "name"} - {"Replace"}
        for kind, value in self.tokens:
            if kind == "str":
                found |= set(re.findall(r"\$\((\w+)\)", value))
        return found

    def evaluate(self, lookup: Callable[[str], str]) -> str:
        self._pos = 0
        self._lookup = lookup
        value = self._concat()
        if self._pos != len(self.tokens):
            raise ValueError(f"unexpected tokens in {self.source!r}")
        return value

    def _concat(self) -> str:
        parts = [self._term()]
        while self._peek() == "&":
            self._pos += 1
            parts.append(self._term())
        return "".join(parts)

    def _term(self) -> str:
        kind, value = self.tokens[self._pos]
        self._pos += 1
        if kind == "str":
            return expand(value, self._lookup)
        if kind == "name" and value.lower() == "replace" and self._peek() == "(":
            self._pos += 1
            args = [self._concat()]
            while self._peek() == ",":
                self._pos += 1
                args.append(self._concat())
            assert self._peek() == ")" and len(args) == 3, self.source
            self._pos += 1
            return args[0].replace(args[1], args[2])
        if kind == "name":
            return self._lookup(value)
        raise ValueError(f"cannot evaluate {self.source!r}")

    def _peek(self) -> str | None:
        return self.tokens[self._pos][0] if self._pos < len(self.tokens) else None


def expand(text: str, lookup: Callable[[str], str]) -> str:
    """Qlik's dollar-sign expansion of $(name)."""
    return re.sub(r"\$\((\w+)\)", lambda m: lookup(m.group(1)), text)


@dataclass
class RequestForm:
    """What StartTaskAndWait sends, as templates read from the include."""

    parameters: list[str]
    connection: str
    url: str  # raw connector literal, before dollar expansion
    headers: list[tuple[str, str]]
    body: str  # raw connector literal, before dollar expansion
    assignments: dict[str, list[str]]  # variable -> LET right-hand sides, in order
    root_fields: list[str]
    run_fields: list[str]

    @classmethod
    def read(cls, path: Path = QVS) -> RequestForm:
        script = path.read_text(encoding="utf-8")
        match = re.search(
            r"^\s*SUB\s+StartTaskAndWait\s*\(([^)]*)\)(.*?)^\s*END\s+SUB",
            script,
            re.IGNORECASE | re.MULTILINE | re.DOTALL,
        )
        assert match, "no Sub StartTaskAndWait(...) ... End Sub in the include"
        parameters = [p.strip() for p in match.group(1).split(",")]
        body_lines = [
            line for line in match.group(2).splitlines() if not line.strip().startswith("//")
        ]
        sub = "\n".join(body_lines)

        assignments: dict[str, list[str]] = {}
        for name, expression in re.findall(
            r"^\s*LET\s+(\w+)\s*=\s*(.*?);\s*$", sub, re.IGNORECASE | re.MULTILINE
        ):
            assignments.setdefault(name, []).append(expression)

        connect = re.search(r"LIB\s+CONNECT\s+TO\s+'([^']+)'", sub, re.IGNORECASE)
        assert connect, "the sub does not LIB CONNECT TO a connection"

        select = re.search(
            r"SQL\s+SELECT(.*?)FROM\s+JSON\b.*?WITH\s+CONNECTION\s*\((.*?)\)\s*;",
            sub,
            re.IGNORECASE | re.DOTALL,
        )
        assert select, "no SQL SELECT ... FROM JSON ... WITH CONNECTION (...); in the sub"
        fields, clause = select.groups()
        runs = re.search(r"\(\s*SELECT(.*?)FROM\s+\"runs\"", fields, re.IGNORECASE | re.DOTALL)
        assert runs, "the SQL SELECT does not read the runs array"
        root_part = fields[: runs.start()] + fields[runs.end() :]
        keys = re.compile(r"^__(KEY|FK)_")

        url = re.search(r'\bURL\s+("(?:[^"]|"")*")', clause, re.IGNORECASE)
        body = re.search(r'\bBODY\s+("(?:[^"]|"")*")', clause, re.IGNORECASE)
        headers = re.findall(
            r'\bHTTPHEADER\s+"((?:[^"]|"")*)"\s+"((?:[^"]|"")*)"', clause, re.IGNORECASE
        )
        assert url and body, "WITH CONNECTION must give URL and BODY"
        return cls(
            parameters=parameters,
            connection=connect.group(1),
            url=_raw_connector_literal(url.group(1)),
            headers=[(n.replace('""', '"'), v.replace('""', '"')) for n, v in headers],
            body=_raw_connector_literal(body.group(1)),
            assignments=assignments,
            root_fields=[f for f in _connector_literals(root_part) if not keys.match(f)],
            run_fields=[f for f in _connector_literals(runs.group(1)) if not keys.match(f)],
        )

    def value(self, name: str, given: dict[str, str], choose: dict[str, str]) -> str:
        """A variable's value: given by the test, or evaluated from the sub's LET line
        (``choose[name]`` picks, by a text it contains, among several LET lines)."""
        if name in given:
            return given[name]
        candidates = self.assignments.get(name, [])
        if name in choose:
            candidates = [c for c in candidates if choose[name] in c]
        assert len(candidates) == 1, f"{name}: {candidates} (give it or choose one)"
        expression = _Expression(candidates[0])
        return expression.evaluate(lambda inner: self.value(inner, given, choose))

    def request(
        self, given: dict[str, str], choose: dict[str, str]
    ) -> tuple[str, dict[str, str], bytes]:
        """URL, headers and body of the request, as the REST connector sends them:
        dollar expansion first, then the connector reads its "..." literal."""

        def lookup(name: str) -> str:
            return self.value(name, given, choose)

        url = expand(self.url, lookup).replace('""', '"')
        body = expand(self.body, lookup).replace('""', '"')
        return url, dict(self.headers), body.encode("utf-8")


FORM = RequestForm.read()


def script_request(
    url: str,
    *,
    task_id: str = "-",
    tag: str = "",
    timeout: int = 600,
) -> tuple[str, dict[str, str], bytes]:
    """The request the sub sends for CALL StartTaskAndWait(task_id, tag, timeout, ...).

    The test gives what the sub derives with Qlik functions (trimmed, lower-case task
    id; whole-second timeout); everything else comes from the include's own lines.
    """
    parts = urlsplit(url)
    given = {
        "vButlerHost": f"{parts.scheme}://{parts.hostname}",
        "vButlerPort": str(parts.port),
        "vlTag": tag,
        "vlTaskId": task_id.strip().lower() or "-",
        "vlTimeout": str(timeout),
    }
    choose = {"vlButlerBody": "starttasktag" if tag else "'[]'"}
    return FORM.request(given, choose)


def send(request: tuple[str, dict[str, str], bytes], **kwargs) -> requests.Response:
    url, headers, body = request
    return requests.post(url, data=body, headers=headers, timeout=60, **kwargs)


def assert_fields_the_script_reads(answer: dict) -> None:
    for field in FORM.root_fields:
        assert field in answer, f"the sub reads {field!r}; the answer lacks it"
    uuid.UUID(answer["requestId"])
    assert isinstance(answer["runs"], list)
    for run in answer["runs"]:
        for field in FORM.run_fields:
            assert field in run, f"the sub reads runs[].{field}; a run lacks it: {run}"


# --- the include's request form (no Butler needed) ----------------------------------


def test_the_sub_and_its_request_form():
    assert FORM.parameters == ["vlTaskIdOrDash", "vlTag", "vlTimeoutSeconds", "vlFailScript"]
    assert FORM.connection == "Butler_POST"
    assert ("X-HTTP-Method-Override", "PUT") in FORM.headers
    assert ("Content-Type", "application/json") in FORM.headers
    assert {"requestId", "outcome", "totalTasksStarted"} <= set(FORM.root_fields)
    assert {"runId", "taskId", "taskName", "status", "message"} <= set(FORM.run_fields)

    url, headers, body = script_request("http://127.0.0.1:8080", task_id=APP1, timeout=900)
    assert url == f"http://127.0.0.1:8080/v4/reloadtask/{APP1}/start?wait=true&timeout=900"
    assert body == b"[]"
    assert headers == {"X-HTTP-Method-Override": "PUT", "Content-Type": "application/json"}
    _, _, body = script_request("http://127.0.0.1:8080", tag="Nightly")
    assert body == b'[{"type":"starttasktag","payload":{"tag":"Nightly"}}]'


def test_the_body_is_json_whatever_the_tag():
    for tag in ["Q&A #1: 100% it's done", 'say "hi"', "back\\slash"]:
        _, _, body = script_request("http://127.0.0.1:8080", tag=tag)
        assert json.loads(body) == [{"type": "starttasktag", "payload": {"tag": tag}}]


def test_a_failed_outcome_fails_the_reload_not_exit_script():
    script = QVS.read_text(encoding="utf-8")
    sub = script[script.index("SUB StartTaskAndWait") :]
    assert re.search(r"SET ErrorMode = 1;\s*\[_ButlerRunNotSuccessful\]:\s*LOAD \* FROM", sub)
    assert "lib://Butler run not successful/" in sub
    code = [line for line in sub.splitlines() if not line.strip().startswith("//")]
    assert not any(re.match(r"\s*exit\s+script", line, re.IGNORECASE) for line in code)


# --- the same request against Butler and the QRS simulator --------------------------


@pytest.fixture
def butler(make_config, live_server, qrs_simulator, qrs_certs, tmp_path):
    started = []

    def start():
        config = make_config(
            {
                **butler_qrs_config(qrs_simulator, qrs_certs),
                "restServerEndpointsEnable": {"senseStartTask": True},
                "runs": {"pollIntervalSeconds": 0.2, "dbFile": str(tmp_path / "runs.sqlite")},
            }
        )
        services = build_services(config)
        services.start()
        started.append(services)
        return live_server(create_app(config, services))

    yield start
    for services in started:
        services.stop()


def test_by_id_success(butler, qrs_simulator):
    url = butler()
    qrs_simulator.set_execution(APP1, duration=0.2)
    response = send(script_request(url, task_id=APP1, timeout=30))
    assert response.status_code == 200
    answer = response.json()
    assert_fields_the_script_reads(answer)
    assert answer["outcome"] == "success"
    assert answer["totalTasksStarted"] == 1
    (run,) = answer["runs"]
    assert run["taskId"] == APP1
    assert run["taskName"] == "Reload task of App1"
    assert run["status"] == "FinishedSuccess"
    assert run["requestId"] == answer["requestId"]


def test_by_tag_success(butler, qrs_simulator):
    url = butler()
    for task_id in (APP1, APP2, APP3):
        qrs_simulator.set_execution(task_id, duration=0.2)
    answer = send(script_request(url, tag="startTask1", timeout=30)).json()
    assert_fields_the_script_reads(answer)
    assert answer["outcome"] == "success"
    assert answer["totalTasksStarted"] == 3
    assert {run["taskId"] for run in answer["runs"]} == {APP1, APP2, APP3}
    assert {run["status"] for run in answer["runs"]} == {"FinishedSuccess"}


def test_a_tag_with_quotes_ampersand_and_hash(butler, qrs_simulator):
    url = butler()
    qrs_simulator.set_execution(APP2, duration=0.2)
    answer = send(script_request(url, tag="Q&A #1: 100% it's done", timeout=30)).json()
    assert answer["outcome"] == "success"
    assert [run["taskId"] for run in answer["runs"]] == [APP2]


def test_a_failing_task_is_outcome_failure(butler, qrs_simulator):
    url = butler()
    qrs_simulator.set_execution(FAILING, duration=0.2, outcome="fail")
    answer = send(script_request(url, task_id=FAILING, timeout=30)).json()
    assert_fields_the_script_reads(answer)
    assert answer["outcome"] == "failure"
    (run,) = answer["runs"]
    assert run["status"] == "FinishedFail"
    assert run["status"] in FINAL_STATUSES


def test_one_failure_among_several_is_failure(butler, qrs_simulator):
    url = butler()
    qrs_simulator.set_execution(APP1, duration=0.2)
    qrs_simulator.set_execution(APP2, duration=0.2, outcome="fail")
    qrs_simulator.set_execution(APP3, duration=0.2)
    answer = send(script_request(url, tag="startTask1", timeout=30)).json()
    assert answer["outcome"] == "failure"
    statuses = {run["taskId"]: run["status"] for run in answer["runs"]}
    assert statuses == {APP1: "FinishedSuccess", APP2: "FinishedFail", APP3: "FinishedSuccess"}
    # what the sub counts into vButlerRunsFailed
    assert sum(status != "FinishedSuccess" for status in statuses.values()) == 1


def test_id_and_tag_together(butler, qrs_simulator):
    url = butler()
    qrs_simulator.set_execution(FAILING, duration=0.2, outcome="fail")
    for task_id in (APP1, APP2, APP3):
        qrs_simulator.set_execution(task_id, duration=0.2)
    answer = send(script_request(url, task_id=FAILING, tag="startTask1", timeout=30)).json()
    assert answer["outcome"] == "failure"
    assert {run["taskId"] for run in answer["runs"]} == {FAILING, APP1, APP2, APP3}


def test_the_wait_timeout_answers_timeout(butler, qrs_simulator):
    url = butler()
    qrs_simulator.set_execution(APP1, duration=10)
    began = time.monotonic()
    answer = send(script_request(url, task_id=APP1, timeout=1)).json()
    assert time.monotonic() - began < 6
    assert_fields_the_script_reads(answer)
    assert answer["outcome"] == "timeout"
    (run,) = answer["runs"]
    assert run["status"] not in FINAL_STATUSES  # still tracked, not given up


def test_an_unknown_task_starts_nothing(butler, qrs_simulator):
    url = butler()
    answer = send(script_request(url, task_id=UNKNOWN, timeout=5)).json()
    # the sub turns this into vButlerRunOutcome = 'nothingstarted', whatever outcome says
    assert answer["totalTasksStarted"] == 0
    assert answer["runs"] == []
    assert qrs_simulator.starts() == []


@pytest.mark.parametrize("wait", ["true", "TRUE"])
def test_load_script_booleans_for_wait(butler, qrs_simulator, wait):
    url = butler()
    qrs_simulator.set_execution(APP1, duration=0.2)
    target, headers, body = script_request(url, task_id=APP1, timeout=30)
    assert "wait=true" in target
    answer = send((target.replace("wait=true", f"wait={wait}"), headers, body)).json()
    assert answer["outcome"] == "success"
    assert answer["runs"][0]["status"] == "FinishedSuccess"


@pytest.mark.parametrize(
    ("method", "override"),
    [("POST", "PUT"), ("POST", None), ("PUT", None)],
    ids=["post-override-put", "plain-post", "plain-put"],
)
def test_method_forms(butler, qrs_simulator, method, override):
    url = butler()
    qrs_simulator.set_execution(APP1, duration=0.2)
    target, headers, body = script_request(url, task_id=APP1, timeout=30)
    headers = {k: v for k, v in headers.items() if k != "X-HTTP-Method-Override"}
    if override:
        headers["X-HTTP-Method-Override"] = override
    response = requests.request(method, target, data=body, headers=headers, timeout=60)
    assert response.status_code == 200
    assert response.json()["outcome"] == "success"
    assert [start.task_id for start in qrs_simulator.starts()] == [APP1]
