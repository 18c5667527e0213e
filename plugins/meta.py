"""Meta endpoints: liveness ping, the enabled endpoints, and the loaded plugins."""

from __future__ import annotations

from typing import Any

from flask import current_app

from butler import __version__
from butler.app import loaded_plugins
from butler.config import Config, EnableKey
from butler.endpoints import ApiRequest, Endpoint
from butler.hookspecs import hookimpl
from butler.services import Services

TAG = "Butler"


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
            responses={200: "Butler is alive"},
        ),
        Endpoint(
            enable_key="apiListEnabledEndpoints",
            method="GET",
            rule="/v4/configfile/endpointsenabled",
            view=endpoints_enabled,
            summary="Get an array of all enabled API endpoints",
            description="Names are the leaf keys of Butler.restServerEndpointsEnable.",
            tag=TAG,
            responses={200: "Array of enabled endpoint names"},
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
            responses={200: "Array of plugins"},
        ),
    ]
