"""What the relying party keeps in the store: registered credentials (WebAuthn L3 §4,
"credential record") and single-use challenge tokens (§13.4.3)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, NamedTuple

from eapkit.errors import DecodeError
from eapkit.verify.webauthn.base64url import b64url_decode, b64url_encode

__all__ = ["Ceremony", "StoredCredential", "decode_ceremony", "encode_ceremony"]


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A registered credential as the store keeps it (the signature counter lives in the
    store's counter family; ``sign_count`` is filled in when listing)."""

    credential_id: bytes
    user: str
    user_handle: bytes
    public_key: bytes
    algorithm: int
    aaguid: bytes
    transports: tuple[str, ...]
    backup_eligible: bool
    backup_state: bool
    uv_initialized: bool
    attestation_format: str
    attestation_type: str
    created: float
    sign_count: int = 0

    def to_record(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "id": b64url_encode(self.credential_id),
                "user": self.user,
                "uh": b64url_encode(self.user_handle),
                "pk": b64url_encode(self.public_key),
                "alg": self.algorithm,
                "aaguid": self.aaguid.hex(),
                "tr": list(self.transports),
                "be": self.backup_eligible,
                "bs": self.backup_state,
                "uvi": self.uv_initialized,
                "fmt": self.attestation_format,
                "att": self.attestation_type,
                "at": self.created,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    @classmethod
    def from_record(cls, data: bytes) -> StoredCredential:
        try:
            d = json.loads(data)
            return cls(
                credential_id=b64url_decode(d["id"]),
                user=str(d["user"]),
                user_handle=b64url_decode(d["uh"]),
                public_key=b64url_decode(d["pk"]),
                algorithm=int(d["alg"]),
                aaguid=bytes.fromhex(d["aaguid"]),
                transports=tuple(str(t) for t in d["tr"]),
                backup_eligible=bool(d["be"]),
                backup_state=bool(d["bs"]),
                uv_initialized=bool(d["uvi"]),
                attestation_format=str(d["fmt"]),
                attestation_type=str(d["att"]),
                created=float(d["at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError("corrupt WebAuthn credential record") from exc


# -- challenge tokens ---------------------------------------------------------------------
class Ceremony(NamedTuple):
    """What a challenge was issued for (§13.4.3: each is used once, then forgotten)."""

    purpose: str  # "get" or "create"
    user: str | None
    uv: str
    expires: float
    user_handle: bytes | None


# A challenge token: purpose, UV policy, expiry, user handle (hex, may be empty), then
# "u" + the user name or "-" for none; unit-separated, the user last (names may hold
# anything).  Read on every login, so it is not JSON.
_SEP: Final = "\x1f"


def encode_ceremony(c: Ceremony) -> bytes:
    handle = "" if c.user_handle is None else c.user_handle.hex()
    user = "-" if c.user is None else "u" + c.user
    return _SEP.join((c.purpose, c.uv, repr(c.expires), handle, user)).encode()


def decode_ceremony(data: bytes) -> Ceremony:
    try:
        purpose, uv, expires, handle, user = data.decode().split(_SEP, 4)
        return Ceremony(
            purpose,
            None if user == "-" else user.removeprefix("u"),
            uv,
            float(expires),
            bytes.fromhex(handle) if handle else None,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError("corrupt WebAuthn challenge token") from exc
