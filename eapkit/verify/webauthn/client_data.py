"""Collected client data, ``clientDataJSON`` (WebAuthn L3 §5.8.1): what the browser says it
signed for (type, challenge, origin, cross-origin use)."""

from __future__ import annotations

import json
import re
from typing import Final, NamedTuple

from eapkit.errors import DecodeError
from eapkit.verify.webauthn.base64url import b64url_decode

__all__ = ["CREATE", "GET", "ClientData", "parse_client_data"]

GET: Final = "webauthn.get"
CREATE: Final = "webauthn.create"


class ClientData(NamedTuple):
    type: str
    challenge: bytes
    origin: str
    cross_origin: bool
    top_origin: str | None
    challenge_text: str  # as sent (unpadded base64url): the challenge token's store key


# The serialisation browsers emit (WebAuthn L3 §5.8.1.1: type, challenge, origin,
# crossOrigin, in that order, no whitespace), with nothing a JSON parser would have to
# unescape: printable ASCII strings without quote or backslash, a base64url challenge.
# A document that matches parses to exactly these values; anything else (other keys,
# topOrigin, escapes, whitespace, non-ASCII) goes through json.loads.
_JSON_TEXT: Final = r'"([\x20\x21\x23-\x5b\x5d-\x7e]*)"'
_CLIENT_DATA_FAST: Final = re.compile(
    r'\{"type":'
    + _JSON_TEXT
    + r',"challenge":"([A-Za-z0-9_-]*)","origin":'
    + _JSON_TEXT
    + r'(?:,"crossOrigin":(true|false))?\}'
).fullmatch


def parse_client_data(raw: bytes) -> ClientData:
    """The fields of ``clientDataJSON`` that §7.1/§7.2 check; DecodeError otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("clientDataJSON is not UTF-8 JSON", expected="JSON object") from None
    m = _CLIENT_DATA_FAST(text)
    if m is None:
        return _parse_client_data_json(text)
    typ, challenge, origin, cross = m.groups()
    return ClientData(typ, b64url_decode(challenge), origin, cross == "true", None, challenge)


def _parse_client_data_json(text: str) -> ClientData:
    """parse_client_data through a full JSON parser: any valid clientDataJSON."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise DecodeError("clientDataJSON is not UTF-8 JSON", expected="JSON object") from None
    if not isinstance(doc, dict):
        raise DecodeError("clientDataJSON is not a JSON object", expected="JSON object")
    typ, challenge, origin = doc.get("type"), doc.get("challenge"), doc.get("origin")
    cross, top = doc.get("crossOrigin", False), doc.get("topOrigin")
    if not isinstance(typ, str) or not isinstance(origin, str):
        raise DecodeError("clientDataJSON type/origin missing", expected="strings")
    if not isinstance(cross, bool) or not (top is None or isinstance(top, str)):
        raise DecodeError("clientDataJSON crossOrigin/topOrigin malformed")
    raw_challenge = b64url_decode(challenge)
    return ClientData(typ, raw_challenge, origin, cross, top, str(challenge).rstrip("="))
