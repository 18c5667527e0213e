"""The QRS simulator object tests, benchmarks and ``butler demo`` hold on to.

It wires the server, faults, recording and routes together and is the one API callers use,
so a test reads ``sim.add_fault(...)`` and ``sim.starts()`` without knowing the parts. All
parts share one re-entrant lock: ``reset`` between tests then changes faults, catalogue and
log in one step that no in-flight request can observe half done.

Each request goes: latency and faults, then the Xrfkey check and the route, then the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from butler.testing.certs import CertPaths
from butler.testing.qrs_catalogue import Execution, load_catalogue
from butler.testing.qrs_simulator.executions import Clock, ExecutionQueue
from butler.testing.qrs_simulator.faults import Fault, FaultInjector
from butler.testing.qrs_simulator.recording import (
    Recorder,
    RequestRecord,
    StartRecord,
    recorded_headers,
)
from butler.testing.qrs_simulator.routes import QrsRoutes, parse_body
from butler.testing.qrs_simulator.server import Reply, Request, Server

__all__ = ["QrsSimulator"]

# One logger name for the whole simulator, so its log lines read (and filter) the same
# whichever part wrote them.
_log = logging.getLogger("butler.testing.qrs_simulator")


class QrsSimulator:
    """An HTTPS server answering the QRS routes Butler uses, with recording and faults.

    ``certs`` enables TLS with a mandatory client certificate signed by ``certs.ca``; ``None``
    serves plain HTTP (for Butler's ``useSSL: false``). ``synthetic_tasks`` adds that many
    generated tasks sharing the tag ``synthetic_tag`` (for benchmarks). The request, start
    and execution logs keep the newest ``max_log`` entries, so a long demo run stays small.

    Executions follow Qlik's scheduler: at most ``max_concurrent_reloads`` run at once, the
    rest wait Queued; each is Triggered for ``start_delay`` seconds first. ``clock`` (default
    ``time.time``) gives "now" for every start and state; see ``docs/qrs-simulator.md``.
    """

    def __init__(
        self,
        certs: CertPaths | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        catalogue: Path | str | Mapping[str, Any] | None = None,
        synthetic_tasks: int = 0,
        synthetic_tag: str = "bench",
        latency: float = 0.0,
        max_log: int = 100_000,
        max_concurrent_reloads: int = 4,
        start_delay: float = 0.0,
        clock: Clock = time.time,
    ):
        self.host = host
        catalogue_data = load_catalogue(catalogue)
        from_file = catalogue_data.get("synthetic") or {}
        if synthetic_tasks:
            synthetic = (synthetic_tasks, synthetic_tag)
        else:
            synthetic = (int(from_file.get("count", 0)), str(from_file.get("tag", synthetic_tag)))
        self._lock = threading.RLock()
        self._recorder = Recorder(self._lock, max_log)
        self._defaults = (max_concurrent_reloads, start_delay, clock)
        self._executions = ExecutionQueue(
            max_concurrent=max_concurrent_reloads, start_delay=start_delay, max_log=max_log
        )
        self._routes = QrsRoutes(
            catalogue_data,
            synthetic,
            lock=self._lock,
            recorder=self._recorder,
            executions=self._executions,
            clock=clock,
        )
        self._faults = FaultInjector(self._lock, latency, self._routes.task_by_name)
        self._server = Server(
            certs,
            host=host,
            port=port,
            answer=self._answer,
            lock=self._lock,
            recorder=self._recorder,
            on_stopping=self._faults.interrupt_delays,
        )
        self.reset_catalogue()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> QrsSimulator:
        """Bind and start serving in background threads; returns ``self`` for chaining."""
        self._server.start()
        _log.info("QRS simulator listening on %s (%d tasks)", self.url, len(self.task_ids()))
        return self

    def stop(self) -> None:
        """Stop accepting, close every open connection and wait for all worker threads."""
        self._server.stop()

    def __enter__(self) -> QrsSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    # ----------------------------------------------------------------- observation

    def requests(self) -> list[RequestRecord]:
        return self._recorder.requests()

    def starts(self) -> list[StartRecord]:
        return self._recorder.starts()

    @property
    def new_connections(self) -> int:
        """Connections accepted (TLS handshake completed) since the last ``reset_log``."""
        return self._recorder.new_connections

    @property
    def rejected_connections(self) -> int:
        """Connections whose TLS handshake failed (no or untrusted client certificate)."""
        return self._recorder.rejected_connections

    @property
    def request_count(self) -> int:
        """Requests answered or dropped since the last ``reset_log``, not bounded by
        ``max_log`` (benchmarks count QRS requests per poll with it)."""
        return self._recorder.request_count

    def reset_log(self) -> None:
        self._recorder.reset()

    def wait_for_starts(self, count: int, timeout: float = 5.0) -> list[StartRecord]:
        """Block until at least ``count`` starts are recorded; for asynchronous triggers."""
        return self._recorder.wait_for_starts(count, timeout)

    def wait_for_rejected_connections(self, count: int, timeout: float = 5.0) -> int:
        """Block until ``count`` TLS handshakes have failed.

        With TLS 1.3 the client sees the server's rejection before the server has finished
        counting it, so tests wait here instead of reading the counter at once.
        """
        return self._recorder.wait_for_rejected_connections(count, timeout)

    @property
    def delayed_requests(self) -> int:
        """Requests being held by a delay (a fault or latency) right now."""
        return self._recorder.delayed

    def wait_for_delayed(self, count: int, timeout: float = 5.0) -> int:
        """Block until ``count`` requests are being held by a delay (a fault or latency).

        Lets a test know Butler's calls are stuck at QRS right now, not merely sent.
        """
        return self._recorder.wait_for_delayed(count, timeout)

    # ----------------------------------------------------------------- faults

    def set_latency(self, seconds: float) -> None:
        """Delay every answer by ``seconds`` (on top of fault delays)."""
        self._faults.set_latency(seconds)

    def add_fault(
        self,
        target: str,
        *,
        status: int | None = None,
        delay: float = 0.0,
        drop: bool = False,
        method: str | None = None,
        times: int | None = None,
        body: str = "",
    ) -> Fault:
        """Inject a failure for a path prefix or a task id; see :class:`Fault`."""
        return self._faults.add(
            target, status=status, delay=delay, drop=drop, method=method, times=times, body=body
        )

    def remove_fault(self, fault: Fault) -> None:
        self._faults.remove(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def reset(self) -> None:
        """Back to the state after construction: catalogue, no executions, the constructor's
        queue settings and clock, no faults, no latency, empty log.

        Requests still waiting out a delay are cut off, so a request a test gave up on cannot
        start a task or appear in the log of the next test.
        """
        with self._lock:
            self._faults.reset()
            max_concurrent, start_delay, clock = self._defaults
            self.set_max_concurrent_reloads(max_concurrent)
            self.set_start_delay(start_delay)
            self.set_clock(clock)
            self.reset_catalogue()
            self.reset_log()

    # ----------------------------------------------------------------- catalogue

    def reset_catalogue(self) -> None:
        """Reload the catalogue given at construction; forgets added tasks and executions."""
        with self._lock:
            self._routes.reset_catalogue()
            self._executions.clear()

    def add_task(self, spec: Mapping[str, Any]) -> str:
        """Add (or replace) one task given in catalogue format; returns its id."""
        return self._routes.add_task(spec)

    def remove_task(self, task_id: str) -> None:
        self._routes.remove_task(task_id)

    # ----------------------------------------------------------------- executions

    def set_execution(
        self, task_id: str, *, duration: float | None = None, outcome: str | None = None
    ) -> None:
        """Make the task's later starts run ``duration`` seconds and end with ``outcome``
        (``"success"`` or ``"fail"``); executions already triggered keep theirs."""
        self._routes.set_execution(task_id, duration=duration, outcome=outcome)

    def executions_of(self, task_id: str) -> list[Execution]:
        """The task's executions still in the log, in trigger order."""
        wanted = task_id.lower()
        with self._lock:
            return [e for e in self._executions.all() if e.task.id.lower() == wanted]

    def clear_executions(self) -> None:
        """Forget every execution, as a QRS whose results were purged (or restored from an
        older backup) does; tasks and settings stay."""
        with self._lock:
            self._executions.clear()

    def set_max_concurrent_reloads(self, count: int) -> None:
        """The scheduler's limit of executions running at once; the rest wait Queued.

        Executions already started keep running; queued ones start as slots free up under
        the new limit.
        """
        with self._lock:
            self._routes.now()
            self._executions.max_concurrent = max(1, int(count))

    def set_start_delay(self, seconds: float) -> None:
        """How long later starts stay Triggered before they queue or start."""
        with self._lock:
            self._executions.start_delay = max(0.0, float(seconds))

    def set_clock(self, clock: Clock) -> None:
        """Use ``clock`` for "now" (e.g. a :class:`ManualClock`); ``reset`` restores the
        constructor's clock."""
        with self._lock:
            self._routes.clock = clock

    def task_ids(self, tag: str | None = None) -> list[str]:
        """Ids of all tasks, or of the tasks carrying ``tag`` (exact name), in catalogue order."""
        return self._routes.task_ids(tag)

    # ----------------------------------------------------------------- requests

    def _answer(self, request: Request) -> Reply | None:
        """Answer one request, or ``None`` to drop its connection."""
        body = parse_body(request.raw_body)
        injection = self._faults.take(request.method, request.path, request.query, body)
        self._recorder.delaying(+1)
        try:
            interrupted = injection.wait()
        finally:
            self._recorder.delaying(-1)
        if interrupted:
            return None
        fault = injection.fault
        if fault is not None and fault.drop:
            self._record(request, body, None)
            return None
        if fault is not None and fault.status is not None:
            reply = Reply(fault.status, fault.body, "text/plain; charset=utf-8")
        else:
            reply = self._routes.answer(request, body)
        self._record(request, body, reply.status)
        return reply

    def _record(self, request: Request, body: Any, status: int | None) -> None:
        self._recorder.add_request(
            RequestRecord(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=recorded_headers(request.headers),
                body=body,
                time=request.received,
                connection_id=request.connection_id,
                new_connection=request.new_connection,
                tls_session_reused=request.tls_session_reused,
                status=status,
            )
        )
