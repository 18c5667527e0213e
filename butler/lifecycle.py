"""Build the long-lived services from the config, then let every plugin add its own.

This is the one place that reads the Qlik-, broker- and store-facing config sections and
turns them into clients, so plugins receive ready services and never parse connection
settings themselves. A core service is built only when something enabled needs it (the
enable keys' declared needs, the scheduler, MQTT's task-start topic).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from butler.audit import AuditSettings, AuditStore, AuditStoreError, AuditTrail, StartAuditor
from butler.certificates import load_client_certificate
from butler.config import Config, ConfigError, CoreService
from butler.engine import EngineClient
from butler.events import Events
from butler.kvstore import KvStore, KvStoreError
from butler.mqtt import AzureEventGrid, MqttService, MqttTls
from butler.outbound_http import new_session
from butler.plugins import default_plugin_manager
from butler.qrs import QrsClient
from butler.runs import Runs, RunSettings, RunStore, RunStoreError
from butler.schedules import Scheduler, ScheduleStore
from butler.schedules.calendars import load_calendars
from butler.services import Services
from butler.tasks import StartFilter, TaskStarter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QlikConnection:
    """How to reach one Qlik Sense service (QRS or Engine): host, TLS and client certificate.

    Both services share ``Butler.cert`` and the same section layout, so they are read by
    this one recipe.
    """

    host: str
    port: int
    use_ssl: bool
    client_cert: Path
    client_key: Path
    ca_cert: Path | None
    reject_unauthorized: bool
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def from_config(cls, config: Config, section: str) -> QlikConnection:
        ca = config.get("cert.clientCertCA")
        return cls(
            host=config.get(f"{section}.host"),
            port=config.get(f"{section}.port"),
            use_ssl=config.get(f"{section}.useSSL") is True,
            client_cert=config.resolve_path(config.get("cert.clientCert")),
            client_key=config.resolve_path(config.get("cert.clientCertKey")),
            ca_cert=config.resolve_path(ca) if ca else None,
            reject_unauthorized=config.get(f"{section}.rejectUnauthorized") is True,
            headers=tuple(
                (h["name"], h["value"]) for h in config.get(f"{section}.headers.static", [])
            ),
        )

    def client_settings(self) -> dict[str, Any]:
        """The keyword arguments the QRS and Engine clients share."""
        return {
            "host": self.host,
            "port": self.port,
            "use_ssl": self.use_ssl,
            "client_cert": self.client_cert,
            "client_key": self.client_key,
            "ca_cert": self.ca_cert,
            "reject_unauthorized": self.reject_unauthorized,
        }


@contextmanager
def _certificate_errors_as_config_errors(section: str) -> Iterator[None]:
    """A missing or unreadable certificate stops start-up with the config keys to check."""
    try:
        yield
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Butler.cert (used by Butler.{section}): {exc}") from None


def build_qrs(config: Config, events: Events | None = None) -> QrsClient:
    qlik = QlikConnection.from_config(config, "configQRS")
    if qlik.use_ssl:
        load_client_certificate(config, "configQRS")
    with _certificate_errors_as_config_errors("configQRS"):
        return QrsClient(
            **qlik.client_settings(),
            static_headers=qlik.headers,
            read_timeout=config.get("configQRS.timeout"),
            events=events,
        )


def build_engine(config: Config) -> EngineClient:
    qlik = QlikConnection.from_config(config, "configEngine")
    if qlik.use_ssl:
        load_client_certificate(config, "configEngine")
    with _certificate_errors_as_config_errors("configEngine"):
        return EngineClient(**qlik.client_settings(), static_headers=dict(qlik.headers))


def build_kv_store(config: Config) -> KvStore:
    persistent = config.get("keyValueStore.persistence") == "sqlite"
    path = config.resolve_path(config.get("keyValueStore.dbFile")) if persistent else None
    try:
        return KvStore(path, config.get("keyValueStore.maxKeysPerNamespace"))
    except KvStoreError as exc:
        raise ConfigError(f"Butler.keyValueStore.dbFile: {exc}") from None


def build_runs(config: Config, qrs: QrsClient, events: Events) -> Runs:
    path = config.resolve_path(config.get("runs.dbFile"))
    try:
        store = RunStore(path)
    except RunStoreError as exc:
        raise ConfigError(f"Butler.runs.dbFile: {exc}") from None
    return Runs(store, qrs, RunSettings.from_config(config.get("runs")), events)


def build_audit(config: Config, events: Events) -> AuditTrail:
    """The audit trail, subscribed to the starts that no HTTP request audits (MQTT,
    schedules, chains)."""
    section = config.get("audit")
    try:
        store = AuditStore(config.resolve_path(section["dbFile"]), section["flushEachCommit"])
    except AuditStoreError as exc:
        raise ConfigError(f"Butler.audit.dbFile: {exc}") from None
    lines = section["jsonLinesFile"]
    settings = AuditSettings.from_config(section, config.resolve_path(lines) if lines else None)
    try:
        trail = AuditTrail(store, settings)
    except OSError as exc:
        store.close()
        raise ConfigError(f"Butler.audit.jsonLinesFile: cannot open {lines}: {exc}") from None
    events.subscribe(StartAuditor(trail))
    return trail


def build_services(config: Config, plugin_manager: pluggy.PluginManager | None = None) -> Services:
    """Construct every service the config switches on (nothing is started yet)."""
    services = Services(config=config, http=new_session())
    if config.needs(CoreService.KV_STORE):
        services.kv_store = build_kv_store(config)
    if config.get("audit.enable") is True:
        services.audit = build_audit(config, services.events)
    mqtt_trigger = config.get("mqttConfig.enable") is True and bool(
        config.get("configQRS.host") and config.get("cert.clientCert")
    )
    if config.needs(CoreService.QRS) or mqtt_trigger:
        services.qrs = build_qrs(config, services.events)
        services.runs = build_runs(config, services.qrs, services.events)
        services.task_starter = TaskStarter(
            services.qrs,
            StartFilter.from_config(config.get("startTaskFilter")),
            services.kv_store,
            events=services.events,
            runs=services.runs,
        )
    if config.needs(CoreService.ENGINE):
        services.engine = build_engine(config)
    if config.get("scheduler.enable") is True:
        services.scheduler = build_scheduler(config, services)
    if config.get("mqttConfig.enable") is True:
        services.mqtt = build_mqtt(config)
    pm = plugin_manager or default_plugin_manager()
    pm.hook.butler_services(config=config, services=services)
    return services


def build_scheduler(config: Config, services: Services) -> Scheduler:
    starter = services.task_starter
    if starter is None:
        raise ConfigError("Butler.scheduler.enable: the scheduler needs Butler.configQRS and cert")
    calendars = load_calendars(config.get("scheduler.calendars"), config.resolve_path)
    store = ScheduleStore(
        config.resolve_path(config.get("scheduler.configfile")), calendars=calendars
    )
    return Scheduler(store, starter, events=services.events, runs=services.runs)


def build_mqtt(config: Config) -> MqttService:
    section = config.get("mqttConfig")
    tls_cfg = section.get("tls") or {}
    tls = None
    if tls_cfg.get("enable") is True:
        tls = MqttTls(
            ca_file=config.resolve_path(tls_cfg["ca"]) if tls_cfg.get("ca") else None,
            cert_file=config.resolve_path(tls_cfg["cert"]) if tls_cfg.get("cert") else None,
            key_file=config.resolve_path(tls_cfg["key"]) if tls_cfg.get("key") else None,
            verify=tls_cfg.get("rejectUnauthorized", True) is not False,
        )
    azure = None
    azure_cfg = section.get("azureEventGrid") or {}
    if azure_cfg.get("enable") is True:
        azure = AzureEventGrid(
            client_id=azure_cfg["clientId"],
            cert_file=config.resolve_path(azure_cfg["clientCertFile"]),
            key_file=config.resolve_path(azure_cfg["clientKeyFile"]),
        )
    return MqttService(
        host=section["brokerHost"],
        port=section["brokerPort"],
        username=section["username"],
        password=section["password"],
        tls=tls,
        azure_event_grid=azure,
        subscription_root_topic=section["subscriptionRootTopic"],
        task_start_topic=section["taskStartTopic"],
    )
