"""Meta endpoints: liveness ping, the enabled endpoints, and the loaded plugins."""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import Schema, fields

from butler import __version__
from butler.app import loaded_plugins
from butler.config import Config, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.hookspecs import hookimpl
from butler.services import Services

TAG = "Butler"


class Ping(Schema):
    response = fields.String(required=True)
    butlerVersion = fields.String(required=True)


class PluginEntry(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    builtin = fields.Boolean(required=True)
    hooks = fields.List(fields.String(), required=True)
    enableKeys = fields.List(fields.String(), required=True)
    endpoints = fields.List(fields.String(), required=True, metadata={"description": "METHOD rule"})


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey("apiListEnabledEndpoints"), EnableKey("butlerping"), EnableKey("plugins")]


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    # Leaf names without group prefix, as the original lists them; computed once.
    enabled = [key.rsplit(".", 1)[-1] for key in config.enabled_endpoint_keys]

    def ping(call: ApiRequest) -> Any:
        return {"response": "Butler reporting for duty", "butlerVersion": __version__}

    def endpoints_enabled(call: ApiRequest) -> Any:
        return enabled

    def plugins(call: ApiRequest) -> Any:
        return [plugin.to_json() for plugin in loaded_plugins(current_app)]

    return [
        Endpoint(
            enable_key="butlerping",
            method="GET",
            rule="/v4/butlerping",
            view=ping,
            summary="Tests if Butler is alive and responding",
            tag=TAG,
            responses={
                200: Reply(
                    "Butler is alive",
                    Ping,
                    example={"response": "Butler reporting for duty", "butlerVersion": __version__},
                )
            },
        ),
        Endpoint(
            enable_key="apiListEnabledEndpoints",
            method="GET",
            rule="/v4/configfile/endpointsenabled",
            view=endpoints_enabled,
            summary="Get an array of all enabled API endpoints",
            description="Names are the leaf keys of Butler.restServerEndpointsEnable.",
            tag=TAG,
            responses={
                200: Reply(
                    "Array of enabled endpoint names",
                    fields.List(fields.String()),
                    example=["butlerping", "keyValueStore", "senseStartTask"],
                )
            },
        ),
        Endpoint(
            enable_key="plugins",
            method="GET",
            rule="/v4/plugins",
            view=plugins,
            summary="List the loaded plugins, their versions and the endpoints each serves",
            description=(
                "Built-in plugins first. Each entry: name, version, builtin, the hooks it "
                "implements, the enable keys it declares and the endpoints it serves in this "
                "config (method and path)."
            ),
            tag=TAG,
            responses={
                200: Reply(
                    "Array of plugins",
                    PluginEntry(many=True),
                    example=[
                        {
                            "name": "butler_plugins.meta",
                            "version": __version__,
                            "builtin": True,
                            "hooks": ["butler_enable_keys", "butler_endpoints"],
                            "enableKeys": ["apiListEnabledEndpoints", "butlerping", "plugins"],
                            "endpoints": ["GET /v4/butlerping", "GET /v4/plugins"],
                        }
                    ],
                )
            },
        ),
    ]
