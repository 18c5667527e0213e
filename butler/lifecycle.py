"""Build the long-lived services from the config, and start and stop them in order.

This is the one place that reads the Qlik-, broker- and store-facing config sections and
turns them into clients, so plugins receive ready services and never parse connection
settings themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from butler.config import Config, ConfigError, needs_engine, needs_qrs
from butler.services import Services

log = logging.getLogger(__name__)


def _static_headers(config: Config, section: str) -> list[tuple[str, str]]:
    return [(h["name"], h["value"]) for h in config.get(f"{section}.headers.static", [])]


def _cert_paths(config: Config) -> tuple[Path, Path, Path | None]:
    ca = config.get("cert.clientCertCA")
    return (
        config.resolve_path(config.get("cert.clientCert")),
        config.resolve_path(config.get("cert.clientCertKey")),
        config.resolve_path(ca) if ca else None,
    )


@contextmanager
def _certificate_errors_as_config_errors(section: str) -> Iterator[None]:
    """A missing or unreadable certificate stops start-up with the config keys to check."""
    try:
        yield
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Butler.cert (used by Butler.{section}): {exc}") from None


def build_qrs(config: Config) -> Any:
    from butler.qrs import QrsClient

    cert, key, ca = _cert_paths(config)
    with _certificate_errors_as_config_errors("configQRS"):
        return QrsClient(
            host=config.get("configQRS.host"),
            port=int(config.get("configQRS.port", 4242)),
            use_ssl=config.get("configQRS.useSSL", True) is True,
            client_cert=cert,
            client_key=key,
            ca_cert=ca,
            reject_unauthorized=config.get("configQRS.rejectUnauthorized") is True,
            static_headers=_static_headers(config, "configQRS"),
            read_timeout=float(config.get("configQRS.timeout", 30.0)),
        )


def build_engine(config: Config) -> Any:
    from butler.engine import EngineClient

    cert, key, ca = _cert_paths(config)
    with _certificate_errors_as_config_errors("configEngine"):
        return EngineClient(
            host=config.get("configEngine.host"),
            port=int(config.get("configEngine.port", 4747)),
            use_ssl=config.get("configEngine.useSSL", True) is True,
            client_cert=cert,
            client_key=key,
            ca_cert=ca,
            reject_unauthorized=config.get("configEngine.rejectUnauthorized") is True,
            static_headers=dict(_static_headers(config, "configEngine")),
        )


def build_kv_store(config: Config) -> Any:
    from butler.kvstore import KvStore, KvStoreError

    persistent = config.get("keyValueStore.persistence", "sqlite") == "sqlite"
    path = config.resolve_path(config.get("keyValueStore.dbFile")) if persistent else None
    try:
        return KvStore(path, int(config.get("keyValueStore.maxKeysPerNamespace", 1000)))
    except KvStoreError as exc:
        raise ConfigError(f"Butler.keyValueStore.dbFile: {exc}") from None


def build_services(config: Config) -> Services:
    """Construct every service the config switches on (nothing is started yet)."""
    from butler.outbound import new_session
    from butler.tasks import StartFilter, TaskStarter

    services = Services(config=config)
    services.extras["http"] = new_session()
    if config.endpoint_enabled("keyValueStore"):
        services.kv_store = build_kv_store(config)
    mqtt_trigger = config.get("mqttConfig.enable") is True and bool(
        config.get("configQRS.host") and config.get("cert.clientCert")
    )
    if needs_qrs(config) or mqtt_trigger:
        services.qrs = build_qrs(config)
        services.task_starter = TaskStarter(
            services.qrs,
            StartFilter.from_config(config.get("startTaskFilter")),
            services.kv_store,
        )
        starter = services.task_starter
        services.extras["start_tasks"] = lambda ids: starter.start_ids(ids, trigger="app reload")
    if needs_engine(config):
        services.engine = build_engine(config)
    if config.get("scheduler.enable") is True:
        services.scheduler = build_scheduler(config, services)
    if config.get("mqttConfig.enable") is True:
        services.mqtt = build_mqtt(config, services)
    return services


def build_scheduler(config: Config, services: Services) -> Any:
    from butler.schedules import Scheduler, ScheduleStore

    if services.task_starter is None:
        raise ConfigError("Butler.scheduler.enable: the scheduler needs Butler.configQRS and cert")
    store = ScheduleStore(config.resolve_path(config.get("scheduler.configfile")))
    return Scheduler(store, services.task_starter)


def build_mqtt(config: Config, services: Services) -> Any:
    from butler.mqtt import AzureEventGrid, MqttService, MqttTls
    from butler.tasks import parse_mqtt_payload

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
    starter = services.task_starter

    def on_task_start(payload: bytes) -> None:
        if starter is None:
            log.warning("MQTT task start ignored: no QRS connection configured")
            return
        starter.start(parse_mqtt_payload(payload), trigger="MQTT")

    return MqttService(
        host=section["brokerHost"],
        port=int(section["brokerPort"]),
        username=section.get("username"),
        password=section.get("password"),
        tls=tls,
        azure_event_grid=azure,
        subscription_root_topic=section.get("subscriptionRootTopic"),
        task_start_topic=section.get("taskStartTopic"),
        on_task_start=on_task_start,
    )
