"""What a resumable TLS session proved, kept by the server (RFC 5216 §2.1.2, RFC 9190
§2.1.2/§5.7, RFC 5281 §7.5 / [MS-PEAP] §3.1.5.10 "fast reconnect").

A resumed handshake proves only that the peer holds the keys of an earlier session; it
says nothing about who authenticated in that session's phase 2.  So when a login
succeeds, the server remembers, under each session id and ticket the handshake issued
(:mod:`eapkit.tlsio.hello`), a :class:`ResumeRecord`: the user, the factors proved, the
method's attributes and whether phase 2 ran and succeeded.  A resumed TTLS/PEAP session
skips phase 2 only when such a record exists for the id it resumed; the outcome then
carries the original identity and factors, so the same authorization decision runs
again (a deleted user is refused on resume).

Records expire after the session lifetime (OpenSSL expires the session itself after
the same time) and the cache is bounded.  :class:`MemoryResumeRecords` serves one
process; :class:`StoreResumeRecords` keeps them in an :class:`eapkit.store.Store` so
that every worker and node sees them (the TLS session itself stays in the OpenSSL
cache of the process that made it: see docs/interop.md).  Time is an argument.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from eapkit.errors import DecodeError
from eapkit.methods.base import Factor
from eapkit.store.base import Store, StoreUnavailable

__all__ = [
    "MemoryResumeRecords",
    "ResumeRecord",
    "ResumeRecords",
    "StoreResumeRecords",
    "decode_record",
    "encode_record",
]


@dataclass(frozen=True, slots=True)
class ResumeRecord:
    """What the login that created a session proved."""

    identity: str
    factors: frozenset[Factor] = frozenset()
    attributes: dict[str, str] = field(default_factory=dict)
    phase2: bool = False
    """Phase 2 ran and succeeded for ``identity`` (TTLS/PEAP; EAP-TLS has none)."""


def encode_record(record: ResumeRecord) -> bytes:
    """The record as stored (JSON, sorted: the same record gives the same bytes)."""
    return json.dumps(
        {
            "i": record.identity,
            "f": sorted(f.value for f in record.factors),
            "a": record.attributes,
            "p": record.phase2,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def decode_record(data: bytes) -> ResumeRecord:
    """The inverse of :func:`encode_record`; raises only DecodeError."""
    try:
        raw = json.loads(data)
        identity, factors, attrs, phase2 = raw["i"], raw["f"], raw["a"], raw["p"]
        if not isinstance(identity, str) or not isinstance(phase2, bool):
            raise TypeError
        if not isinstance(attrs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()
        ):
            raise TypeError
        return ResumeRecord(identity, frozenset(Factor(f) for f in factors), attrs, phase2)
    except (ValueError, TypeError, KeyError, RecursionError):
        raise DecodeError("not a resumption record", expected="a resumption record") from None


class ResumeRecords(Protocol):
    """Where a server keeps its :class:`ResumeRecord`s, keyed by session id / ticket."""

    lifetime: int

    def remember(self, keys: list[bytes], record: ResumeRecord, now: float) -> None: ...

    def recall(self, key: bytes, now: float) -> ResumeRecord | None: ...


class MemoryResumeRecords:
    """One process's records: bounded (oldest out first), expiring after ``lifetime``."""

    def __init__(self, lifetime: int, max_entries: int = 20_000) -> None:
        self.lifetime = lifetime
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[float, ResumeRecord]] = OrderedDict()

    def remember(self, keys: list[bytes], record: ResumeRecord, now: float) -> None:
        if self.lifetime <= 0:
            return
        for key in keys:
            self._entries.pop(key, None)
            self._entries[key] = (now + self.lifetime, record)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def recall(self, key: bytes, now: float) -> ResumeRecord | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, record = entry
        if now >= expires:
            del self._entries[key]
            return None
        return record

    def __len__(self) -> int:
        return len(self._entries)


class StoreResumeRecords:
    """Records in a :class:`~eapkit.store.Store` (memory, SQLite, Redis), shared by every
    worker and node on it; the store expires them.  A store failure or a record that does
    not decode recalls nothing: phase 2 runs (fails closed)."""

    def __init__(self, store: Store, lifetime: int, prefix: str = "tls:resume:") -> None:
        self.store = store
        self.lifetime = lifetime
        self.prefix = prefix

    def remember(self, keys: list[bytes], record: ResumeRecord, now: float) -> None:
        if self.lifetime <= 0:
            return
        data = encode_record(record)
        for key in keys:
            try:
                self.store.put_once(self.prefix + key.hex(), data, self.lifetime, now)
            except StoreUnavailable:
                return

    def recall(self, key: bytes, now: float) -> ResumeRecord | None:
        try:
            data = self.store.peek(self.prefix + key.hex(), now)
        except StoreUnavailable:
            return None
        if data is None:
            return None
        try:
            return decode_record(data)
        except DecodeError:
            return None
