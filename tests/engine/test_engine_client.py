"""EngineClient against the Engine simulator, over real TLS WebSockets."""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from butler.engine import DUMP_KEYS, EngineClient, ReloadOutcome
from butler.errors import NotFound, UpstreamError, UpstreamTimeout
from butler.testing.certs import CertPaths
from butler.testing.engine_catalogue import SimApp, demo_apps
from butler.testing.engine_simulator import EngineSimulator
from butler.testing.processes import free_port
from tests.fixtures.engine import QLIK_USER, make_engine_client

SALES, FINANCE, BIG, BROKEN = (app.id for app in demo_apps())


class Outcomes:
    """Collects reload outcomes delivered on the client's background threads."""

    def __init__(self) -> None:
        self._queue: queue.Queue[ReloadOutcome] = queue.Queue()

    def __call__(self, outcome: ReloadOutcome) -> None:
        self._queue.put(outcome)

    def next(self) -> ReloadOutcome:
        return self._queue.get(timeout=10)


def test_list_apps_returns_id_and_name_of_every_app(
    engine_client: EngineClient, engine_simulator: EngineSimulator
) -> None:
    apps = engine_client.list_apps()

    assert apps == [{"id": app.id, "name": app.name} for app in demo_apps()]
    (connection,) = engine_simulator.connections
    assert connection.path == "/app/engineData"
    assert connection.headers["X-Qlik-User"] == QLIK_USER["X-Qlik-User"]
    assert connection.client_subject == "QlikClient"


def test_engine_version(engine_client: EngineClient) -> None:
    assert engine_client.engine_version() == "12.612.0"


def test_dump_has_every_key_in_stable_order(
    engine_client: EngineClient, engine_simulator: EngineSimulator
) -> None:
    dump = engine_client.dump_app(SALES)

    assert tuple(dump) == DUMP_KEYS
    assert dump["appId"] == SALES
    assert dump["properties"]["qTitle"] == "Sales Dashboard"
    assert "LOAD OrderId" in dump["loadScript"]
    assert dump["lineage"] == {
        "qLineage": [{"qDiscriminator": "lib://DataFiles/sales.qvd", "qStatement": ""}]
    }
    assert [s["qProperty"]["qInfo"]["qId"] for s in dump["sheets"]] == [
        "sheet-overview",
        "sheet-details",
    ]
    assert dump["sheets"][0]["qChildren"][0]["qProperty"]["qInfo"]["qId"] == "chart-revenue"
    assert [s["qProperty"]["qInfo"]["qId"] for s in dump["stories"]] == ["story-q1"]
    assert [s["qProperty"]["qInfo"]["qId"] for s in dump["masterobjects"]] == ["master-kpi"]
    assert [s["qProperty"]["qInfo"]["qId"] for s in dump["appprops"]] == ["appprops-main"]
    assert [d["qDim"]["title"] for d in dump["dimensions"]] == ["Region", "Month"]
    assert [m["qMeasure"]["qDef"] for m in dump["measures"]] == [
        "Sum(Amount)",
        "Count(distinct OrderId)",
    ]
    (bookmark,) = dump["bookmarks"]
    assert bookmark["qInfo"]["qId"] == "bookmark-north"
    assert bookmark["qData"]["qBookMark"]["qStateData"][0]["qStateName"] == "$"
    assert dump["embeddedmedia"] == [{"qUrlDef": "/media/Logo.png", "qUrl": "/media/Logo.png"}]
    assert [s["qInfo"]["qId"] for s in dump["snapshots"]] == ["snapshot-revenue"]
    assert "$Table" in [f["qName"] for f in dump["fields"]]
    assert [c["qName"] for c in dump["dataconnections"]] == ["DataFiles", "Butler_GET"]
    variables = {v["qName"]: v for v in dump["variables"]}
    assert variables["vReloadStart"]["qIsScriptCreated"] is True
    assert variables["ThousandSep"]["qIsReserved"] is True
    assert variables["ErrorMode"]["qIsConfig"] is True
    assert "qIsScriptCreated" not in variables["vRevenueTarget"]

    (open_doc,) = engine_simulator.calls_to("OpenDoc")
    assert open_doc.path == "/app/engineData"
    assert open_doc.params["qNoData"] is True
    list_ids = [
        c.params["qProp"]["qInfo"]["qId"] for c in engine_simulator.calls_to("CreateSessionObject")
    ]
    assert len(list_ids) == len(set(list_ids)) == 11


def test_dump_of_an_app_without_objects_has_empty_lists(engine_certs: CertPaths) -> None:
    with EngineSimulator(engine_certs, apps=[SimApp(id="empty", name="Empty")]) as simulator:
        dump = make_engine_client(simulator.port, engine_certs).dump_app("empty")

    assert tuple(dump) == DUMP_KEYS
    assert all(dump[key] == [] for key in ("sheets", "bookmarks", "fields", "variables"))


def test_dump_omits_lineage_when_the_engine_cannot_give_it(engine_certs: CertPaths) -> None:
    app = SimApp(id="old", name="Old engine app", lineage=None)
    with EngineSimulator(engine_certs, apps=[app]) as simulator:
        dump = make_engine_client(simulator.port, engine_certs).dump_app("old")

    assert "lineage" not in dump
    assert tuple(dump) == tuple(key for key in DUMP_KEYS if key != "lineage")


def test_dump_of_unknown_app_is_not_found(engine_client: EngineClient) -> None:
    with pytest.raises(NotFound, match="App nope not found"):
        engine_client.dump_app("nope")


def test_reload_success_saves_and_reports_success(
    engine_client: EngineClient, engine_simulator: EngineSimulator
) -> None:
    outcomes = Outcomes()

    engine_client.reload_app(SALES, reload_mode=1, partial=True, on_done=outcomes)

    outcome = outcomes.next()
    assert outcome == ReloadOutcome(SALES, "success", "App reloaded and saved")
    assert engine_simulator.reloads[SALES] == 1
    assert engine_simulator.saves[SALES] == 1
    (reload_call,) = engine_simulator.calls_to("DoReload")
    assert reload_call.path == f"/app/{SALES}"
    assert reload_call.params == {"qMode": 1, "qPartial": True, "qDebug": False}
    assert engine_simulator.calls_to("OpenDoc")[0].params["qNoData"] is False


def test_reload_failure_is_reported_without_save(
    engine_client: EngineClient, engine_simulator: EngineSimulator
) -> None:
    outcomes = Outcomes()

    engine_client.reload_app(FINANCE, on_done=outcomes)

    outcome = outcomes.next()
    assert outcome.result == "failure"
    assert not outcome.success
    assert engine_simulator.saves[FINANCE] == 0


def test_reload_engine_error_counts_as_failure(engine_client: EngineClient) -> None:
    outcomes = Outcomes()

    engine_client.reload_app(BROKEN, on_done=outcomes)

    outcome = outcomes.next()
    assert outcome.result == "failure"
    assert "script error" in outcome.message


def test_reload_of_unknown_app_raises_before_starting(
    engine_client: EngineClient, engine_simulator: EngineSimulator
) -> None:
    outcomes = Outcomes()

    with pytest.raises(NotFound):
        engine_client.reload_app("0000", on_done=outcomes)

    assert engine_simulator.calls_to("DoReload") == []


def test_reload_returns_while_the_engine_is_still_reloading(
    engine_client: EngineClient, engine_simulator: EngineSimulator
) -> None:
    outcomes = Outcomes()

    engine_client.reload_app(BIG, on_done=outcomes)
    engine_simulator.wait_for_call("DoReload", app_id=BIG)
    assert engine_client.list_apps()  # other calls proceed meanwhile
    engine_simulator.release_reload(BIG)

    assert outcomes.next().result == "success"


def test_stop_aborts_running_reloads(
    engine_client: EngineClient, engine_simulator: EngineSimulator
) -> None:
    outcomes = Outcomes()
    engine_client.reload_app(BIG, on_done=outcomes)
    engine_simulator.wait_for_call("DoReload", app_id=BIG)

    engine_client.stop()

    assert outcomes.next().result == "aborted"
    assert engine_simulator.saves[BIG] == 0


def test_unreachable_engine_is_an_upstream_error(engine_certs: CertPaths) -> None:
    client = make_engine_client(free_port(), engine_certs)

    with pytest.raises(UpstreamError, match="unreachable"):
        client.list_apps()


def test_unanswered_call_times_out(
    engine_simulator: EngineSimulator, engine_certs: CertPaths
) -> None:
    engine_simulator.stall("GetDocList")
    client = make_engine_client(engine_simulator.port, engine_certs, call_timeout=0.3)

    with pytest.raises(UpstreamTimeout, match="GetDocList"):
        client.list_apps()


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections but never speaks TLS."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        yield int(server.getsockname()[1])


def test_stuck_handshake_times_out(silent_listener: int, engine_certs: CertPaths) -> None:
    client = make_engine_client(silent_listener, engine_certs, connect_timeout=0.3)

    with pytest.raises(UpstreamTimeout, match="did not accept a connection"):
        client.list_apps()


def test_server_certificate_is_verified_against_the_ca(
    engine_simulator: EngineSimulator, engine_certs: CertPaths
) -> None:
    # The client certificate is not a CA, so nothing the server sends chains to it.
    client = make_engine_client(
        engine_simulator.port, engine_certs, ca_cert=engine_certs.client_cert
    )

    with pytest.raises(UpstreamError, match="TLS handshake"):
        client.list_apps()


def test_unverified_server_is_accepted_when_reject_unauthorized_is_off(
    engine_simulator: EngineSimulator, engine_certs: CertPaths
) -> None:
    client = make_engine_client(
        engine_simulator.port, engine_certs, ca_cert=None, reject_unauthorized=False
    )

    assert len(client.list_apps()) == len(demo_apps())


def test_engine_refuses_a_client_without_certificate(
    engine_simulator: EngineSimulator, engine_certs: CertPaths
) -> None:
    client = make_engine_client(engine_simulator.port, engine_certs, client_cert=None)

    with pytest.raises(UpstreamError):
        client.list_apps()
    assert engine_simulator.calls == []


def test_plain_websocket_without_tls() -> None:
    with EngineSimulator(None) as simulator:
        client = EngineClient("127.0.0.1", simulator.port, use_ssl=False)
        apps = client.list_apps()

    assert [app["name"] for app in apps][:2] == ["Sales Dashboard", "Finance Monthly"]


def test_notifications_between_answers_are_ignored(
    engine_client: EngineClient, engine_simulator: EngineSimulator
) -> None:
    # Every session starts with an OnConnected notification; calls must still line up.
    engine_client.dump_app(SALES)
    engine_client.dump_app(SALES)

    assert len(engine_simulator.connections) == 2
    assert len(engine_simulator.calls_to("GetScript")) == 2


def test_concurrent_dumps_do_not_mix_answers(engine_client: EngineClient) -> None:
    results: list[dict] = []
    lock = threading.Lock()

    def dump() -> None:
        result = engine_client.dump_app(SALES)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=dump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(results) == 4
    assert all(result == results[0] for result in results)


@pytest.fixture
def plain_server() -> Iterator[Callable[..., int]]:
    """Factory: a bare websockets server (no TLS) with the given handler; returns its port."""
    servers: list[tuple[Server, threading.Thread]] = []

    def factory(handler: Callable[[ServerConnection], None], **options: Any) -> int:
        server = serve(handler, "127.0.0.1", 0, **options)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return int(server.socket.getsockname()[1])

    yield factory
    for server, thread in servers:
        server.shutdown()
        thread.join(10)


def test_fragmented_answers_are_reassembled(plain_server: Callable[..., int]) -> None:
    def handler(ws: ServerConnection) -> None:
        for raw in ws:
            request_id = json.loads(raw)["id"]
            answer = f'{{"jsonrpc":"2.0","id":{request_id},"result":{{"qVersion":'
            ws.send([answer, '{"qComponentVersion":"14.1.2"}}}'])

    port = plain_server(handler)
    client = EngineClient("127.0.0.1", port, use_ssl=False)

    assert client.engine_version() == "14.1.2"


def test_refused_websocket_reports_the_http_status(plain_server: Callable[..., int]) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(403, "Forbidden\n")

    port = plain_server(lambda ws: None, process_request=refuse)
    client = EngineClient("127.0.0.1", port, use_ssl=False)

    with pytest.raises(UpstreamError, match="HTTP 403"):
        client.list_apps()


def test_engine_closing_mid_call_is_an_upstream_error(plain_server: Callable[..., int]) -> None:
    def hang_up(ws: ServerConnection) -> None:
        ws.recv()
        ws.close()

    port = plain_server(hang_up)
    client = EngineClient("127.0.0.1", port, use_ssl=False)

    with pytest.raises(UpstreamError, match="closed the connection during GetDocList"):
        client.list_apps()


def test_messages_larger_than_one_mebibyte_are_accepted(engine_certs: CertPaths) -> None:
    script = "// filler\n" * 300_000
    app = SimApp(id="big-script", name="Big script", script=script)
    with EngineSimulator(engine_certs, apps=[app]) as simulator:
        dump = make_engine_client(simulator.port, engine_certs).dump_app("big-script")

    assert dump["loadScript"] == script


def test_missing_certificate_file_fails_at_construction(
    engine_certs: CertPaths, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.pem"

    with pytest.raises(ValueError, match=r"Engine TLS files could not be loaded.*nope\.pem"):
        make_engine_client(1, engine_certs, client_cert=missing)


def test_long_reload_keeps_the_session_alive_with_pings(
    engine_simulator: EngineSimulator, engine_certs: CertPaths
) -> None:
    client = make_engine_client(engine_simulator.port, engine_certs, keepalive_interval=0.02)
    outcomes = Outcomes()
    try:
        client.reload_app(BIG, on_done=outcomes)
        engine_simulator.wait_for_call("DoReload", app_id=BIG)
        engine_simulator.wait_for_pings(3)
        engine_simulator.release_reload(BIG)

        assert outcomes.next().result == "success"
    finally:
        client.stop()
