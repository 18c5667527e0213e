import requests

from butler.app import create_app
from butler.config import endpoint_enable_map
from butler.openapi import openapi_path
from tests.conftest import QLIK_PLACEHOLDERS


def documented_operations(document):
    return {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}


def test_document_lists_exactly_the_enabled_routes(make_config, live_server):
    config = make_config(
        {"restServerEndpointsEnable": {"butlerping": True, "base16ToBase62": True}}
    )
    url = live_server(create_app(config))
    document = requests.get(f"{url}/documentation/json", timeout=5).json()
    assert document["openapi"].startswith("3.")
    assert documented_operations(document) == {
        ("GET", "/v4/butlerping"),
        ("GET", "/v4/base16tobase62"),
    }
    params = document["paths"]["/v4/base16tobase62"]["get"]["parameters"]
    assert params[0]["name"] == "base16" and params[0]["required"] is True


def test_all_routes_documented_when_all_enabled(make_config):
    app = create_app(
        make_config({**QLIK_PLACEHOLDERS, "restServerEndpointsEnable": endpoint_enable_map(True)})
    )
    document = app.test_client().get("/documentation/json").json
    rules = {
        (rule.methods - {"HEAD", "OPTIONS"}).pop(): openapi_path(rule.rule)
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith("/documentation") and rule.endpoint != "static"
    }
    served = {
        (next(iter(r.methods - {"HEAD", "OPTIONS"})), openapi_path(r.rule))
        for r in app.url_map.iter_rules()
        if r.rule.startswith("/v4/")
    }
    assert rules
    assert documented_operations(document) == served


def test_swagger_ui_is_served_locally(make_config, live_server):
    url = live_server(create_app(make_config()))
    page = requests.get(f"{url}/documentation", timeout=5)
    assert page.status_code == 200
    assert "/documentation/static/swagger-ui-bundle.js" in page.text
    assert "http" not in page.text.split("<body>")[1].replace("/documentation", "")
    bundle = requests.get(f"{url}/documentation/static/swagger-ui-bundle.js", timeout=5)
    assert bundle.status_code == 200
    assert len(bundle.content) > 100_000
