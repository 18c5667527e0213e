import inspect

import pluggy
import pytest

from butler import hookspecs
from butler.app import create_app, mounted_endpoints
from butler.config import default_contract, endpoint_enable_map
from butler.plugins import BUILTIN_PLUGINS, get_plugin_manager
from tests.conftest import QLIK_PLACEHOLDERS


def hookspec_functions():
    return [
        fn
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("butler_")
    ]


def test_there_are_hookspecs():
    assert hookspec_functions()


@pytest.mark.parametrize("hook", hookspec_functions(), ids=lambda f: f.__name__)
def test_every_hookspec_is_documented(hook):
    doc = inspect.getdoc(hook)
    assert doc, f"hookspec {hook.__name__} has no docstring"
    assert len(doc.split()) >= 10, f"hookspec {hook.__name__} docstring is too thin"


def test_builtin_plugins_are_registered():
    pm = get_plugin_manager(load_entry_points=False)
    names = {pm.get_name(p) for p in pm.get_plugins()}
    assert set(BUILTIN_PLUGINS) <= names


def test_every_endpoint_key_is_served_by_some_plugin(make_config):
    config = make_config(
        {**QLIK_PLACEHOLDERS, "restServerEndpointsEnable": endpoint_enable_map(True)}
    )
    served = {ep.enable_key for ep in mounted_endpoints(create_app(config))}
    assert served == set(default_contract().enable_keys)


def test_disabled_keys_mount_nothing(make_config):
    app = create_app(make_config())
    assert mounted_endpoints(app) == []


def test_third_party_entry_point_plugin_is_loaded(monkeypatch, make_config):
    from butler.endpoints import Endpoint
    from butler.hookspecs import hookimpl

    class ThirdParty:
        @hookimpl
        def butler_endpoints(self, config, services):
            return [Endpoint("butlerping", "GET", "/v4/thirdparty", lambda c: {"ok": 1}, "x", "X")]

    def fake_load(self, group, name=None):
        assert group == "butler"
        self.register(ThirdParty(), "third-party")
        return 1

    monkeypatch.setattr(pluggy.PluginManager, "load_setuptools_entrypoints", fake_load)
    config = make_config({"restServerEndpointsEnable": {"butlerping": True}})
    client = create_app(config).test_client()
    assert client.get("/v4/thirdparty").json == {"ok": 1}


def test_two_plugins_claiming_one_route_fail_loudly(make_config):
    from butler.endpoints import Endpoint
    from butler.hookspecs import hookimpl

    class Clash:
        @hookimpl
        def butler_endpoints(self, config, services):
            return [Endpoint("butlerping", "GET", "/v4/butlerping", lambda c: {}, "x", "X")]

    pm = get_plugin_manager(load_entry_points=False)
    pm.register(Clash(), "clash")
    with pytest.raises(RuntimeError, match="/v4/butlerping"):
        create_app(make_config(), plugin_manager=pm)
