"""Marshmallow schemas for the sections of the original Butler config that we use.

Each schema validates one section and tolerates keys it does not know (the original's
config carries many sections for features outside the REST API). Messages are short
phrases; :mod:`butler.config` prefixes them with the key path and the offending value.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from butler.fields import coerce_bool


class ConfigBoolean(fields.Field):
    """YAML booleans, plus ``"true"``/``"false"`` texts that hand-edited files contain."""

    default_error_messages = {"required": "is required", "null": "must be true or false"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        try:
            return coerce_bool(value)
        except ValidationError as exc:
            raise ValidationError("must be true or false") from exc


def _str(**kwargs: Any) -> fields.String:
    return fields.String(
        error_messages={
            "invalid": "must be a string",
            "required": "is required",
            "null": "must be a string",
        },
        **kwargs,
    )


def _int(**kwargs: Any) -> fields.Integer:
    return fields.Integer(
        strict=False,
        error_messages={
            "invalid": "must be an integer",
            "required": "is required",
            "null": "must be an integer",
        },
        **kwargs,
    )


def _port(**kwargs: Any) -> fields.Integer:
    return _int(validate=validate.Range(1, 65535, error="must be a port number 1-65535"), **kwargs)


def _list(inner: fields.Field, **kwargs: Any) -> fields.List:
    """A list where ``null`` means empty, as in the original's template."""
    return fields.List(
        inner,
        allow_none=True,
        load_default=None,
        error_messages={"invalid": "must be a list (or null)"},
        **kwargs,
    )


def _nested(schema: type[Schema], **kwargs: Any) -> fields.Nested:
    return fields.Nested(
        schema,
        error_messages={
            "type": "must be a mapping",
            "required": "is required",
            "null": "must be a mapping",
        },
        **kwargs,
    )


class _Open(Schema):
    class Meta:
        unknown = INCLUDE


class NameValue(_Open):
    name = _str(required=True)
    value = _str(required=True)


class StaticHeaders(_Open):
    static = _list(_nested(NameValue))


class TlsSection(_Open):
    enable = ConfigBoolean(load_default=False)
    cert = _str(allow_none=True, load_default=None)
    key = _str(allow_none=True, load_default=None)
    ca = _str(allow_none=True, load_default=None)


class RestServerConfig(_Open):
    enable = ConfigBoolean(load_default=True)
    serverHost = _str(load_default="127.0.0.1")
    serverPort = _int(
        validate=validate.Range(0, 65535, error="must be a port number 0-65535 (0 = any free)"),
        load_default=8080,
    )
    backgroundServerPort = _port(allow_none=True, load_default=None)
    tls = _nested(TlsSection, load_default=dict)
    threads = _int(validate=validate.Range(1, 512, error="must be 1-512"), load_default=16)
    rateLimit = _int(validate=validate.Range(0, error="must be 0 or more"), load_default=0)
    maxBodyBytes = _int(
        validate=validate.Range(1024, error="must be at least 1024"), load_default=1024 * 1024
    )


class CertSection(_Open):
    clientCert = _str(required=True)
    clientCertKey = _str(required=True)
    clientCertCA = _str(allow_none=True, load_default=None)


class QrsSection(_Open):
    authentication = _str(load_default="certificates")
    host = _str(required=True)
    port = _port(load_default=4242)
    useSSL = ConfigBoolean(load_default=True)
    headers = _nested(StaticHeaders, load_default=dict)
    rejectUnauthorized = ConfigBoolean(load_default=False)
    timeout = fields.Float(
        validate=validate.Range(0.1, 600, error="must be 0.1-600 seconds"),
        load_default=30.0,
        error_messages={"invalid": "must be a number of seconds"},
    )


class EngineSection(_Open):
    engineVersion = _str(allow_none=True, load_default=None)
    host = _str(required=True)
    port = _port(load_default=4747)
    useSSL = ConfigBoolean(load_default=True)
    headers = _nested(StaticHeaders, load_default=dict)
    rejectUnauthorized = ConfigBoolean(load_default=False)


class SchedulerSection(_Open):
    enable = ConfigBoolean(load_default=False)
    configfile = _str(load_default="config/schedule.yaml")


class KeyValueStoreSection(_Open):
    enable = ConfigBoolean(load_default=True)
    maxKeysPerNamespace = _int(
        validate=validate.Range(1, error="must be 1 or more"), load_default=1000
    )
    persistence = _str(
        validate=validate.OneOf(("sqlite", "memory"), error="must be sqlite or memory"),
        load_default="sqlite",
    )
    dbFile = _str(load_default="butler-kv.sqlite")


class AzureEventGrid(_Open):
    enable = ConfigBoolean(load_default=False)
    clientId = _str(allow_none=True, load_default=None)
    clientCertFile = _str(allow_none=True, load_default=None)
    clientKeyFile = _str(allow_none=True, load_default=None)


class MqttTls(_Open):
    enable = ConfigBoolean(load_default=False)
    ca = _str(allow_none=True, load_default=None)
    cert = _str(allow_none=True, load_default=None)
    key = _str(allow_none=True, load_default=None)
    rejectUnauthorized = ConfigBoolean(load_default=True)


class MqttSection(_Open):
    enable = ConfigBoolean(load_default=False)
    brokerHost = _str(required=True)
    brokerPort = _port(load_default=1883)
    username = _str(allow_none=True, load_default=None)
    password = _str(allow_none=True, load_default=None)
    tls = _nested(MqttTls, load_default=dict)
    azureEventGrid = _nested(AzureEventGrid, load_default=dict)
    subscriptionRootTopic = _str(load_default="qliksense/#")
    taskStartTopic = _str(load_default="qliksense/start_task")


class AllowTask(_Open):
    taskId = _list(_str())
    tag = _list(_str())
    customProperty = _list(_nested(NameValue))


class StartTaskFilterSection(_Open):
    enable = ConfigBoolean(load_default=False)
    allowTask = _nested(AllowTask, load_default=dict)


class DirectoryPair(_Open):
    fromDirectory = _str(required=True)
    toDirectory = _str(required=True)


class NewRelicAccount(_Open):
    accountName = _str(required=True)
    insertApiKey = _str(required=True)
    accountId = _str(required=True)

    def load(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("accountId"), int):
            data = {**data, "accountId": str(data["accountId"])}
        return super().load(data, **kwargs)


class NewRelicDestination(_Open):
    destinationAccount = _list(_str())
    url = _str(required=True)
    header = _list(_nested(NameValue))
    attribute = _nested(StaticHeaders, load_default=dict)


class SlackRestMessage(_Open):
    webhookURL = _str(allow_none=True, load_default=None)
