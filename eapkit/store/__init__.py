"""Shared state for verifiers: replay counters, lockouts, enrolled credentials.

See :mod:`eapkit.store.base` for the interface and its atomicity guarantees.  Backends:
:class:`MemoryStore` (tests), :class:`SqliteStore` (the embedded default) and
``RedisStore`` (a cluster; :mod:`eapkit.store.redis_store`, needs the ``redis`` extra).
"""

from __future__ import annotations

from eapkit.errors import ConfigError
from eapkit.store.base import MAX_COUNTER, Store, StoreUnavailable
from eapkit.store.memory import MemoryStore
from eapkit.store.records import SealedRecords
from eapkit.store.sealing import Sealer, SealError
from eapkit.store.sqlite import SqliteStore

__all__ = [
    "MAX_COUNTER",
    "MemoryStore",
    "SealError",
    "SealedRecords",
    "Sealer",
    "SqliteStore",
    "Store",
    "StoreUnavailable",
    "open_store",
]


def open_store(url: str) -> Store:
    """A store from a URL: ``memory:``, ``sqlite:///abs/path.db`` (or ``sqlite:rel.db``),
    ``redis://host:port/db``, ``rediss://...``, ``unix:///path/redis.sock``."""
    if url == "memory:":
        return MemoryStore()
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:")
        path = path.removeprefix("//") if path.startswith("///") else path
        if not path:
            raise ConfigError("sqlite store URL needs a path")
        return SqliteStore(path)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from eapkit.store.redis_store import RedisStore

        return RedisStore(url)
    raise ConfigError("store URL must start with memory:, sqlite:, redis://, rediss:// or unix://")
