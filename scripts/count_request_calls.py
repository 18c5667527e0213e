"""Python function calls per request: a deterministic yardstick for per-request work.

Timings on a shared 2-core machine move by 10 % from run to run; the number of Python and
C function calls a request makes does not. This drives Butler's app in-process (Flask's
test client, no sockets) for ping, base conversion and a key-value GET, with metrics off and
on, next to a bare Flask app answering the same JSON, and prints a Markdown table. Two
checkouts compared with the same command show whether a change added work to the hot path.

    python scripts/count_request_calls.py [--requests 200]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask

from butler.app import create_app
from butler.config import Config
from butler.lifecycle import build_services

PATHS = {
    "GET /v4/butlerping": "/v4/butlerping",
    "GET /v4/base62tobase16": "/v4/base62tobase16?base62=6DMW88LpSok9Z7P7hUK0wv7bF",
    "GET /v4/keyvalues/{namespace}": "/v4/keyvalues/bench?key=k",
}


def bare_flask() -> Flask:
    app = Flask("bare")

    @app.get("/v4/butlerping")
    def ping() -> Any:
        return {"response": "Butler reporting for duty", "butlerVersion": "0"}

    return app


def calls_per_request(app: Flask, path: str, requests: int) -> float:
    client = app.test_client()
    for _ in range(50):
        client.get(path)
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        for _ in range(requests):
            client.get(path)
    finally:
        sys.setprofile(None)
    return count / requests


def butler_config(folder: str, metrics: bool) -> Config:
    return Config.from_mapping(
        {
            "restServerEndpointsEnable": {
                "butlerping": True,
                "base62ToBase16": True,
                "keyValueStore": True,
                "health": False,
                "metrics": metrics,
            },
            "keyValueStore": {"persistence": "memory"},
        },
        Path(folder),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    print("| request | app | calls/request |")
    print("|---|---|---:|")
    bare = calls_per_request(bare_flask(), "/v4/butlerping", args.requests)
    print(f"| GET /v4/butlerping | bare Flask (yardstick) | {bare:,.0f} |")
    with tempfile.TemporaryDirectory() as folder:
        for metrics in (False, True):
            config = butler_config(folder, metrics)
            services = build_services(config)
            try:
                app = create_app(config, services)
                app.test_client().post("/v4/keyvalues/bench", json={"key": "k", "value": "v"})
                label = f"Butler, metrics {'on' if metrics else 'off'}"
                for path_label, path in PATHS.items():
                    calls = calls_per_request(app, path, args.requests)
                    print(f"| {path_label} | {label} | {calls:,.0f} |")
            finally:
                services.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
