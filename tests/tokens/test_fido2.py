"""FIDO2 over PC/SC: python-fido2's client against our virtual authenticator.

Registrations and assertions are checked twice, by two verifiers no test here shares
code with the card: eapkit.verify.webauthn (through tokens.fido2.BenchRelyingParty) and
python-fido2's own Fido2Server (with its packed-attestation verifier).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import pytest
from fido2.attestation.packed import PackedAttestation
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap2.base import Ctap2
from fido2.pcsc import CtapPcscDevice
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    AttestationObject,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.errors import DecodeError
from tests.tokens.conftest import READERS, CardFactory
from tokens.errors import TokenError
from tokens.fido2 import BenchRelyingParty, Fido2Token, PinNeededError, open_device
from tokens.sim import cbor, make_card

RP_ID = "bench.eapkit.test"


class Pin(UserInteraction):
    def __init__(self, pin: str) -> None:
        self.pin = pin

    def request_pin(self, permissions: object, rp_id: str | None) -> str:
        return self.pin


def device(reader: str = READERS[0]) -> CtapPcscDevice:
    (dev,) = list(CtapPcscDevice.list_devices(reader))
    return dev


@pytest.mark.interop
def test_python_fido2_registers_and_asserts_with_pin(virtual_card: CardFactory) -> None:
    virtual_card("fido2", {"fido2": {"pin": "4321"}})
    dev = device()
    info = Ctap2(dev).get_info()
    assert info.options["clientPin"] is True and 2 in info.pin_uv_protocols

    attested: list[str] = []

    def verify_attestation(att: AttestationObject, client_data_hash: bytes) -> None:
        result = PackedAttestation().verify(att.att_stmt, att.auth_data, client_data_hash)
        attested.append(result.attestation_type.name)

    server = Fido2Server(
        PublicKeyCredentialRpEntity(id=RP_ID, name="bench"),
        attestation=AttestationConveyancePreference.DIRECT,
        verify_attestation=verify_attestation,
    )
    client = Fido2Client(dev, DefaultClientDataCollector(f"https://{RP_ID}"), Pin("4321"))
    create, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=b"user-1", name="alice"),
        resident_key_requirement=ResidentKeyRequirement.REQUIRED,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    auth_data = server.register_complete(state, client.make_credential(create.public_key))
    assert attested == ["SELF"]
    assert auth_data.is_user_verified()
    assert auth_data.credential_data is not None
    creds = [auth_data.credential_data]

    options, state = server.authenticate_begin(
        creds, user_verification=UserVerificationRequirement.REQUIRED
    )
    response = client.get_assertion(options.public_key).get_response(0)
    assert server.authenticate_complete(state, creds, response) == creds[0]

    # usernameless: the discoverable credential answers with its user handle
    options, state = server.authenticate_begin(
        user_verification=UserVerificationRequirement.DISCOURAGED
    )
    response = client.get_assertion(options.public_key).get_response(0)
    server.authenticate_complete(state, creds, response)
    assert response.response.user_handle == b"user-1"

    # a wrong PIN is refused by the card
    wrong = Fido2Client(device(), DefaultClientDataCollector(f"https://{RP_ID}"), Pin("0000"))
    options, state = server.authenticate_begin(
        creds, user_verification=UserVerificationRequirement.REQUIRED
    )
    with pytest.raises(Exception, match="PIN"):
        wrong.get_assertion(options.public_key)


@pytest.mark.interop
def test_tokens_fido2_feeds_eapkit_s_verifier(virtual_card: CardFactory) -> None:
    state_file = virtual_card("fido2", {"fido2": {"pin": "246810"}})
    rp = BenchRelyingParty(RP_ID)
    token = Fido2Token(open_device(READERS[0]), rp.origin, pin="246810")
    registration = rp.register(token, "alice", resident_key=True, now=1_000.0)
    assert registration.ok, registration
    assert registration.credential is not None
    assert registration.credential.attestation_type == "self"
    first = rp.authenticate(token, "alice", now=1_010.0)
    assert first.ok and first.user == "alice" and first.user_verified, first
    second = rp.authenticate(token, None, now=1_020.0)  # usernameless
    assert second.ok and second.user == "alice", second
    assert second.sign_count is not None and first.sign_count is not None
    assert second.sign_count > first.sign_count
    assert len(json.loads(state_file.read_text())["fido2"]["credentials"]) == 1

    # without the PIN the key refuses to make a credential
    no_pin = Fido2Token(open_device(READERS[0]), rp.origin)
    with pytest.raises(PinNeededError):
        rp.register(no_pin, "bob", now=1_030.0)


@pytest.mark.interop
def test_key_without_pin_registers_with_user_presence_only(virtual_card: CardFactory) -> None:
    virtual_card("fido2", {})
    rp = BenchRelyingParty(RP_ID, user_verification="discouraged")
    token = Fido2Token(open_device(READERS[0]), rp.origin)
    registration = rp.register(token, "carol", now=5.0)
    assert registration.ok and registration.credential is not None
    assert not registration.credential.user_verified
    verdict = rp.authenticate(token, "carol", now=6.0)
    assert verdict.ok and not verdict.user_verified


# -- the card's CTAP2 engine, in process ----------------------------------------------------


def ctap(card: Any, command: int, params: dict[int, Any] | None = None) -> tuple[int, Any]:
    body = bytes((command,)) + (cbor.encode(params) if params is not None else b"")
    card.transmit(bytes.fromhex("00a4040008a0000006472f0001"))
    raw = card.transmit(bytes((0x80, 0x10, 0x00, 0x00, len(body))) + body + b"\x00")
    assert raw[-2:] == b"\x90\x00"
    return raw[0], cbor.decode(raw[1:-2]) if len(raw) > 3 else None


def test_ctap_errors_in_process() -> None:
    card = make_card("fido2", {"fido2": {"pin": "4321"}})
    cdh = hashlib.sha256(b"x").digest()
    make = {
        1: cdh,
        2: {"id": RP_ID},
        3: {"id": b"u", "name": "u"},
        4: [{"alg": -7, "type": "public-key"}],
    }
    assert ctap(card, 0x01, make)[0] == 0x36  # PIN required
    assert ctap(card, 0x01, {**make, 4: [{"alg": -257, "type": "public-key"}]})[0] == 0x26
    assert ctap(card, 0x02, {1: RP_ID, 2: cdh})[0] == 0x2E  # no credentials
    assert ctap(card, 0x01, {1: cdh})[0] == 0x14  # missing parameter
    assert ctap(card, 0x06, {1: 2, 2: 1}) == (0, {3: 8})  # PIN retries
    assert ctap(card, 0x42)[0] == 0x01  # invalid command
    status, _ = ctap(card, 0x07)  # reset
    assert status == 0
    assert ctap(card, 0x04)[1][4]["clientPin"] is False


def test_sim_cbor_agrees_with_python_fido2_cbor() -> None:
    from fido2 import cbor as theirs

    # python-fido2 has no null; everything else CTAP2 uses is compared
    value = {1: b"\x00" * 40, "b": [1, -1, -500, 2**40, True, "é"], -7: {"k": False}, "aa": 0}
    assert cbor.encode(value) == theirs.encode(value)
    assert cbor.decode(theirs.encode(value)) == value


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
)
cbor_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.integers(-100, 100) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(cbor_values)
def test_cbor_round_trip(value: Any) -> None:
    assert cbor.decode(cbor.encode(value)) == value


@given(st.binary(max_size=100))
def test_cbor_decoder_raises_only_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        cbor.decode(raw)


@settings(max_examples=100)
@given(st.integers(0, 255), st.binary(max_size=200))
def test_authenticator_survives_arbitrary_ctap_commands(command: int, payload: bytes) -> None:
    card = make_card("fido2", {"fido2": {"pin": "4321"}})
    card.transmit(bytes.fromhex("00a4040008a0000006472f0001"))
    body = bytes((command,)) + payload
    raw = card.transmit(bytes((0x80, 0x10, 0x00, 0x00, len(body))) + body + b"\x00")
    assert raw[-2:] in (b"\x90\x00", b"\x61\x00") or raw[-2] == 0x61


def test_token_error_is_the_root() -> None:
    assert issubclass(PinNeededError, TokenError)
