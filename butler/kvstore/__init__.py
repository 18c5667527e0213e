"""The key-value store: namespaces of string values with optional time-to-live."""

from butler.kvstore.store import KvStore
from butler.kvstore.values import (
    MAX_TTL_MS,
    KvEntry,
    KvStoreError,
    StorageError,
    parse_ttl,
    value_text,
)

__all__ = [
    "MAX_TTL_MS",
    "KvEntry",
    "KvStore",
    "KvStoreError",
    "StorageError",
    "parse_ttl",
    "value_text",
]
