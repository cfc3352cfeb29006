"""Authenticator data (WebAuthn L3 §6.1): RP ID hash, flags, signature counter."""

from __future__ import annotations

import functools
import hashlib
from typing import Final

from fido2.webauthn import AuthenticatorData

from eapkit.errors import DecodeError

__all__ = [
    "AT",
    "BE",
    "BS",
    "ED",
    "MAX_CREDENTIAL_ID",
    "UP",
    "UV",
    "rp_id_hash",
    "rp_id_hash_cached",
    "validate_authenticator_data",
]

# authenticator data flags (§6.1)
UP: Final = 0x01
UV: Final = 0x04
BE: Final = 0x08
BS: Final = 0x10
AT: Final = 0x40
ED: Final = 0x80
MAX_CREDENTIAL_ID: Final = 1023  # §5.8.3 / §7.1 step 25


def validate_authenticator_data(ad: bytes) -> tuple[int, int]:
    """(flags, signCount) of well-formed authenticator data; DecodeError otherwise."""
    if len(ad) < 37:
        raise DecodeError("authenticator data too short", offset=len(ad), expected="37 bytes")
    flags = ad[32]
    if len(ad) != 37 or flags & (AT | ED):
        # attested credential data or extensions follow: let python-fido2 check the rest
        try:
            AuthenticatorData(bytes(ad))
        except Exception as exc:  # third-party parser of untrusted bytes
            raise DecodeError("bad attested credential data or extensions", offset=37) from exc
    if flags & BS and not flags & BE:
        raise DecodeError("BS flag set without BE (§6.1)", offset=32)
    return flags, int.from_bytes(ad[33:37], "big")


def rp_id_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode("utf-8")).digest()


rp_id_hash_cached = functools.lru_cache(maxsize=64)(rp_id_hash)
