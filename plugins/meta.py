"""Meta endpoints: liveness ping and the list of enabled endpoints."""

from __future__ import annotations

from typing import Any

from butler import __version__
from butler.endpoints import ApiRequest, Endpoint
from butler.hookspecs import hookimpl

TAG = "Butler"


@hookimpl
def butler_endpoints(config: Any, services: Any) -> list[Endpoint]:
    # Leaf names without group prefix, as the original lists them; computed once.
    enabled = [key.rsplit(".", 1)[-1] for key in config.enabled_endpoint_keys]

    def ping(call: ApiRequest) -> Any:
        return {"response": "Butler reporting for duty", "butlerVersion": __version__}

    def endpoints_enabled(call: ApiRequest) -> Any:
        return enabled

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
    ]
