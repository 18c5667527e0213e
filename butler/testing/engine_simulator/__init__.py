"""A Qlik Sense Engine (QIX) simulator: a real TLS WebSocket server speaking JSON-RPC 2.0.

Test and demo infrastructure, never used on the production path. It demands a client
certificate signed by the test CA (as the real Engine on port 4747 does), sends the
``OnConnected`` notification a real Engine sends, keeps QIX handles per session, answers the
calls Butler makes for listing, dumping and reloading apps, and records every call so tests
can assert on what went over the wire. Split by job: :mod:`.server` (lifecycle, test
controls, records) and :mod:`.qix` (per-session handles and the QIX method handlers).

Usage::

    with EngineSimulator(certs) as engine:
        client = EngineClient("127.0.0.1", engine.port, ...)
"""

from butler.testing.engine_simulator.qix import EngineCall, QixError
from butler.testing.engine_simulator.server import EngineConnection, EngineSimulator, ServerCerts

__all__ = ["EngineCall", "EngineConnection", "EngineSimulator", "QixError", "ServerCerts"]
