import requests

from butler.app import create_app


def test_ping_over_real_socket(make_config, live_server):
    config = make_config({"restServerEndpointsEnable": {"butlerping": True}})
    url = live_server(create_app(config))
    response = requests.get(f"{url}/v4/butlerping", timeout=5)
    assert response.status_code == 200
    assert response.json()["response"] == "Butler reporting for duty"
