"""Records that hold a secret: a JSON object in the store whose one secret field is sealed.

Every verifier that keeps secrets (OTP seeds, YubiKey AES keys and private ids, Yubico
validation API keys) stores them the same way, so the sealing lives here once::

    {"v": 1, ...plain fields..., "sealed": base64(Sealer.seal(secret, aad=key))}

The associated data is the record's store key (see :mod:`eapkit.store.sealing`), so a
sealed secret copied onto another record does not open.  Without a sealer (allowed only
on a :class:`~eapkit.store.memory.MemoryStore`) the secret is written as ``"plain"``.

With a sealer, a ``"plain"`` record is refused (:class:`RecordNotSealed`, reason
``record_not_sealed``): otherwise whoever can write the store could plant a seed for any
user (DESIGN.md, "State that must survive": "an unsealed record is refused when keys are
configured").  ``require_sealed=False`` is only for migration: ``eapkit store seal``
reads the plain records and writes them back sealed (:meth:`SealedRecords.seal_plain`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from eapkit.errors import ConfigError
from eapkit.store.base import Store
from eapkit.store.memory import MemoryStore
from eapkit.store.sealing import Sealer, SealError

__all__ = ["RECORD_NOT_SEALED", "RecordNotSealed", "SealedRecords"]

RECORD_NOT_SEALED = "record_not_sealed"


class RecordNotSealed(SealError):
    """A record holds its secret in the clear although sealing keys are configured."""

    reason = RECORD_NOT_SEALED


class SealedRecords:
    """A store and a sealer: write a record with its secret sealed, open it again.

    ``what`` names the secrets in the refusal to run unsealed on a persistent store
    (``"OTP secrets must be sealed at rest: pass a Sealer"``).  :meth:`open` raises
    :class:`~eapkit.store.sealing.SealError`, ``ValueError``, ``KeyError`` or
    ``TypeError`` for a record that does not load; callers fail closed on them.
    """

    __slots__ = ("require_sealed", "sealer", "store")

    def __init__(
        self,
        store: Store,
        sealer: Sealer | None = None,
        *,
        what: str = "secrets",
        require_sealed: bool = True,
    ) -> None:
        if sealer is None and not isinstance(store, MemoryStore):
            raise ConfigError(f"{what} must be sealed at rest: pass a Sealer")
        self.store = store
        self.sealer = sealer
        self.require_sealed = require_sealed

    def write(self, key: str, fields: Mapping[str, Any], secret: bytes) -> None:
        """Store ``fields`` with ``secret`` sealed under ``key`` (plain without a sealer)."""
        record = dict(fields)
        if self.sealer is not None:
            record["sealed"] = base64.b64encode(self.sealer.seal(secret, key.encode())).decode()
        else:
            record["plain"] = base64.b64encode(secret).decode()
        self.store.put(key, json.dumps(record, sort_keys=True).encode())

    def read(self, key: str) -> bytes | None:
        """The record's stored bytes (callers cache on them), or None."""
        return self.store.get(key)

    def open(self, key: str, raw: bytes) -> tuple[dict[str, Any], bytes]:
        """(the record's fields, its secret) from the bytes :meth:`read` returned."""
        record = json.loads(raw)
        if "sealed" in record:
            if self.sealer is None:
                raise SealError("record is sealed and no sealer is configured")
            return record, self.sealer.open(base64.b64decode(record["sealed"]), key.encode())
        if self.require_sealed and self.sealer is not None:
            raise RecordNotSealed(f"{RECORD_NOT_SEALED}: sealing keys are configured")
        return record, base64.b64decode(record["plain"])

    def seal_plain(self, key: str) -> bool:
        """Rewrite the record under ``key`` sealed if it is plain; True if it was.

        The migration step (``eapkit store seal``): the plain fields are kept as they
        are, the secret moves from ``"plain"`` to ``"sealed"``.
        """
        if self.sealer is None:
            raise ConfigError("sealing plain records needs sealing keys")
        raw = self.store.get(key)
        if raw is None:
            return False
        try:
            record = json.loads(raw)
        except ValueError:
            return False
        if not isinstance(record, dict) or "plain" not in record or "sealed" in record:
            return False
        secret = base64.b64decode(record.pop("plain"))
        self.write(key, record, secret)
        return True

    def delete(self, key: str) -> bool:
        return self.store.delete(key)
