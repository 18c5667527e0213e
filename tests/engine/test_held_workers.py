"""Quick routes keep their workers while many calls wait on a hung QRS and a slow Engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from butler.app import create_app
from butler.lifecycle import build_services
from butler.testing.certs import CertPaths
from butler.testing.engine_catalogue import demo_apps
from butler.testing.engine_simulator import EngineSimulator
from butler.testing.qrs_simulator import QrsSimulator
from tests.fixtures.engine import engine_config
from tests.fixtures.qrs import butler_qrs_config

BIG = next(app.id for app in demo_apps() if app.reload == "slow")
TASK = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
HELD_RELOADS = 50
HELD_STARTS = 16


@pytest.fixture
def engine(qrs_certs: CertPaths) -> Iterator[EngineSimulator]:
    """An Engine simulator trusting the QRS certificates, so one ``Butler.cert`` serves both."""
    with EngineSimulator(qrs_certs) as simulator:
        yield simulator


@pytest.fixture
def butler_url(
    make_config: Callable[..., Any],
    live_server: Callable[..., str],
    qrs_simulator: QrsSimulator,
    qrs_certs: CertPaths,
    engine: EngineSimulator,
) -> Iterator[str]:
    config = make_config(
        {
            **engine_config(engine.port, qrs_certs),
            **butler_qrs_config(qrs_simulator, qrs_certs),
            "restServerEndpointsEnable": {
                "senseStartTask": True,
                "senseAppReload": True,
                "keyValueStore": True,
                "butlerping": True,
            },
            "keyValueStore": {"persistence": "memory"},
        }
    )
    services = build_services(config)
    services.start()
    yield live_server(create_app(config, services))
    services.stop()


def held(pool: ThreadPoolExecutor, count: int, call: Callable[[], requests.Response]) -> list[Any]:
    return [pool.submit(call) for _ in range(count)]


def test_fifty_waiting_reloads_and_sixteen_stuck_starts_leave_quick_routes_answering(
    butler_url: str, qrs_simulator: QrsSimulator, engine: EngineSimulator
) -> None:
    url = butler_url
    requests.post(f"{url}/v4/keyvalues/ns", json={"key": "k", "value": "v"}, timeout=10)
    qrs_simulator.add_fault("/qrs/task", delay=120)
    with ThreadPoolExecutor(HELD_RELOADS + HELD_STARTS) as pool:
        reloads = held(
            pool,
            HELD_RELOADS,
            lambda: requests.put(
                f"{url}/v4/app/{BIG}/reload", params={"wait": "true"}, json={}, timeout=120
            ),
        )
        starts = held(
            pool,
            HELD_STARTS,
            lambda: requests.put(f"{url}/v4/reloadtask/{TASK}/start", json=[], timeout=120),
        )
        engine_seen = engine.wait_for_calls("DoReload", HELD_RELOADS, app_id=BIG, timeout=30)
        qrs_seen = qrs_simulator.wait_for_delayed(HELD_STARTS, timeout=30)

        with ThreadPoolExecutor(16) as quick, requests.Session() as monitor:
            pings = [
                quick.submit(monitor.get, f"{url}/v4/butlerping", timeout=5) for _ in range(32)
            ]
            reads = [
                quick.submit(monitor.get, f"{url}/v4/keyvalues/ns", params={"key": "k"}, timeout=5)
                for _ in range(32)
            ]
            ping_statuses = [p.result().status_code for p in pings]
            values = [r.result().json()["value"] for r in reads]
        still_held = sum(not f.done() for f in reloads + starts)

        engine.release_reload(BIG)
        qrs_simulator.reset()
        reload_statuses = [f.result().status_code for f in reloads]
        start_statuses = [f.result().status_code for f in starts]

    assert len(engine_seen) >= HELD_RELOADS
    assert qrs_seen >= HELD_STARTS
    assert still_held == HELD_RELOADS + HELD_STARTS
    assert ping_statuses == [200] * 32
    assert values == ["v"] * 32
    assert reload_statuses == [201] * HELD_RELOADS
    assert 429 not in start_statuses
