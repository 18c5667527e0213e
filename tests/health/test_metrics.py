"""/metrics over real sockets: it parses, and its counters move with what Butler does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests
from prometheus_client.parser import text_string_to_metric_families

from butler import __version__
from butler.events import Events
from butler.kvstore import KvStore
from butler.schedules import Scheduler, ScheduleStore
from butler.tasks import IdStarts
from butler.testing.processes import free_port
from butler_plugins.metrics.collectors import MAX_NAMESPACE_SERIES, ButlerMetrics
from tests.fixtures.qrs import butler_qrs_config
from tests.health.conftest import metric_samples
from tests.scheduler.conftest import entry, write_schedules

GUID = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"


def scrape(url: str) -> dict:
    response = requests.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return metric_samples(response.text)


def requests_total(samples: dict, route: str, method: str = "GET", status: str = "200") -> float:
    labels = (("method", method), ("route", route), ("status", status))
    return samples.get(("butler_http_requests_total", labels), 0.0)


def test_exposition_parses_and_request_counters_move(make_config, running_butler):
    config = make_config(
        {
            "restServerEndpointsEnable": {
                "metrics": True,
                "butlerping": True,
                "keyValueStore": True,
            },
            "keyValueStore": {"persistence": "memory"},
        }
    )
    url = running_butler(config)
    text = requests.get(f"{url}/metrics", timeout=5).text
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "butler_http_requests",
        "butler_http_request_duration_seconds",
        "butler_task_starts",
        "butler_qrs_request_duration_seconds",
        "butler_schedule_fires",
        "butler_schedule_fire_lateness_seconds",
        "butler_build_info",
        "butler_kv_keys",
    } <= names
    before = scrape(url)
    for _ in range(3):
        requests.get(f"{url}/v4/butlerping", timeout=5)
    requests.post(f"{url}/v4/keyvalues/sales", json={"key": "k", "value": "v"}, timeout=5)
    requests.get(f"{url}/v4/keyvalues/sales", params={"key": "k"}, timeout=5)
    requests.get(f"{url}/v4/keyvalues/other", params={"key": "k"}, timeout=5)
    requests.get(f"{url}/no/such/path/123", timeout=5)
    after = scrape(url)

    ping = "/v4/butlerping"
    assert requests_total(after, ping) - requests_total(before, ping) == 3
    kv = "/v4/keyvalues/<namespace>"
    assert requests_total(after, kv, "POST", "201") == 1
    assert requests_total(after, kv, "GET", "200") == 1
    assert requests_total(after, kv, "GET", "404") == 1
    assert requests_total(after, "unmatched", "GET", "404") == 1
    routes = {dict(labels).get("route") for (_, labels) in after}
    assert "/v4/keyvalues/sales" not in routes and "/no/such/path/123" not in routes
    duration = ("butler_http_request_duration_seconds_count", (("method", "GET"), ("route", ping)))
    assert after[duration] - before.get(duration, 0) == 3
    assert after[("butler_build_info", (("version", __version__),))] == 1
    assert after[("butler_kv_keys", ())] == 1
    assert after[("butler_kv_namespace_keys", (("namespace", "sales"),))] == 1


def test_task_starts_and_qrs_durations_are_counted(
    make_config, running_butler, qrs_simulator, qrs_certs
):
    config = make_config(
        {
            **butler_qrs_config(qrs_simulator, qrs_certs),
            "restServerEndpointsEnable": {"metrics": True, "senseStartTask": True},
        }
    )
    url = running_butler(config)
    unknown = "00000000-0000-0000-0000-000000000000"
    response = requests.put(
        f"{url}/v4/reloadtask/start",
        json=[
            {"type": "starttaskid", "payload": {"taskId": GUID}},
            {"type": "starttaskid", "payload": {"taskId": unknown}},
        ],
        timeout=10,
    )
    assert response.status_code in (200, 201), response.text
    samples = scrape(url)
    starts = "butler_task_starts_total"
    assert samples[(starts, (("outcome", "started"), ("trigger", "rest")))] == 1
    assert samples[(starts, (("outcome", "notFound"), ("trigger", "rest")))] == 1
    routes = {
        dict(labels)["route"]
        for (name, labels) in samples
        if name == "butler_qrs_request_duration_seconds_count"
    }
    assert "/qrs/task" in routes and "/qrs/task/start/many" in routes
    assert not any(GUID in route for route in routes)


def test_runs_are_counted_when_final_and_open_ones_gauged(
    make_config, running_butler, qrs_simulator, qrs_certs, tmp_path
):
    qrs_simulator.set_execution(GUID, duration=0.2)
    config = make_config(
        {
            **butler_qrs_config(qrs_simulator, qrs_certs),
            "restServerEndpointsEnable": {"metrics": True, "senseStartTask": True},
            "runs": {"pollIntervalSeconds": 0.1, "dbFile": str(tmp_path / "runs.sqlite")},
        }
    )
    url = running_butler(config)
    started = requests.put(f"{url}/v4/reloadtask/{GUID}/start", timeout=10)
    assert started.json()["runs"][0]["status"] == "Triggered"
    assert scrape(url)[("butler_runs_open", ())] == 1
    waited = requests.put(
        f"{url}/v4/reloadtask/{GUID}/start", params={"wait": "true"}, timeout=10
    ).json()
    assert waited["outcome"] == "success"
    samples = scrape(url)
    finished = (
        "butler_runs_finished_total",
        (("kind", "task"), ("status", "FinishedSuccess"), ("trigger", "rest")),
    )
    assert samples[finished] >= 1


def test_schedule_fires_and_lateness(tmp_path):
    """The scheduler reports each fire through the core's events; the metrics count them."""

    class Starter:
        def start_ids_with_runs(self, task_ids, trigger):
            return IdStarts({task_id: "started" for task_id in task_ids})

    path = tmp_path / "schedules.yaml"
    write_schedules(path, [entry("every-second", "* * * * * *", task=GUID)])
    events = Events()
    metrics = ButlerMetrics(None, None)
    events.subscribe(metrics)
    scheduler = Scheduler(ScheduleStore(path), Starter(), events=events)
    scheduler.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=5)
        fired = 0.0
        while datetime.now(UTC) < deadline and fired < 1:
            samples = metric_samples(metrics.exposition().decode())
            fired = samples.get(("butler_schedule_fires_total", (("outcome", "started"),)), 0)
            scheduler.drain(timeout=0.5)
    finally:
        scheduler.stop()
    assert fired >= 1
    assert samples[("butler_schedule_fire_lateness_seconds_count", ())] >= 1


def test_key_value_namespaces_are_bounded(tmp_path):
    store = KvStore(None)
    for i in range(MAX_NAMESPACE_SERIES + 10):
        for k in range(1 + (i == 7) * 5):
            store.set(f"ns{i}", f"k{k}", "v")
    samples = metric_samples(ButlerMetrics(store, None).exposition().decode())
    per_namespace = [labels for (name, labels) in samples if name == "butler_kv_namespace_keys"]
    assert len(per_namespace) == MAX_NAMESPACE_SERIES
    assert samples[("butler_kv_namespace_keys", (("namespace", "ns7"),))] == 6
    assert samples[("butler_kv_keys", ())] == MAX_NAMESPACE_SERIES + 10 + 5
    assert samples[("butler_kv_namespaces", ())] == MAX_NAMESPACE_SERIES + 10


def test_each_app_has_its_own_registry(make_config, running_butler):
    config = make_config({"restServerEndpointsEnable": {"metrics": True, "butlerping": True}})
    first, second = running_butler(config), running_butler(config)
    requests.get(f"{first}/v4/butlerping", timeout=5)
    assert requests_total(scrape(first), "/v4/butlerping") == 1
    assert requests_total(scrape(second), "/v4/butlerping") == 0


def test_mqtt_connection_gauge(make_config, running_butler):
    config = make_config(
        {
            "restServerEndpointsEnable": {"metrics": True},
            "mqttConfig": {"enable": True, "brokerHost": "127.0.0.1", "brokerPort": free_port()},
        }
    )
    url = running_butler(config)
    assert scrape(url)[("butler_mqtt_connected", ())] == 0


def test_explicit_false_switches_metrics_off(make_config, running_butler):
    url = running_butler(make_config({"restServerEndpointsEnable": {"butlerping": True}}))
    assert requests.get(f"{url}/metrics", timeout=5).status_code == 404
    assert requests.get(f"{url}/v4/butlerping", timeout=5).status_code == 200
