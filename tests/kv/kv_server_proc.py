"""Serve the key-value API on a free loopback port, for the kill -9 durability test.

Usage: ``python -m tests.kv.kv_server_proc <sqlite file>``. Prints ``PORT <n>`` once the
socket is bound, then serves until killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from butler.app import create_app
from butler.config import Config
from butler.kvstore import KvStore
from butler.server import build_server
from butler.services import Services


def main(db_file: str) -> None:
    path = Path(db_file)
    config = Config.from_mapping(
        {"restServerEndpointsEnable": {"keyValueStore": True}}, path.parent
    )
    store = KvStore(path, max_keys_per_namespace=100_000)
    app = create_app(config, Services(config=config, kv_store=store))
    server = build_server(app, "127.0.0.1", 0)
    print(f"PORT {server.url.rsplit(':', 1)[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
