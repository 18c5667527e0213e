"""Butler's Prometheus metrics: one registry per app, fed by requests and core events.

The registry is per ``Services`` (never prometheus_client's global one), so a process that
builds many apps, the test suite, never mixes their counts or collides on names. Counters
and histograms move as things happen; the key-value and MQTT gauges are read at scrape
time, so they cost nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from butler import __version__
from butler.events import Observer
from butler.kvstore import KvStore
from butler.mqtt import MqttService
from butler.runs import Runs

MAX_NAMESPACE_SERIES = 50
"""Per-namespace key counts are exported for the largest namespaces only, so a store with
thousands of namespaces cannot blow up the scrape or the time-series database."""

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of requests no rule matched (404s), whatever path they asked for."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60)


class ButlerMetrics(Observer):
    """The metric families of one Butler and the observer that feeds them."""

    def __init__(
        self, kv_store: KvStore | None, mqtt: MqttService | None, runs: Runs | None = None
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._requests = Counter(
            "butler_http_requests",
            "HTTP requests answered, by route rule, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self._request_seconds = Histogram(
            "butler_http_request_duration_seconds",
            "Time from routing to response, by route rule and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._task_starts = Counter(
            "butler_task_starts",
            "Tasks asked to start, by trigger and outcome",
            ["trigger", "outcome"],
            registry=registry,
        )
        self._qrs_seconds = Histogram(
            "butler_qrs_request_duration_seconds",
            "QRS calls, by route template and HTTP status (or timeout, unreachable, tls)",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._fires = Counter(
            "butler_schedule_fires",
            "Schedules fired, by outcome",
            ["outcome"],
            registry=registry,
        )
        self._lateness = Histogram(
            "butler_schedule_fire_lateness_seconds",
            "How late after its due instant a schedule was handed to the task starter",
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        Gauge(
            "butler_build_info",
            "Always 1; the label carries the version",
            ["version"],
            registry=registry,
        ).labels(__version__).set(1)
        self._runs_finished = Counter(
            "butler_runs_finished",
            "Runs that became final, by kind (task, appReload), trigger and status",
            ["kind", "trigger", "status"],
            registry=registry,
        )
        registry.register(_LiveGauges(kv_store, mqtt, runs))
        self._request_series: dict[tuple[str, str, str], Any] = {}
        self._duration_series: dict[tuple[str, str], Any] = {}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def request_done(self, rule: str | None, method: str, status: int, seconds: float) -> None:
        """Count one answered request; series are cached, labels() is the costly part."""
        route = rule if rule is not None else UNMATCHED
        method = method if method in KNOWN_METHODS else "other"
        key = (route, method, str(status))
        counter = self._request_series.get(key)
        if counter is None:
            counter = self._request_series.setdefault(key, self._requests.labels(*key))
        counter.inc()
        timer = self._duration_series.get(key[:2])
        if timer is None:
            timer = self._duration_series.setdefault(
                key[:2], self._request_seconds.labels(route, method)
            )
        timer.observe(seconds)

    # Observer: what the core services report

    def qrs_request(self, route: str, status: str, seconds: float) -> None:
        self._qrs_seconds.labels(route, status).observe(seconds)

    def task_starts(self, trigger: str, outcomes: Mapping[str, str]) -> None:
        for outcome in outcomes.values():
            self._task_starts.labels(trigger, _outcome(outcome)).inc()

    def schedules_fired(self, lateness_seconds: float, count: int) -> None:
        for _ in range(count):
            self._lateness.observe(lateness_seconds)

    def schedule_results(self, results: Sequence[tuple[str, str]]) -> None:
        for _, result in results:
            self._fires.labels(_outcome(result)).inc()

    def run_finished(self, run: Mapping[str, Any]) -> None:
        self._runs_finished.labels(run["kind"], run["trigger"], run["status"]).inc()


def _outcome(result: str) -> str:
    """``failed: QRS refused ...`` as ``failed``: the label keeps the kind, not the text."""
    return result.split(":", 1)[0]


class _LiveGauges(Collector):
    """Gauges read when scraped: key-value store sizes, the MQTT connection, open runs."""

    def __init__(self, kv_store: KvStore | None, mqtt: MqttService | None, runs: Runs | None):
        self._kv = kv_store
        self._mqtt = mqtt
        self._runs = runs

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if self._kv is not None:
            counts = self._kv.key_counts()
            yield GaugeMetricFamily(
                "butler_kv_keys", "Live keys in the key-value store", value=sum(counts.values())
            )
            yield GaugeMetricFamily(
                "butler_kv_namespaces", "Namespaces in the key-value store", value=len(counts)
            )
            per_namespace = GaugeMetricFamily(
                "butler_kv_namespace_keys",
                f"Live keys of the {MAX_NAMESPACE_SERIES} largest namespaces",
                labels=["namespace"],
            )
            largest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            for namespace, count in largest[:MAX_NAMESPACE_SERIES]:
                per_namespace.add_metric([namespace], count)
            yield per_namespace
        if self._mqtt is not None:
            yield GaugeMetricFamily(
                "butler_mqtt_connected",
                "1 while connected to the MQTT broker",
                value=1 if self._mqtt.connected else 0,
            )
        if self._runs is not None:
            yield GaugeMetricFamily(
                "butler_runs_open", "Runs not final yet (tracked)", value=self._runs.open_count()
            )
