"""Marshmallow schemas for the core's config sections, and the field helpers plugins use.

Each schema validates one section and tolerates keys it does not know (the original's
config carries many sections for features outside the REST API). Messages are short
phrases; :mod:`butler.config` prefixes them with the key path and the offending value.
Plugins build the schemas of their own sections from the same helpers, so every config
error reads alike.
"""

from __future__ import annotations

import importlib.util
from typing import Any
from urllib.parse import urlsplit

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from butler.fields import coerce_bool
from butler.guid import is_guid


class ConfigBoolean(fields.Field):
    """YAML booleans, plus ``"true"``/``"false"`` texts that hand-edited files contain."""

    default_error_messages = {"required": "is required", "null": "must be true or false"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        try:
            return coerce_bool(value)
        except ValidationError as exc:
            raise ValidationError("must be true or false") from exc


def config_string(**kwargs: Any) -> fields.String:
    return fields.String(
        error_messages={
            "invalid": "must be a string",
            "required": "is required",
            "null": "must be a string",
        },
        **kwargs,
    )


def config_integer(**kwargs: Any) -> fields.Integer:
    return fields.Integer(
        strict=False,
        error_messages={
            "invalid": "must be an integer",
            "required": "is required",
            "null": "must be an integer",
        },
        **kwargs,
    )


def _http_url(value: str) -> None:
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # unbalanced [ of an IPv6 host, a port that is no number 0-65535
        port_ok = False
    if not port_ok or parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
        raise ValidationError("must be an http(s) URL")


def config_url(**kwargs: Any) -> fields.String:
    """An http(s) URL with a host: a typo must fail at start-up, not at the first call."""
    return config_string(validate=_http_url, **kwargs)


def config_port(**kwargs: Any) -> fields.Integer:
    return config_integer(
        validate=validate.Range(1, 65535, error="must be a port number 1-65535"), **kwargs
    )


def config_list(inner: fields.Field, **kwargs: Any) -> fields.List:
    """A list where ``null`` means empty, as in the original's template."""
    return fields.List(
        inner,
        allow_none=True,
        load_default=None,
        error_messages={"invalid": "must be a list (or null)"},
        **kwargs,
    )


def config_nested(schema: type[Schema], **kwargs: Any) -> fields.Nested:
    return fields.Nested(
        schema,
        error_messages={
            "type": "must be a mapping",
            "required": "is required",
            "null": "must be a mapping",
        },
        **kwargs,
    )


def timeout_setting(value: Any, default: float) -> float:
    """An optional ``timeout`` config value in seconds; anything else means ``default``.

    Lenient on purpose: the original had no such setting, so a stray value in an old file
    must not stop start-up.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        seconds = float(value)
    except ValueError:
        return default
    return seconds if 0 < seconds < 3600 else default


class TimeoutSeconds(fields.Field):
    """An optional timeout in seconds, read with :func:`timeout_setting` (never an error)."""

    def __init__(self, default: float, **kwargs: Any):
        super().__init__(load_default=default, allow_none=True, **kwargs)
        self.fallback = default

    def deserialize(
        self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any
    ) -> float:
        return timeout_setting(value, self.fallback)


class OpenSchema(Schema):
    """A section schema that keeps keys it does not know (the original's files have many)."""

    class Meta:
        unknown = INCLUDE


class NameValue(OpenSchema):
    name = config_string(required=True)
    value = config_string(required=True)


class StaticHeaders(OpenSchema):
    static = config_list(config_nested(NameValue))


class TlsSection(OpenSchema):
    enable = ConfigBoolean(load_default=False)
    cert = config_string(allow_none=True, load_default=None)
    key = config_string(allow_none=True, load_default=None)
    ca = config_string(allow_none=True, load_default=None)
    requireClientCertificate = ConfigBoolean(load_default=False)


class TaskAllowList(OpenSchema):
    """``startTaskFilter.allowTask`` and a caller's ``tasks`` scope share this shape."""

    taskId = config_list(config_string())
    tag = config_list(config_string())
    customProperty = config_list(config_nested(NameValue))


class ResourceScopes(OpenSchema):
    """What an API key or certificate caller may touch, each optional (absent: anything)."""

    scopes = config_list(config_string())
    tasks = config_nested(TaskAllowList, allow_none=True, load_default=None)
    kvNamespaces = config_list(config_string())
    fileDirectories = config_list(config_string())
    schedules = config_list(config_string())


class ApiKeyEntry(ResourceScopes):
    name = config_string(required=True, validate=validate.Length(1, 200))
    keyHash = config_string(allow_none=True, load_default=None)
    key = config_string(allow_none=True, load_default=None)

    @validates_schema
    def _one_credential(self, data: dict[str, Any], **kwargs: Any) -> None:
        if (data.get("keyHash") is None) == (data.get("key") is None):
            raise ValidationError({"keyHash": ["give keyHash (or, discouraged, key), not both"]})


class ClientCertificateEntry(ResourceScopes):
    subject = config_string(required=True, validate=validate.Length(1, 1000))
    """A certificate's CN (``qlik-reloader``) or its whole DN (``CN=...,O=...``)."""
    name = config_string(allow_none=True, load_default=None)


class AuthSection(OpenSchema):
    """``restServerConfig.auth`` (docs/security.md): off unless ``enable`` is true."""

    enable = ConfigBoolean(load_default=False)
    apiKeys = config_list(config_nested(ApiKeyEntry))
    clientCertificates = config_list(config_nested(ClientCertificateEntry))
    anonymous = config_list(config_string())
    failedAttemptsPerMinute = config_integer(
        validate=validate.Range(1, error="must be 1 or more"), load_default=20
    )


class CorsSection(OpenSchema):
    allowOrigins = config_list(config_string())


def granian_installed() -> bool:
    return importlib.util.find_spec("granian") is not None


def _server_choice(value: str) -> None:
    if value not in ("waitress", "granian"):
        raise ValidationError("must be waitress or granian")
    if value == "granian" and not granian_installed():
        raise ValidationError(
            "granian is not installed: pip install 'butler-py[granian]' "
            "(pip install '.[granian]' in a checkout), or use waitress"
        )


class RestServerConfig(OpenSchema):
    enable = ConfigBoolean(load_default=True)
    server = config_string(validate=_server_choice, load_default="waitress")
    serverHost = config_string(load_default="127.0.0.1")
    serverPort = config_integer(
        validate=validate.Range(0, 65535, error="must be a port number 0-65535 (0 = any free)"),
        load_default=8080,
    )
    backgroundServerPort = config_port(allow_none=True, load_default=None)
    tls = config_nested(TlsSection, load_default=dict)
    threads = config_integer(
        validate=validate.Range(1, 512, error="must be 1-512"), load_default=16
    )
    requestReadTimeout = fields.Float(
        validate=validate.Range(0.5, 600, error="must be 0.5-600 seconds"),
        load_default=10.0,
        error_messages={"invalid": "must be a number of seconds"},
    )
    maxConnectionsPerClient = config_integer(
        validate=validate.Range(1, 100_000, error="must be 1-100000"), load_default=200
    )
    maxWaiting = config_integer(
        validate=validate.Range(1, 1024, error="must be 1-1024"), load_default=100
    )
    rateLimit = config_integer(
        validate=validate.Range(0, error="must be 0 or more"), load_default=0
    )
    maxBodyBytes = config_integer(
        validate=validate.Range(1024, error="must be at least 1024"), load_default=1024 * 1024
    )
    auth = config_nested(AuthSection, load_default=dict)
    cors = config_nested(CorsSection, load_default=dict)


class CertSection(OpenSchema):
    clientCert = config_string(required=True)
    clientCertKey = config_string(required=True)
    clientCertCA = config_string(allow_none=True, load_default=None)


class QrsSection(OpenSchema):
    authentication = config_string(load_default="certificates")
    host = config_string(required=True)
    port = config_port(load_default=4242)
    useSSL = ConfigBoolean(load_default=True)
    headers = config_nested(StaticHeaders, load_default=dict)
    rejectUnauthorized = ConfigBoolean(load_default=False)
    timeout = fields.Float(
        validate=validate.Range(0.1, 600, error="must be 0.1-600 seconds"),
        load_default=30.0,
        error_messages={"invalid": "must be a number of seconds"},
    )


class EngineSection(OpenSchema):
    engineVersion = config_string(allow_none=True, load_default=None)
    host = config_string(required=True)
    port = config_port(load_default=4747)
    useSSL = ConfigBoolean(load_default=True)
    headers = config_nested(StaticHeaders, load_default=dict)
    rejectUnauthorized = ConfigBoolean(load_default=False)


class SchedulerSection(OpenSchema):
    enable = ConfigBoolean(load_default=False)
    configfile = config_string(load_default="config/schedule.yaml")
    calendars = fields.Dict(
        keys=fields.String(),
        allow_none=True,
        load_default=None,
        error_messages={"invalid": "must be a mapping of calendar names to calendars"},
    )
    """Each calendar is read by :func:`butler.schedules.calendars.load_calendars` when the
    scheduler is built (its ``icsFile`` is a path relative to the config file's folder)."""


class KeyValueStoreSection(OpenSchema):
    enable = ConfigBoolean(load_default=True)
    maxKeysPerNamespace = config_integer(
        validate=validate.Range(1, error="must be 1 or more"), load_default=1000
    )
    persistence = config_string(
        validate=validate.OneOf(("sqlite", "memory"), error="must be sqlite or memory"),
        load_default="sqlite",
    )
    dbFile = config_string(load_default="butler-kv.sqlite")


def config_seconds(minimum: float, default: float) -> fields.Float:
    return fields.Float(
        validate=validate.Range(min=minimum, error=f"must be {minimum:g} or more"),
        load_default=default,
        error_messages={"invalid": "must be a number of seconds", "null": "must be a number"},
    )


class RunsSection(OpenSchema):
    """``Butler.runs``: run records and the tracker (docs/runs.md)."""

    dbFile = config_string(load_default="butler-runs.sqlite")
    retentionDays = config_integer(
        validate=validate.Range(1, error="must be 1 or more"), load_default=30
    )
    maxRuns = config_integer(
        validate=validate.Range(1, error="must be 1 or more"), load_default=100_000
    )
    pollIntervalSeconds = config_seconds(0.05, 2.0)
    maxWaitSeconds = config_integer(
        validate=validate.Range(1, error="must be 1 or more"), load_default=21_600
    )
    idempotencyHours = config_seconds(0.001, 24.0)
    clockSkewSeconds = config_seconds(0, 2.0)


class AzureEventGrid(OpenSchema):
    enable = ConfigBoolean(load_default=False)
    clientId = config_string(allow_none=True, load_default=None)
    clientCertFile = config_string(allow_none=True, load_default=None)
    clientKeyFile = config_string(allow_none=True, load_default=None)


class MqttTls(OpenSchema):
    enable = ConfigBoolean(load_default=False)
    ca = config_string(allow_none=True, load_default=None)
    cert = config_string(allow_none=True, load_default=None)
    key = config_string(allow_none=True, load_default=None)
    rejectUnauthorized = ConfigBoolean(load_default=True)


class MqttSection(OpenSchema):
    enable = ConfigBoolean(load_default=False)
    brokerHost = config_string(required=True)
    brokerPort = config_port(load_default=1883)
    username = config_string(allow_none=True, load_default=None)
    password = config_string(allow_none=True, load_default=None)
    tls = config_nested(MqttTls, load_default=dict)
    azureEventGrid = config_nested(AzureEventGrid, load_default=dict)
    subscriptionRootTopic = config_string(load_default="qliksense/#")
    taskStartTopic = config_string(load_default="qliksense/start_task")
    taskRunTopic = config_string(allow_none=True, load_default=None)


class StartTaskFilterSection(OpenSchema):
    enable = ConfigBoolean(load_default=False)
    allowTask = config_nested(TaskAllowList, load_default=dict)

    @validates_schema
    def _task_ids_are_guids(self, data: dict[str, Any], **kwargs: Any) -> None:
        """An allowed id that is no GUID can never match a task: refuse it while the filter
        is on (a switched-off filter's list is not read)."""
        if data["enable"] is not True:
            return
        for index, task_id in enumerate(data["allowTask"].get("taskId") or []):
            if not is_guid(task_id):
                raise ValidationError({"allowTask": {"taskId": {index: ["must be a GUID"]}}})
