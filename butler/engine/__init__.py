"""Client for the Qlik Sense Engine API (QIX): JSON-RPC 2.0 over a TLS WebSocket.

Split by job so each part can be read on its own: :mod:`~butler.engine.transport` (the
WebSocket driven in the caller's thread, and the TLS context), :mod:`~butler.engine.session`
(JSON-RPC request/answer bookkeeping and Engine error mapping), :mod:`~butler.engine.dump`
(what an app dump reads, and in which order) and :mod:`~butler.engine.client` (the
operations Butler's endpoints call, with reloads in background threads). The names plugins
and tests use are re-exported here, so callers keep importing from ``butler.engine``.
"""

from butler.engine.client import EngineClient, ReloadOutcome
from butler.engine.dump import DUMP_KEYS
from butler.engine.session import EngineError

__all__ = ["DUMP_KEYS", "EngineClient", "EngineError", "ReloadOutcome"]
