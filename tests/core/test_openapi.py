import pytest
import requests
from marshmallow import Schema, fields

from butler.app import create_app
from butler.config import endpoint_enable_map
from butler.endpoints import Endpoint, Reply
from butler.lifecycle import build_services
from butler.openapi import build_openapi, openapi_path
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
        if not r.rule.startswith("/documentation") and r.endpoint != "static"
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


# --- answers: the Reply contract and what the core adds --------------------------------


class Thing(Schema):
    name = fields.String(required=True)


def one_operation(ep, **options):
    document = build_openapi([ep], **options)
    return document, document["paths"][openapi_path(ep.rule)][ep.method.lower()]


def make_endpoint(**overrides):
    options = {
        "enable_key": "x",
        "method": "GET",
        "rule": "/v4/things",
        "view": lambda call: None,
        "summary": "s",
        "tag": "t",
        **overrides,
    }
    return Endpoint(**options)


def test_plain_descriptions_still_document_an_answer_without_a_body():
    _, op = one_operation(make_endpoint(responses={200: "Things", 404: "No things"}))
    assert op["responses"]["200"] == {"description": "Things"}
    error = op["responses"]["404"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/Error"}
    assert error["example"] == {"statusCode": 404, "error": "Not Found", "message": "No things"}


def test_reply_schemas_become_components_lists_and_one_of():
    example = {"name": "a"}
    _, op = one_operation(
        make_endpoint(
            responses={
                200: Reply("One or all", (Thing, Thing(many=True)), example=example),
                201: Reply("Names", fields.List(fields.String()), example=["a"]),
                202: Reply("Text", fields.String(), example="a", media_type="text/plain"),
            }
        )
    )
    ref = {"$ref": "#/components/schemas/Thing"}
    one_or_all = op["responses"]["200"]["content"]["application/json"]
    assert one_or_all == {
        "schema": {"oneOf": [ref, {"type": "array", "items": ref}]},
        "example": example,
    }
    names = op["responses"]["201"]["content"]["application/json"]["schema"]
    assert names == {"type": "array", "items": {"type": "string"}}
    assert op["responses"]["202"]["content"]["text/plain"]["schema"] == {"type": "string"}


def test_the_error_component_is_declared_once_with_its_fields():
    document, _ = one_operation(make_endpoint(responses={200: "ok", 409: "Taken"}))
    error = document["components"]["schemas"]["Error"]
    assert sorted(error["required"]) == ["error", "message", "statusCode"]
    assert {name: prop["type"] for name, prop in error["properties"].items()} == {
        "statusCode": "integer",
        "error": "string",
        "message": "string",
        "code": "string",
    }


def test_core_statuses_are_added_where_the_core_answers_them():
    _, plain = one_operation(make_endpoint(responses={200: "ok"}))
    assert set(plain["responses"]) == {"200", "400", "413"}
    _, busy = one_operation(
        make_endpoint(method="PUT", rule="/v4/things/<thingId>", body_schema=Thing, waits=True)
    )
    assert set(busy["responses"]) == {"200", "400", "404", "413", "415", "429"}
    _, limited = one_operation(make_endpoint(responses={200: "ok"}), rate_limited=True)
    assert "rateLimit" in limited["responses"]["429"]["description"]


def test_a_plugin_description_wins_over_the_core_one():
    _, op = one_operation(make_endpoint(responses={200: "ok", 400: "Bad thing"}))
    assert op["responses"]["400"]["description"] == "Bad thing"


@pytest.mark.parametrize(
    ("status", "reply"),
    [(204, Reply("No", Thing)), (404, Reply("No", example={})), (503, Reply("No", example={}))],
)
def test_a_body_cannot_be_promised_where_there_is_none(status, reply):
    with pytest.raises(ValueError, match=str(status)):
        make_endpoint(responses={status: reply})


def test_an_error_body_the_view_returns_itself_is_documented_with_its_schema():
    _, op = one_operation(make_endpoint(responses={200: "ok", 503: Reply("Not ready", Thing)}))
    schema = op["responses"]["503"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Thing"}


def full_document(make_config, host="127.0.0.1"):
    config = make_config(
        {
            **QLIK_PLACEHOLDERS,
            "restServerConfig": {"serverHost": host},
            "restServerEndpointsEnable": endpoint_enable_map(True),
        }
    )
    return create_app(config).test_client().get("/documentation/json").json


def test_the_server_url_is_relative_whatever_host_is_bound(make_config):
    assert full_document(make_config, host="0.0.0.0")["servers"] == [{"url": "/"}]


def test_every_path_parameter_has_an_example(make_config):
    missing = [
        f"{method.upper()} {path} {param['name']}"
        for path, ops in full_document(make_config)["paths"].items()
        for method, op in ops.items()
        for param in op.get("parameters", [])
        if param.get("in") == "path" and "example" not in param
    ]
    assert missing == []


def test_a_204_answer_has_no_content_type(make_config, live_server):
    config = make_config(
        {
            "restServerEndpointsEnable": {"keyValueStore": True},
            "keyValueStore": {"persistence": "memory"},
        }
    )
    services = build_services(config)
    url = live_server(create_app(config, services))
    requests.post(f"{url}/v4/keyvalues/ns", json={"key": "k", "value": "v"}, timeout=5)
    deleted = requests.delete(f"{url}/v4/keyvalues/ns/k", timeout=5)
    services.stop()
    assert deleted.status_code == 204
    assert "Content-Type" not in deleted.headers
    assert deleted.content == b""
