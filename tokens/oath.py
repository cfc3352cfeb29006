"""The YubiKey OATH applet, host side (Yubico "YKOATH protocol specification").

One session, as :class:`OathSession` runs it: SELECT the applet (A0 00 00 05 27 21 01)
and read its version, its salt (the "name" 71, from which the device id comes) and, when
it is protected, a challenge (74).  :meth:`OathSession.validate` turns the password into
the access key (PBKDF2-HMAC-SHA1, the salt, 1000 rounds, 16 bytes, RFC 8018 section
5.2), answers the card's challenge with HMAC-SHA1 and checks the card's answer to ours,
so a card that does not know the key is caught too.  Then LIST, CALCULATE (one account,
RFC 4226 section 5.3 truncation done by the card), CALCULATE ALL (every TOTP account for
one time step; HOTP and touch accounts come back without a code), PUT (algorithm, digits,
touch property, HOTP initial counter), DELETE, SET CODE and RESET.  Responses longer
than one APDU come back with 61XX and SEND REMAINING (A5).

Account names follow ykman's convention: ``[period/][issuer:]name``; the period prefix
appears only for TOTP periods other than 30 s, because CALCULATE ALL always uses 30 s.

Codes a token computes are what :class:`eapkit.verify.otp.OtpVerifier` accepts for the
same secret and parameters (the tests check exactly that, against the virtual card).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass
from typing import Literal

from tokens.apdu import tlv
from tokens.errors import ProtocolError, StatusError, TokenError
from tokens.pcsc import ApduTransport

__all__ = [
    "AID",
    "OathCode",
    "OathCredential",
    "OathSession",
    "WrongPasswordError",
    "derive_access_key",
]

AID = bytes.fromhex("a0000005272101")

_TAG_NAME, _TAG_NAME_LIST, _TAG_KEY, _TAG_CHALLENGE = 0x71, 0x72, 0x73, 0x74
_TAG_RESPONSE, _TAG_TRUNCATED, _TAG_HOTP, _TAG_PROPERTY = 0x75, 0x76, 0x77, 0x78
_TAG_VERSION, _TAG_IMF, _TAG_ALGORITHM, _TAG_TOUCH = 0x79, 0x7A, 0x7B, 0x7C

_INS_PUT, _INS_DELETE, _INS_SET_CODE, _INS_RESET = 0x01, 0x02, 0x03, 0x04
_INS_LIST, _INS_CALCULATE, _INS_VALIDATE, _INS_CALCULATE_ALL = 0xA1, 0xA2, 0xA3, 0xA4
_INS_SEND_REMAINING = 0xA5

_TYPES = {0x10: "hotp", 0x20: "totp"}
_ALGORITHMS = {1: "sha1", 2: "sha256", 3: "sha512"}
_BLOCK_SIZE = {"sha1": 64, "sha256": 64, "sha512": 128}
_MIN_KEY = 14  # the applet's minimum HMAC key length; zero padding leaves HMAC unchanged
_PROP_REQUIRE_TOUCH = 0x02
DEFAULT_PERIOD = 30

_MEANINGS = {
    0x6982: "the OATH applet is password protected: validate first",
    0x6984: "no such account (or wrong password)",
    0x6A84: "no space left on the token",
    0x6A80: "the token refused the data (bad name, key or parameters)",
}


class WrongPasswordError(TokenError):
    """VALIDATE failed: the password is wrong (the card is still locked)."""


def derive_access_key(salt: bytes, password: str) -> bytes:
    """The OATH access key: PBKDF2-HMAC-SHA1(password, salt, 1000, 16) (RFC 8018 5.2)."""
    return hashlib.pbkdf2_hmac("sha1", password.encode(), salt, 1000, 16)


def _tlv_items(data: bytes) -> list[tuple[int, bytes]]:
    """YKOATH responses: one-byte tags and lengths; ProtocolError when malformed."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ProtocolError("truncated OATH data object")
        tag, length = data[pos], data[pos + 1]
        if length > 0x80 or pos + 2 + length > len(data):
            raise ProtocolError("OATH data object longer than the response")
        out.append((tag, data[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    return out


@dataclass(frozen=True)
class OathCredential:
    """An account on the token; ``id`` is the name the card stores."""

    id: bytes
    oath_type: Literal["totp", "hotp"]
    algorithm: str
    period: int = DEFAULT_PERIOD
    issuer: str | None = None
    name: str = ""
    touch: bool | None = None  # known only from CALCULATE ALL

    @classmethod
    def from_id(
        cls, cred_id: bytes, oath_type: Literal["totp", "hotp"], algorithm: str
    ) -> OathCredential:
        text = cred_id.decode("utf-8", "replace")
        period = DEFAULT_PERIOD
        if oath_type == "totp" and "/" in text:
            head, rest = text.split("/", 1)
            if head.isascii() and head.isdigit() and int(head) > 0:
                period, text = int(head), rest
        issuer, _, name = text.rpartition(":")
        return cls(cred_id, oath_type, algorithm, period, issuer or None, name)

    @staticmethod
    def make_id(
        name: str, issuer: str | None = None, period: int = DEFAULT_PERIOD, totp: bool = True
    ) -> bytes:
        text = f"{issuer}:{name}" if issuer else name
        if totp and period != DEFAULT_PERIOD:
            text = f"{period}/{text}"
        return text.encode()

    @property
    def display(self) -> str:
        return f"{self.issuer}:{self.name}" if self.issuer else self.name


@dataclass(frozen=True)
class OathCode:
    """A code and the time it is valid (TOTP: its time step; HOTP: from now on)."""

    value: str
    valid_from: float
    valid_to: float


def _format(digits_and_code: bytes, truncated: bool) -> str:
    if len(digits_and_code) < 5:
        raise ProtocolError("OATH code response too short")
    digits = digits_and_code[0]
    if not 6 <= digits <= 10:
        raise ProtocolError("OATH code with an impossible number of digits")
    if truncated:
        value = int.from_bytes(digits_and_code[1:5], "big") & 0x7FFFFFFF
    else:  # full HMAC: the host truncates (RFC 4226 section 5.3)
        mac = digits_and_code[1:]
        offset = mac[-1] & 0x0F
        if offset + 4 > len(mac):
            raise ProtocolError("OATH HMAC response too short")
        value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def _prepare_secret(secret: bytes, algorithm: str) -> bytes:
    # RFC 2104 section 2: a key longer than the block is hashed first; the card wants >= 14.
    if len(secret) > _BLOCK_SIZE[algorithm]:
        secret = hashlib.new(algorithm, secret).digest()
    return secret.ljust(_MIN_KEY, b"\x00")


class OathSession:
    """The OATH applet of one token over an :class:`~tokens.pcsc.ApduTransport`."""

    def __init__(self, transport: ApduTransport) -> None:
        transport.get_response_ins = _INS_SEND_REMAINING
        self.transport = transport
        info = dict(_tlv_items(transport.select(AID, what="SELECT OATH")))
        version = info.get(_TAG_VERSION, b"")
        self.version = tuple(version)
        self.salt = info.get(_TAG_NAME, b"")
        self._challenge = info.get(_TAG_CHALLENGE)
        self.locked = self._challenge is not None
        if self.locked and info.get(_TAG_ALGORITHM, b"\x01") != b"\x01":
            raise ProtocolError("OATH password algorithm other than HMAC-SHA1")

    @property
    def device_id(self) -> str:
        """ykman's device id: base64url(SHA-256(salt)[:16]), no padding."""
        digest = hashlib.sha256(self.salt).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _send(self, ins: int, data: bytes = b"", p1: int = 0, p2: int = 0, what: str = "") -> bytes:
        return self.transport.send(0x00, ins, p1, p2, data, what=what, meanings=_MEANINGS)

    def validate(self, password: str | None = None, *, key: bytes | None = None) -> None:
        """Unlock with a password (or its derived key); raise WrongPasswordError."""
        if not self.locked or self._challenge is None:
            return
        if key is None:
            if password is None:
                raise ValueError("a password or a key is needed")
            key = derive_access_key(self.salt, password)
        ours = os.urandom(8)
        response = hmac.digest(key, self._challenge, "sha1")
        try:
            answer = self._send(
                _INS_VALIDATE,
                tlv(_TAG_RESPONSE, response) + tlv(_TAG_CHALLENGE, ours),
                what="VALIDATE",
            )
        except StatusError as err:
            if err.sw in (0x6984, 0x6A80):
                raise WrongPasswordError("wrong OATH password") from None
            raise
        finally:
            self._challenge = None  # one try per SELECT
        card = dict(_tlv_items(answer)).get(_TAG_RESPONSE, b"")
        if not hmac.compare_digest(card, hmac.digest(key, ours, "sha1")):
            raise ProtocolError("the token's VALIDATE answer is wrong: not the expected key")
        self.locked = False

    def list_credentials(self) -> list[OathCredential]:
        out = []
        for tag, value in _tlv_items(self._send(_INS_LIST, what="LIST")):
            if tag != _TAG_NAME_LIST or not value:
                raise ProtocolError("unexpected data object in LIST")
            kind, algorithm = _TYPES.get(value[0] & 0xF0), _ALGORITHMS.get(value[0] & 0x0F)
            if kind is None or algorithm is None:
                raise ProtocolError("unknown OATH type or algorithm in LIST")
            out.append(OathCredential.from_id(value[1:], kind, algorithm))  # type: ignore[arg-type]
        return out

    def find(self, text: str) -> OathCredential:
        """The one account whose display name or id contains ``text``."""
        creds = self.list_credentials()
        exact = [c for c in creds if text in (c.display, c.id.decode("utf-8", "replace"))]
        matches = exact or [c for c in creds if text.lower() in c.display.lower()]
        if len(matches) != 1:
            raise TokenError(f"{len(matches)} accounts match {text!r}")
        return matches[0]

    def calculate(
        self, credential: OathCredential, at: float | None = None, *, truncate: bool = True
    ) -> OathCode:
        """CALCULATE one account's code (TOTP at ``at``, default now; HOTP: next counter)."""
        at = time.time() if at is None else at
        if credential.oath_type == "totp":
            step = int(at // credential.period)
            challenge = struct.pack(">Q", step)
            valid: tuple[float, float] = (
                step * credential.period,
                (step + 1) * credential.period,
            )
        else:
            challenge, valid = b"", (at, float("inf"))
        answer = self._send(
            _INS_CALCULATE,
            tlv(_TAG_NAME, credential.id) + tlv(_TAG_CHALLENGE, challenge),
            p2=0x01 if truncate else 0x00,
            what="CALCULATE",
        )
        items = dict(_tlv_items(answer))
        tag = _TAG_TRUNCATED if truncate else _TAG_RESPONSE
        if tag not in items:
            raise ProtocolError("CALCULATE answer without a code")
        return OathCode(_format(items[tag], truncate), float(valid[0]), float(valid[1]))

    def calculate_all(self, at: float | None = None) -> dict[OathCredential, OathCode | None]:
        """Every account: TOTP codes for the 30 s step of ``at``, recomputed for others.

        HOTP accounts and accounts that need a touch come back as None (asking for
        them counts a HOTP use or needs a finger; call :meth:`calculate`).
        """
        at = time.time() if at is None else at
        step = int(at // DEFAULT_PERIOD)
        answer = self._send(
            _INS_CALCULATE_ALL,
            tlv(_TAG_CHALLENGE, struct.pack(">Q", step)),
            p2=0x01,
            what="CALCULATE ALL",
        )
        items = _tlv_items(answer)
        if len(items) % 2:
            raise ProtocolError("CALCULATE ALL answer is not name/code pairs")
        out: dict[OathCredential, OathCode | None] = {}
        for (name_tag, name), (tag, value) in zip(items[::2], items[1::2], strict=True):
            if name_tag != _TAG_NAME:
                raise ProtocolError("CALCULATE ALL answer: name expected")
            kind: Literal["totp", "hotp"] = "hotp" if tag == _TAG_HOTP else "totp"
            cred = OathCredential.from_id(name, kind, "sha1")
            cred = OathCredential(
                cred.id, kind, "?", cred.period, cred.issuer, cred.name, tag == _TAG_TOUCH
            )
            if tag == _TAG_TRUNCATED and cred.period == DEFAULT_PERIOD:
                start = step * DEFAULT_PERIOD
                out[cred] = OathCode(_format(value, True), start, start + DEFAULT_PERIOD)
            elif tag == _TAG_TRUNCATED:
                out[cred] = self.calculate(cred, at)
            elif tag in (_TAG_HOTP, _TAG_TOUCH):
                out[cred] = None
            else:
                raise ProtocolError(f"CALCULATE ALL: unexpected tag {tag:02X}")
        return out

    def put(
        self,
        name: str,
        secret: bytes,
        *,
        issuer: str | None = None,
        oath_type: Literal["totp", "hotp"] = "totp",
        algorithm: str = "sha1",
        digits: int = 6,
        period: int = DEFAULT_PERIOD,
        counter: int = 0,
        touch: bool = False,
    ) -> OathCredential:
        """PUT an account (replacing one with the same name)."""
        if algorithm not in _BLOCK_SIZE or not 6 <= digits <= 8:
            raise ValueError("algorithm must be sha1/sha256/sha512 and digits 6..8")
        cred_id = OathCredential.make_id(name, issuer, period, oath_type == "totp")
        if len(cred_id) > 64:
            raise ValueError("account name too long for the token (64 bytes)")
        type_code = {v: k for k, v in _TYPES.items()}[oath_type]
        alg_code = {v: k for k, v in _ALGORITHMS.items()}[algorithm]
        data = tlv(_TAG_NAME, cred_id) + tlv(
            _TAG_KEY, bytes((type_code | alg_code, digits)) + _prepare_secret(secret, algorithm)
        )
        if touch:
            data += bytes((_TAG_PROPERTY, _PROP_REQUIRE_TOUCH))  # tag + value, no length
        if oath_type == "hotp" and counter:
            data += tlv(_TAG_IMF, struct.pack(">I", counter))
        self._send(_INS_PUT, data, what="PUT")
        return OathCredential(cred_id, oath_type, algorithm, period, issuer, name, touch)

    def delete(self, credential: OathCredential) -> None:
        self._send(_INS_DELETE, tlv(_TAG_NAME, credential.id), what="DELETE")

    def set_password(self, password: str | None) -> None:
        """SET CODE: protect the applet with ``password`` (None removes the password)."""
        if password is None:
            self._send(_INS_SET_CODE, tlv(_TAG_KEY), what="SET CODE")
            return
        key = derive_access_key(self.salt, password)
        challenge = os.urandom(8)
        self._send(
            _INS_SET_CODE,
            tlv(_TAG_KEY, bytes((0x20 | 0x01,)) + key)
            + tlv(_TAG_CHALLENGE, challenge)
            + tlv(_TAG_RESPONSE, hmac.digest(key, challenge, "sha1")),
            what="SET CODE",
        )

    def reset(self) -> None:
        """RESET: erase every account and the password (P1 P2 = DE AD)."""
        self._send(_INS_RESET, p1=0xDE, p2=0xAD, what="RESET")
