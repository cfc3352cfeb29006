"""Sealing-key rotation: re-seal every record under the newest key (``eapkit store rekey``).

The rotation (DESIGN.md, "State that must survive and be shared"; docs/operating.md):

1. put a new key first in the key list (``k2:...,k1:...``): new records are sealed
   with it, old ones still open with ``k1``;
2. run :func:`rekey`: every record whose sealed secret names another key id is opened
   and sealed again under the current key (:meth:`Sealer.reseal
   <eapkit.store.sealing.Sealer.reseal>`, AES-GCM with the record's key as associated
   data, as before);
3. :func:`key_census` (``rekey --verify``) says how many records each key id still
   seals; when only the current one is left, drop the old key from the list.

**Safe while the server serves.**  Each record is written back with a compare-and-swap
(``swap(key, old, new)``: replaced only if it still holds the bytes that were
re-sealed), so a record rewritten meanwhile (a re-enrollment, a bypass revoked) is
never overwritten with the stale copy: it is read again and re-sealed (or is already
current).  Replay counters, failure tallies and single-use tokens are other key
families the rotation never writes, so a concurrent verifier's counter update cannot
be lost.

**Resumable.**  Records are walked in key order, ``batch`` at a time; after each batch
the last key is stored under :data:`CURSOR`.  An interrupted run (Ctrl-C, a crash)
starts again after the cursor; re-sealing is idempotent anyway (a current record is
left alone), so the worst an interruption costs is one batch read twice.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from eapkit.store.sealing import Sealer, SealError

__all__ = ["CURSOR", "RekeyReport", "SwapStore", "key_census", "rekey"]

CURSOR = "rekey:cursor"
_RETRIES = 8  # a record rewritten this often during one rotation step is reported


class SwapStore(Protocol):
    """The record operations a rotation needs (SQLite, Redis and memory stores)."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> bool: ...

    def record_keys(self, after: str = "", limit: int | None = None) -> list[str]: ...

    def swap(self, key: str, old: bytes, new: bytes) -> bool: ...


@dataclass
class RekeyReport:
    """What one run did: ``resealed`` records, ``current`` ones left alone, ``raced``
    swaps lost to a concurrent write (and retried), ``plain`` records holding a secret
    unsealed (run ``eapkit store seal``), ``failed`` keys that do not open with any
    configured key, ``other`` records without a secret."""

    resealed: int = 0
    current: int = 0
    raced: int = 0
    plain: int = 0
    other: int = 0
    failed: list[str] = field(default_factory=list)
    resumed_after: str = ""

    def summary(self) -> str:
        return (
            f"{self.resealed} re-sealed, {self.current} already current, {self.plain} plain, "
            f"{len(self.failed)} failed, {self.other} without a secret, "
            f"{self.raced} concurrent write(s) retried"
        )


def _sealed_blob(raw: bytes) -> tuple[dict[str, object], bytes] | str | None:
    """(record, sealed blob), ``"plain"`` for an unsealed secret, None for a record
    with no secret (or not JSON)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if "sealed" in record:
        try:
            return record, base64.b64decode(str(record["sealed"]), validate=True)
        except (binascii.Error, ValueError):
            return None
    return "plain" if "plain" in record else None


def _one(store: SwapStore, sealer: Sealer, key: str, report: RekeyReport) -> None:
    for _ in range(_RETRIES):
        raw = store.get(key)
        if raw is None:  # deleted meanwhile: nothing left to re-seal
            return
        found = _sealed_blob(raw)
        if found == "plain":
            report.plain += 1
            return
        if not isinstance(found, tuple):
            report.other += 1
            return
        record, blob = found
        try:
            if not sealer.needs_reseal(blob):
                report.current += 1
                return
            fresh = sealer.reseal(blob, key.encode())
        except SealError:
            report.failed.append(key)
            return
        record["sealed"] = base64.b64encode(fresh).decode()
        if store.swap(key, raw, json.dumps(record, sort_keys=True).encode()):
            report.resealed += 1
            return
        report.raced += 1
    report.failed.append(key)


def rekey(
    store: SwapStore,
    sealer: Sealer,
    *,
    batch: int = 200,
    after_batch: Callable[[RekeyReport], None] | None = None,
) -> RekeyReport:
    """Re-seal every record under ``sealer.current``, resuming after the stored cursor.

    ``after_batch`` is called once the cursor of each batch is stored (progress; a
    test stops the run there).  The cursor is removed when the walk is complete.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    report = RekeyReport()
    saved = store.get(CURSOR)
    cursor = saved.decode() if saved else ""
    report.resumed_after = cursor
    while True:
        keys = store.record_keys(after=cursor, limit=batch)
        if not keys:
            break
        for key in keys:
            if key != CURSOR:
                _one(store, sealer, key, report)
        cursor = keys[-1]
        store.put(CURSOR, cursor.encode())
        if after_batch is not None:
            after_batch(report)
    store.delete(CURSOR)
    return report


def key_census(store: SwapStore, *, batch: int = 500) -> dict[str, int]:
    """How many records each key id seals (``"?"``: a blob that names none)."""
    counts: dict[str, int] = {}
    cursor = ""
    while keys := store.record_keys(after=cursor, limit=batch):
        for key in keys:
            raw = store.get(key)
            found = _sealed_blob(raw) if raw is not None else None
            if isinstance(found, tuple):
                blob = found[1]
                kid = blob[2 : 2 + blob[1]].decode("utf-8", "replace") if len(blob) > 2 else "?"
                counts[kid] = counts.get(kid, 0) + 1
        cursor = keys[-1]
    return counts
