"""Browser JSON: ``PublicKeyCredential.toJSON()`` (WebAuthn L3 §5.1.8) as the page posts it,
decoded strictly (DecodeError only)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from eapkit.errors import DecodeError
from eapkit.verify.webauthn.authenticator_data import MAX_CREDENTIAL_ID
from eapkit.verify.webauthn.base64url import b64url_decode

__all__ = ["ParsedAssertion", "as_mapping", "parse_assertion", "parse_raw_id"]


class ParsedAssertion(NamedTuple):
    raw_id: bytes
    client_data_json: bytes
    authenticator_data: bytes
    signature: bytes
    user_handle: bytes | None


def as_mapping(response: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    if isinstance(response, str | bytes | bytearray):
        try:
            response = json.loads(response)
        except (ValueError, RecursionError):
            raise DecodeError("response is not JSON", expected="PublicKeyCredential JSON") from None
    if type(response) is not dict and not isinstance(response, Mapping):
        raise DecodeError("response is not a JSON object", expected="PublicKeyCredential JSON")
    return response


# rawId text -> credential ID, for texts that passed every check below: decoding is a
# pure function of the text, so a known text needs neither decoding nor checking again.
_RAW_IDS: dict[str, bytes] = {}
_RAW_IDS_MAX = 4096


def parse_raw_id(resp: Mapping[str, Any]) -> bytes:
    if resp.get("type") != "public-key":
        raise DecodeError("credential type is not public-key")
    text = resp.get("rawId")
    raw_id = _RAW_IDS.get(text) if type(text) is str else None
    checked = raw_id is not None
    if raw_id is None:
        raw_id = b64url_decode(text)
    text_id = resp.get("id")
    if text_id is not None and text_id != text and b64url_decode(text_id) != raw_id:
        raise DecodeError("id and rawId differ")
    if not checked:
        if not 1 <= len(raw_id) <= MAX_CREDENTIAL_ID:
            raise DecodeError("credential ID length", expected="1..1023 bytes")
        if len(_RAW_IDS) >= _RAW_IDS_MAX:
            _RAW_IDS.clear()
        _RAW_IDS[str(text)] = raw_id  # a str: b64url_decode took it
    return raw_id


def parse_assertion(response: Mapping[str, Any] | str | bytes) -> ParsedAssertion:
    resp = as_mapping(response)
    raw_id = parse_raw_id(resp)
    r = resp.get("response")
    if type(r) is not dict and not isinstance(r, Mapping):
        raise DecodeError("no response member", expected="AuthenticatorAssertionResponseJSON")
    uh = r.get("userHandle")
    return ParsedAssertion(
        raw_id,
        b64url_decode(r.get("clientDataJSON")),
        b64url_decode(r.get("authenticatorData")),
        b64url_decode(r.get("signature")),
        None if uh is None or uh == "" else b64url_decode(uh),
    )
