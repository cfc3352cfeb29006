"""Virtual YubiKey OATH applet (the protocol ykman's ``oath`` commands speak).

Yubico's "YKOATH protocol specification": AID A0 00 00 05 27 21 01; SELECT answers
version (79), salt/"name" (71) and, when a password is set, a challenge (74) and its
algorithm (7B).  The password key is PBKDF2-HMAC-SHA1(password, salt, 1000, 16) on
the host; VALIDATE is a mutual HMAC challenge-response with it.  Codes are RFC 4226
section 5.3 (HOTP dynamic truncation) over the 8-byte challenge the host sends (for
TOTP, RFC 6238 section 4.2's time step).  Responses longer than Ne end in 61XX and are
fetched with SEND REMAINING (A5).

Touch: a real key waits for a finger; this card approves at once (``touch`` is only
reported) - what a test cannot check without hardware.

The host-side driver lives in :mod:`tokens.oath`; the protocol constants are written
out again here on purpose, so a shared mistake does not cancel out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokens.apdu import Apdu, tlv
from tokens.sim.card import Applet, CardResponse, SwError

AID = bytes.fromhex("a0000005272101")

TAG_NAME, TAG_NAME_LIST, TAG_KEY, TAG_CHALLENGE = 0x71, 0x72, 0x73, 0x74
TAG_RESPONSE, TAG_TRUNCATED, TAG_HOTP, TAG_PROPERTY = 0x75, 0x76, 0x77, 0x78
TAG_VERSION, TAG_IMF, TAG_ALGORITHM, TAG_TOUCH = 0x79, 0x7A, 0x7B, 0x7C

INS_PUT, INS_DELETE, INS_SET_CODE, INS_RESET, INS_RENAME = 0x01, 0x02, 0x03, 0x04, 0x05
INS_LIST, INS_CALCULATE, INS_VALIDATE, INS_CALCULATE_ALL = 0xA1, 0xA2, 0xA3, 0xA4
INS_SEND_REMAINING = 0xA5

HOTP, TOTP = 0x10, 0x20
HASHES = {1: "sha1", 2: "sha256", 3: "sha512"}
PROP_REQUIRE_TOUCH = 0x02
MAX_NAME = 64
MAX_CREDENTIALS = 32


@dataclass
class OathCredential:
    name: bytes
    kind: int  # HOTP or TOTP
    algorithm: int  # 1 SHA-1, 2 SHA-256, 3 SHA-512
    digits: int
    secret: bytes
    touch: bool = False
    counter: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name.decode("utf-8", "replace"),
            "type": "hotp" if self.kind == HOTP else "totp",
            "algorithm": HASHES[self.algorithm],
            "digits": self.digits,
            "secret": base64.b32encode(self.secret).decode().rstrip("="),
            "touch": self.touch,
            "counter": self.counter,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OathCredential:
        secret = str(d["secret"]).upper().replace(" ", "")
        secret += "=" * (-len(secret) % 8)
        algorithm = {v: k for k, v in HASHES.items()}[str(d.get("algorithm", "sha1")).lower()]
        return cls(
            name=str(d["name"]).encode(),
            kind=HOTP if d.get("type", "totp") == "hotp" else TOTP,
            algorithm=algorithm,
            digits=int(d.get("digits", 6)),
            secret=base64.b32decode(secret),
            touch=bool(d.get("touch", False)),
            counter=int(d.get("counter", 0)),
        )


def _split(data: bytes) -> list[tuple[int, bytes]]:
    """YKOATH data objects: one-byte tags, one-byte lengths, except PROPERTY (tag+byte)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        tag = data[pos]
        if tag == TAG_PROPERTY:
            if pos + 2 > len(data):
                raise SwError(0x6A80)
            out.append((tag, data[pos + 1 : pos + 2]))
            pos += 2
            continue
        if pos + 2 > len(data):
            raise SwError(0x6A80)
        length = data[pos + 1]
        if length > 0x80 or pos + 2 + length > len(data):
            raise SwError(0x6A80)
        out.append((tag, data[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    return out


def _first(items: list[tuple[int, bytes]], tag: int) -> bytes | None:
    return next((v for t, v in items if t == tag), None)


def _hotp_truncate(mac: bytes) -> bytes:
    """RFC 4226 section 5.3: 31 bits at the offset named by the last nibble."""
    offset = mac[-1] & 0x0F
    return (int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF).to_bytes(4, "big")


class OathApplet(Applet):
    aid = AID
    name = "oath"
    send_remaining_ins = INS_SEND_REMAINING

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        super().__init__()
        state = state or {}
        self.version = bytes(state.get("version", [5, 4, 3]))
        self.salt = bytes.fromhex(state["salt"]) if "salt" in state else os.urandom(8)
        self.access_key: bytes | None = (
            bytes.fromhex(state["access_key"]) if state.get("access_key") else None
        )
        if state.get("password"):  # convenience for tests: derive the key as ykman does
            self.access_key = hashlib.pbkdf2_hmac(
                "sha1", str(state["password"]).encode(), self.salt, 1000, 16
            )
        self.credentials = [OathCredential.from_json(c) for c in state.get("credentials", [])]
        self.unlocked = self.access_key is None
        self.challenge = b""

    @property
    def device_id(self) -> str:
        return (
            base64.urlsafe_b64encode(hashlib.sha256(self.salt).digest()[:16]).decode().rstrip("=")
        )

    def state(self) -> dict[str, Any]:
        return {
            "version": list(self.version),
            "salt": self.salt.hex(),
            "access_key": self.access_key.hex() if self.access_key else "",
            "credentials": [c.to_json() for c in self.credentials],
        }

    def select(self, p1: int, p2: int) -> bytes:
        out = tlv(TAG_VERSION, self.version) + tlv(TAG_NAME, self.salt)
        self.unlocked = self.access_key is None
        if self.access_key is not None:
            self.challenge = os.urandom(8)
            out += tlv(TAG_CHALLENGE, self.challenge) + tlv(TAG_ALGORITHM, b"\x01")
        return out

    def process(self, apdu: Apdu) -> CardResponse:
        ins = apdu.ins
        if ins == INS_RESET:
            if (apdu.p1, apdu.p2) != (0xDE, 0xAD):
                raise SwError(0x6A86)
            self.credentials = []
            self.access_key = None
            self.unlocked = True
            self.salt = os.urandom(8)
            self.changed()
            return b"", 0x9000
        if ins == INS_VALIDATE:
            return self._validate(_split(apdu.data))
        if not self.unlocked:
            raise SwError(0x6982)
        items = _split(apdu.data)
        handlers: dict[int, Callable[[list[tuple[int, bytes]]], CardResponse]] = {
            INS_PUT: self._put,
            INS_DELETE: self._delete,
            INS_RENAME: self._rename,
            INS_SET_CODE: self._set_code,
            INS_LIST: self._list,
        }
        if ins in handlers:
            return handlers[ins](items)
        if ins == INS_CALCULATE:
            return self._calculate(items, truncate=apdu.p2 == 0x01)
        if ins == INS_CALCULATE_ALL:
            return self._calculate_all(items, truncate=apdu.p2 == 0x01)
        raise SwError(0x6D00)

    def _find(self, name: bytes) -> OathCredential:
        for cred in self.credentials:
            if cred.name == name:
                return cred
        raise SwError(0x6984)  # no such object

    def _put(self, items: list[tuple[int, bytes]]) -> CardResponse:
        name, key = _first(items, TAG_NAME), _first(items, TAG_KEY)
        if not name or key is None or len(key) < 2 or len(name) > MAX_NAME:
            raise SwError(0x6A80)
        kind, algorithm = key[0] & 0xF0, key[0] & 0x0F
        digits = key[1]
        if kind not in (HOTP, TOTP) or algorithm not in HASHES or not 6 <= digits <= 8:
            raise SwError(0x6A80)
        prop = _first(items, TAG_PROPERTY) or b"\x00"
        imf = _first(items, TAG_IMF)
        cred = OathCredential(
            name=name,
            kind=kind,
            algorithm=algorithm,
            digits=digits,
            secret=key[2:],
            touch=bool(prop[0] & PROP_REQUIRE_TOUCH),
            counter=int.from_bytes(imf, "big") if imf else 0,
        )
        existing = [i for i, c in enumerate(self.credentials) if c.name == name]
        if existing:
            self.credentials[existing[0]] = cred
        elif len(self.credentials) >= MAX_CREDENTIALS:
            raise SwError(0x6A84)  # no space
        else:
            self.credentials.append(cred)
        self.changed()
        return b"", 0x9000

    def _delete(self, items: list[tuple[int, bytes]]) -> CardResponse:
        cred = self._find(_first(items, TAG_NAME) or b"")
        self.credentials.remove(cred)
        self.changed()
        return b"", 0x9000

    def _rename(self, items: list[tuple[int, bytes]]) -> CardResponse:
        names = [v for t, v in items if t == TAG_NAME]
        if len(names) != 2 or not names[1] or len(names[1]) > MAX_NAME:
            raise SwError(0x6A80)
        if any(c.name == names[1] for c in self.credentials):
            raise SwError(0x6A80)
        self._find(names[0]).name = names[1]
        self.changed()
        return b"", 0x9000

    def _list(self, items: list[tuple[int, bytes]]) -> CardResponse:
        out = b"".join(
            tlv(TAG_NAME_LIST, bytes((c.kind | c.algorithm,)) + c.name) for c in self.credentials
        )
        return out, 0x9000

    def _code(self, cred: OathCredential, challenge: bytes, truncate: bool) -> bytes:
        if cred.kind == HOTP:
            challenge = cred.counter.to_bytes(8, "big")
            cred.counter += 1
            self.changed()
        mac = hmac.digest(cred.secret, challenge, HASHES[cred.algorithm])
        if truncate:
            return tlv(TAG_TRUNCATED, bytes((cred.digits,)) + _hotp_truncate(mac))
        return tlv(TAG_RESPONSE, bytes((cred.digits,)) + mac)

    def _calculate(self, items: list[tuple[int, bytes]], truncate: bool) -> CardResponse:
        cred = self._find(_first(items, TAG_NAME) or b"")
        challenge = _first(items, TAG_CHALLENGE)
        if challenge is None:
            raise SwError(0x6A80)
        return self._code(cred, challenge, truncate), 0x9000

    def _calculate_all(self, items: list[tuple[int, bytes]], truncate: bool) -> CardResponse:
        challenge = _first(items, TAG_CHALLENGE)
        if challenge is None:
            raise SwError(0x6A80)
        out = b""
        for cred in self.credentials:
            out += tlv(TAG_NAME, cred.name)
            if cred.kind == HOTP:
                out += tlv(TAG_HOTP, bytes((cred.digits,)))
            elif cred.touch:
                out += tlv(TAG_TOUCH, bytes((cred.digits,)))
            else:
                out += self._code(cred, challenge, truncate)
        return out, 0x9000

    def _validate(self, items: list[tuple[int, bytes]]) -> CardResponse:
        if self.access_key is None or not self.challenge:
            raise SwError(0x6984)
        response, host_challenge = _first(items, TAG_RESPONSE), _first(items, TAG_CHALLENGE)
        if response is None or host_challenge is None:
            raise SwError(0x6A80)
        expected = hmac.digest(self.access_key, self.challenge, "sha1")
        self.challenge = b""  # one try per SELECT
        if not hmac.compare_digest(expected, response):
            raise SwError(0x6984)
        self.unlocked = True
        return tlv(TAG_RESPONSE, hmac.digest(self.access_key, host_challenge, "sha1")), 0x9000

    def _set_code(self, items: list[tuple[int, bytes]]) -> CardResponse:
        key = _first(items, TAG_KEY)
        if key is None:
            raise SwError(0x6A80)
        if not key:
            self.access_key = None
            self.changed()
            return b"", 0x9000
        challenge, response = _first(items, TAG_CHALLENGE), _first(items, TAG_RESPONSE)
        if key[0] != TOTP | 1 or challenge is None or response is None:
            raise SwError(0x6A80)
        if not hmac.compare_digest(hmac.digest(key[1:], challenge, "sha1"), response):
            raise SwError(0x6A80)
        self.access_key = key[1:]
        self.changed()
        return b"", 0x9000
