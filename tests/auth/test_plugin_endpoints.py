"""Auth and audit are the core's: a plugin route gets both without a line of its own."""

from __future__ import annotations

from typing import Any

import requests

from butler.app import create_app
from butler.audit import AuditFilter
from butler.auth.keys import hash_key, new_key
from butler.config import Config, EnableKey
from butler.endpoints import ApiRequest, Endpoint
from butler.hookspecs import hookimpl
from butler.lifecycle import build_services
from butler.plugins import config_contract, get_plugin_manager
from tests.conftest import BASE_CONFIG, deep_merge


class Greeter:
    """A plugin that knows nothing of keys, scopes or audit records."""

    @hookimpl
    def butler_enable_keys(self) -> list[EnableKey]:
        return [EnableKey("greeting")]

    @hookimpl
    def butler_endpoints(self, config: Any, services: Any) -> list[Endpoint]:
        def greet(call: ApiRequest) -> Any:
            return {"hello": call.path["name"]}, 201

        return [
            Endpoint(
                enable_key="greeting",
                method="PUT",
                rule="/v4/greeting/<name>",
                view=greet,
                summary="Greet",
                tag="Greeting",
            )
        ]


def test_a_plugin_route_gets_auth_and_audit(tmp_path, live_server):
    key, reader = new_key(), new_key()
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(Greeter(), "greeter")
    settings = deep_merge(
        BASE_CONFIG,
        {
            "restServerEndpointsEnable": {"greeting": True},
            "restServerConfig": {
                "auth": {
                    "enable": True,
                    "apiKeys": [
                        {"name": "greeter", "keyHash": hash_key(key), "scopes": ["greeting"]},
                        {"name": "reader", "keyHash": hash_key(reader), "scopes": ["read"]},
                    ],
                }
            },
            "audit": {"enable": True, "dbFile": str(tmp_path / "audit.sqlite")},
        },
    )
    config = Config.from_mapping(settings, tmp_path, contract=config_contract(pm))
    services = build_services(config, pm)
    services.start()
    try:
        url = live_server(create_app(config, services, pm))
        refused = requests.put(f"{url}/v4/greeting/ann", timeout=10)
        assert refused.status_code == 401
        answer = requests.put(f"{url}/v4/greeting/ann", headers={"X-Api-Key": key}, timeout=10)
        assert answer.status_code == 201
        assert services.audit is not None
        forbidden = requests.put(
            f"{url}/v4/greeting/bob", headers={"X-Api-Key": reader}, timeout=10
        )
        assert forbidden.status_code == 403
        records, _ = services.audit.query(AuditFilter(), limit=10)
        assert [(r.caller, r.route, dict(r.params), r.status) for r in records] == [
            ("reader", "/v4/greeting/{name}", {"name": "bob"}, 403),
            ("greeter", "/v4/greeting/{name}", {"name": "ann"}, 201),
        ]
    finally:
        services.stop()
