"""Property tests: whatever bytes arrive in any field, the verifier answers with a verdict.

DESIGN.md ("Errors"): decoders of untrusted bytes raise only DecodeError, verifiers never
raise for their input.  Each field of an otherwise valid assertion or registration is
replaced by arbitrary bytes (or arbitrary JSON); the answer must be a refusal verdict, and
only the untouched input may be accepted.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from fido2 import cbor
from hypothesis import assume, example, given
from hypothesis import strategies as st

from eapkit.errors import DecodeError
from eapkit.rand import DeterministicRandom
from eapkit.store import MemoryStore
from eapkit.testing.soft_authenticator import SoftAuthenticator
from eapkit.verify.webauthn import (
    CredentialPublicKey,
    RegistrationVerdict,
    WebAuthnVerdict,
    WebAuthnVerifier,
    b64url_decode,
    b64url_encode,
    decode_cose_key_map,
    parse_client_data,
    parse_credential_public_key,
    verify_assertion,
)
from eapkit.verify.webauthn.client_data import _parse_client_data_json
from eapkit.verify.webauthn.credential_json import parse_raw_id

_ABSENT = object()
RP = "example.org"
ORIGIN = "https://example.org"
T0 = 1_800_000_000.0

_rp = WebAuthnVerifier(MemoryStore(), rp_id=RP, origins=[ORIGIN], rand=DeterministicRandom(1))
_key = SoftAuthenticator(rand=DeterministicRandom(2), attestation="packed-self")
_reg_opts = _rp.begin_registration("alice", now=T0)
_REG = _key.create(_reg_opts, origin=ORIGIN, alg=-7)
assert _rp.finish_registration(_REG, now=T0).ok
_CRED = next(iter(_key.credentials.values()))


def _assertion() -> tuple[dict[str, Any], dict[str, Any]]:
    opts = _rp.begin_authentication("alice", now=T0)
    return opts, _key.get(opts, origin=ORIGIN, sign_count=0)


_OPTS, _RESP = _assertion()
GOOD: dict[str, Any] = {
    "credential_public_key": _CRED.public_key,
    "authenticator_data": b64url_decode(_RESP["response"]["authenticatorData"]),
    "client_data_json": b64url_decode(_RESP["response"]["clientDataJSON"]),
    "signature": b64url_decode(_RESP["response"]["signature"]),
    "rp_id": RP,
    "origin": ORIGIN,
    "challenge": b64url_decode(_OPTS["challenge"]),
}
assert verify_assertion(**GOOD).ok

BYTE_FIELDS = [
    "credential_public_key",
    "authenticator_data",
    "client_data_json",
    "signature",
    "challenge",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


@given(field=st.sampled_from(BYTE_FIELDS), data=st.binary(max_size=300))
def test_assertion_any_bytes_in_any_field(field: str, data: bytes) -> None:
    v = verify_assertion(**{**GOOD, field: data})
    assert isinstance(v, WebAuthnVerdict)
    assert v.ok == (data == GOOD[field]), v


@given(field=st.sampled_from(BYTE_FIELDS), pos=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_assertion_one_flipped_bit_is_refused(field: str, pos: int, bit: int) -> None:
    data = bytearray(GOOD[field])
    i = pos % len(data)
    data[i] ^= 1 << bit
    v = verify_assertion(**{**GOOD, field: bytes(data)})
    assert not v.ok, (field, i, bit)


@given(text=st.text(max_size=40))
@example("a" * 5)
@example("====")
@example("ab+/")
def test_b64url_decode_value_or_decode_error(text: str) -> None:
    with contextlib.suppress(DecodeError):
        assert isinstance(b64url_decode(text), bytes)


@given(data=st.binary(max_size=100))
def test_b64url_round_trip(data: bytes) -> None:
    enc = b64url_encode(data)
    assert "=" not in enc and "+" not in enc and "/" not in enc
    assert b64url_decode(enc) == data


@given(data=st.binary(max_size=200))
def test_client_data_decoder(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        parse_client_data(data)


@given(doc=json_values)
def test_client_data_decoder_json(doc: object) -> None:
    with contextlib.suppress(DecodeError):
        parse_client_data(json.dumps(doc).encode())


def _client_data_by_json(raw: bytes) -> object:
    try:
        return _parse_client_data_json(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "DecodeError"
    except DecodeError:
        return "DecodeError"


def _client_data_fast(raw: bytes) -> object:
    try:
        return parse_client_data(raw)
    except DecodeError:
        return "DecodeError"


_b64url_text = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=60
)
_near_template = st.builds(
    lambda typ, chal, origin, cross, top, extra, ensure_ascii, keep: json.dumps(
        {
            k: v
            for k, v in (
                ("type", typ),
                ("challenge", chal),
                ("origin", origin),
                ("crossOrigin", cross),
                ("topOrigin", top),
                *extra.items(),
            )
            if v is not _ABSENT and k in keep
        },
        separators=(",", ":"),
        ensure_ascii=ensure_ascii,
    ).encode(),
    typ=st.sampled_from(["webauthn.get", "webauthn.create"]) | st.text(max_size=12),
    chal=_b64url_text | st.text(max_size=20) | st.integers(),
    origin=st.sampled_from([ORIGIN, "https://a.example", ""]) | st.text(max_size=20),
    cross=st.sampled_from([False, True, _ABSENT, None, 0, "false"]),
    top=st.sampled_from([_ABSENT, ORIGIN, None]),
    extra=st.dictionaries(st.sampled_from(["other", "type", "origin"]), st.text(max_size=5)),
    ensure_ascii=st.booleans(),
    keep=st.sets(
        st.sampled_from(["type", "challenge", "origin", "crossOrigin", "topOrigin", "other"])
    ).map(lambda ks: ks | {"type", "challenge", "origin"}),
)


@given(raw=_near_template | st.binary(max_size=120))
@example(raw=b'{"type":"webauthn.get","challenge":"AAAA","origin":"https://x","crossOrigin":true}')
@example(raw=b'{"type":"webauthn.get","challenge":"AAA","origin":"https://x"}')
@example(raw=b'{"type":"webauthn.get","challenge":"AAAA","origin":"https://x\\u0041"}')
def test_client_data_fast_path_answers_as_the_json_parser(raw: bytes) -> None:
    # The browser-template fast path is an optimisation only: same value, same refusals.
    assert _client_data_fast(raw) == _client_data_by_json(raw)


def _credential_id_outcome(resp: dict[str, Any]) -> object:
    try:
        return parse_raw_id(resp)
    except DecodeError as exc:
        return str(exc)


_id_texts = st.sampled_from(["", "AA", "AAA", "AAAA", "A", "AA==", "a+b/", "_-_-"]) | (
    st.binary(min_size=0, max_size=1030).map(b64url_encode)
)


@given(raw_id=_id_texts, text_id=st.none() | _id_texts)
def test_credential_id_answers_the_same_when_its_text_is_known(
    raw_id: str, text_id: str | None
) -> None:
    # parse_raw_id remembers rawId texts that passed; the second answer (from the
    # memo when the first passed) must equal the first, and an id that differs from a
    # known rawId is still refused.
    resp: dict[str, Any] = {"type": "public-key", "rawId": raw_id}
    if text_id is not None:
        resp["id"] = text_id
    first = _credential_id_outcome(resp)
    assert _credential_id_outcome(resp) == first
    assert _credential_id_outcome({"type": "public-key", "rawId": raw_id}) == (
        _credential_id_outcome({"type": "public-key", "rawId": raw_id})
    )
    if isinstance(first, bytes):
        other = b64url_encode(first + b"x")
        assert isinstance(
            _credential_id_outcome({"type": "public-key", "rawId": raw_id, "id": other}), str
        )


cose_maps = st.dictionaries(
    st.integers(-4, 4),
    st.one_of(
        st.integers(-300, 300),
        st.binary(max_size=70),
        st.sampled_from([-7, -8, -35, -36, -257, -37, -47, -19, -53, -9, -65535, 1, 2, 3, 6, 7]),
    ),
    max_size=6,
)


@given(data=st.binary(max_size=200))
def test_cose_key_decoder_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        assert isinstance(parse_credential_public_key(data), CredentialPublicKey)


@given(
    m=st.dictionaries(
        st.integers(-(2**63), 2**64 - 1),
        st.one_of(st.integers(-(2**63), 2**64 - 1), st.binary(max_size=300), st.text()),
        max_size=8,
    )
)
def test_cose_map_decoder_round_trip(m: dict[int, Any]) -> None:
    """Our strict decoder reads what python-fido2's encoder writes."""
    assert decode_cose_key_map(cbor.encode(m)) == m


def test_cose_map_decoder_is_strict() -> None:
    good = _CRED.public_key
    assert decode_cose_key_map(good)[3] == -7
    bad = [
        good[:-1],  # a byte string shorter than its length (python-fido2 accepts this)
        good + b"\x00",
        bytes([good[0] + 1]) + good[1:],  # one more pair announced than present
        b"\xbf\x01\x02\xff",  # indefinite-length map
        b"\xa2\x01\x02\x01\x03",  # repeated label
        b"\xa1\x61a\x01",  # text label
        b"\xa1\x01\x81\x01",  # array value
        b"\x81\x01",
        b"",
    ]
    for data in bad:
        with pytest.raises(DecodeError):
            decode_cose_key_map(data)
        with pytest.raises(DecodeError):
            parse_credential_public_key(data)


@given(m=cose_maps)
def test_cose_key_decoder_maps(m: dict[int, Any]) -> None:
    try:
        key = parse_credential_public_key(cbor.encode(m))
    except DecodeError:
        return
    assert key.verify(b"\x00" * 64, b"data") is False


def _replace_in(resp: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(resp))
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


ASSERTION_PATHS = [
    ("id",),
    ("rawId",),
    ("type",),
    ("response",),
    ("response", "clientDataJSON"),
    ("response", "authenticatorData"),
    ("response", "signature"),
    ("response", "userHandle"),
]


@given(
    path=st.sampled_from(ASSERTION_PATHS),
    value=st.one_of(json_values, st.binary(max_size=120).map(b64url_encode)),
)
def test_finish_authentication_any_json(path: tuple[str, ...], value: Any) -> None:
    opts = _rp.begin_authentication(None, now=T0)
    resp = _key.get(opts, origin=ORIGIN, sign_count=0)
    changed = _replace_in(resp, path, value)
    assume(changed != resp)
    v = _rp.finish_authentication(changed, now=T0 + 1)
    assert isinstance(v, WebAuthnVerdict)
    assert not v.ok or path[-1] in ("id", "userHandle"), (path, v)


@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200), json_values))
def test_finish_authentication_anything(raw: Any) -> None:
    v = _rp.finish_authentication(raw, now=T0 + 1)
    assert isinstance(v, WebAuthnVerdict) and not v.ok


REGISTRATION_PATHS = [
    ("id",),
    ("rawId",),
    ("type",),
    ("response",),
    ("response", "clientDataJSON"),
    ("response", "attestationObject"),
    ("response", "transports"),
]


@given(
    path=st.sampled_from(REGISTRATION_PATHS),
    value=st.one_of(json_values, st.binary(max_size=300).map(b64url_encode)),
)
def test_finish_registration_any_json(path: tuple[str, ...], value: Any) -> None:
    opts = _rp.begin_registration("bob", now=T0)
    a = SoftAuthenticator(rand=DeterministicRandom(3), attestation="packed-self")
    resp = a.create(opts, origin=ORIGIN, alg=-8)
    changed = _replace_in(resp, path, value)
    assume(changed != resp)
    v = _rp.finish_registration(changed, now=T0 + 1)
    assert isinstance(v, RegistrationVerdict)
    assert not v.ok or path[-1] in ("id", "transports"), (path, v)
    if v.ok:
        assert v.stored is not None
        assert _rp.remove_credential("bob", v.stored.credential_id)


@given(
    data=st.binary(max_size=400),
    cut=st.integers(0, 2000),
)
def test_finish_registration_any_attestation_object(data: bytes, cut: int) -> None:
    """Arbitrary bytes, and every truncation of a real attestation object."""
    opts = _rp.begin_registration("carol", now=T0)
    a = SoftAuthenticator(rand=DeterministicRandom(4), attestation="packed-self")
    resp = a.create(opts, origin=ORIGIN, alg=-7)
    real = b64url_decode(resp["response"]["attestationObject"])
    for att in (data, real[: cut % len(real)]):
        changed = _replace_in(resp, ("response", "attestationObject"), b64url_encode(att))
        v = _rp.finish_registration(changed, now=T0 + 1)
        assert isinstance(v, RegistrationVerdict) and not v.ok
        opts = _rp.begin_registration("carol", now=T0)
        resp = a.create(opts, origin=ORIGIN, alg=-7)
