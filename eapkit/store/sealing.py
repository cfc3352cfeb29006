"""Secrets at rest: AES-256-GCM (or -128/-192) with a key id, so keys can be rotated.

OTP secrets and YubiKey AES keys are stored sealed, never in the clear: a copy of the
SQLite file or a Redis dump alone does not let anyone mint codes.

A sealed blob is ``b"\\x01" || len(kid) || kid || nonce (12) || ciphertext || tag (16)``.
The associated data is the record's key (for example ``otp:cred:alice``), so a blob
copied onto another user's record does not open.  The key id names which key sealed
it; :meth:`Sealer.open` accepts any configured key, :meth:`Sealer.seal` always uses the
current one, and :meth:`Sealer.needs_reseal` tells a rotation job what to rewrite.

Verifiers do not call a :class:`Sealer` themselves: :class:`~eapkit.store.records.SealedRecords`
writes and opens their records with it.

Keys come from the configuration or an environment variable (default
``EAPKIT_STORE_KEYS``) as ``kid:base64key[,kid:base64key...]``; the first is current.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eapkit.errors import ConfigError, EapkitError
from eapkit.rand import SYSTEM_RANDOM, RandomSource

__all__ = ["ENV_VAR", "SealError", "Sealer"]

ENV_VAR = "EAPKIT_STORE_KEYS"
_VERSION = 1
_NONCE = 12


class SealError(EapkitError):
    """A sealed blob did not open: unknown key id, wrong key, or tampered with."""


class Sealer:
    """Seals and opens secrets with a set of named AES-GCM keys."""

    def __init__(
        self,
        keys: Mapping[str, bytes],
        current: str | None = None,
        *,
        rand: RandomSource = SYSTEM_RANDOM,
    ) -> None:
        if not keys:
            raise ConfigError("sealing: no keys configured")
        for kid, key in keys.items():
            if not kid or len(kid.encode()) > 255 or ":" in kid or "," in kid:
                raise ConfigError("sealing: a key id must be 1..255 bytes without ':' or ','")
            if len(key) not in (16, 24, 32):
                raise ConfigError(f"sealing: key {kid!r} must be 16, 24 or 32 bytes")
        self.current = current if current is not None else next(iter(keys))
        if self.current not in keys:
            raise ConfigError("sealing: the current key id is not among the keys")
        self._aead = {kid: AESGCM(bytes(key)) for kid, key in keys.items()}
        self._rand = rand

    @classmethod
    def from_config(cls, spec: str, *, rand: RandomSource = SYSTEM_RANDOM) -> Sealer:
        """Keys from ``kid:base64key[,kid:base64key...]``; the first is current."""
        keys: dict[str, bytes] = {}
        for item in spec.split(","):
            kid, sep, b64 = item.strip().partition(":")
            if not sep:
                raise ConfigError("sealing: expected kid:base64key")
            if kid in keys:
                # a rotation that reused the id: one of the two keys would be dropped
                # unseen, and rekey --verify would call the store rotated
                raise ConfigError(
                    f"sealing: key id {kid!r} is listed twice; give the new key a new id"
                )
            try:
                keys[kid] = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ConfigError(f"sealing: key {kid!r} is not base64") from exc
        return cls(keys, rand=rand)

    @classmethod
    def from_env(
        cls,
        var: str = ENV_VAR,
        *,
        environ: Mapping[str, str] | None = None,
        rand: RandomSource = SYSTEM_RANDOM,
    ) -> Sealer:
        spec = (os.environ if environ is None else environ).get(var)
        if not spec:
            raise ConfigError(f"sealing: environment variable {var} is not set")
        return cls.from_config(spec, rand=rand)

    def seal(self, secret: bytes, aad: bytes) -> bytes:
        """Encrypt ``secret`` under the current key, bound to ``aad``."""
        kid = self.current.encode()
        nonce = self._rand.random_bytes(_NONCE)
        ct = self._aead[self.current].encrypt(nonce, bytes(secret), bytes(aad))
        return bytes((_VERSION, len(kid))) + kid + nonce + ct

    def key_id(self, blob: bytes) -> str:
        """The id of the key that sealed ``blob`` (SealError if it is not a sealed blob)."""
        if len(blob) < 2 or blob[0] != _VERSION or len(blob) < 2 + blob[1] + _NONCE + 16:
            raise SealError("not a sealed blob")
        try:
            return blob[2 : 2 + blob[1]].decode()
        except UnicodeDecodeError as exc:
            raise SealError("not a sealed blob") from exc

    def open(self, blob: bytes, aad: bytes) -> bytes:
        kid = self.key_id(blob)
        aead = self._aead.get(kid)
        if aead is None:
            raise SealError(f"sealed with unknown key id {kid!r}")
        start = 2 + blob[1]
        try:
            return aead.decrypt(blob[start : start + _NONCE], blob[start + _NONCE :], aad)
        except InvalidTag as exc:
            raise SealError(f"sealed blob does not open with key {kid!r}") from exc

    def needs_reseal(self, blob: bytes) -> bool:
        return self.key_id(blob) != self.current

    def reseal(self, blob: bytes, aad: bytes) -> bytes:
        """Re-encrypt under the current key (rotation)."""
        return self.seal(self.open(blob, aad), aad)
