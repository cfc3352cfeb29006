"""The TEAP TLV codec and Outer TLV framing (RFC 9930 §4): round trips, strictness, and
garbage in ends in DecodeError only."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import DecodeError
from eapkit.teap_tlv import (
    BasicPasswordResponse,
    CryptoBinding,
    IdentityType,
    Status,
    Tlv,
    TlvType,
    decode_tlvs,
    encode_tlvs,
    parse_message,
    split_outer,
    with_outer,
)

tlvs = st.builds(Tlv, st.integers(0, 0x3FFF), st.binary(max_size=80), st.booleans())
bindings = st.builds(
    CryptoBinding,
    st.integers(0, 255),
    st.integers(0, 255),
    st.sampled_from([1, 2, 3]),
    st.sampled_from([0, 1]),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=20, max_size=20),
    st.binary(min_size=20, max_size=20),
)


@given(st.lists(tlvs, max_size=6))
def test_tlvs_round_trip(items: list[Tlv]) -> None:
    assert decode_tlvs(encode_tlvs(items)) == items


@given(st.binary(max_size=200))
def test_garbage_raises_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        parse_message(data)


@given(st.lists(tlvs, max_size=6))
def test_well_framed_garbage_values_raise_decode_error_only(items: list[Tlv]) -> None:
    """Valid TLV framing around random values: every known TLV's value checker runs."""
    with contextlib.suppress(DecodeError):
        parse_message(encode_tlvs(items))


@given(bindings)
def test_crypto_binding_round_trip(binding: CryptoBinding) -> None:
    assert CryptoBinding.decode(binding.encode()) == binding
    zeroed = binding.zeroed()
    assert zeroed[:8] == binding.tlv().encode()[:8]
    assert zeroed[40:] == bytes(40)


def test_crypto_binding_rejects_bad_flags_and_lengths() -> None:
    good = CryptoBinding(0, 1, 3, 0, bytes(32)).encode()
    for bad in (
        good[:-1],
        good + b"\0",
        good[:3] + b"\x40" + good[4:],
        good[:3] + b"\x32" + good[4:],
    ):
        with pytest.raises(DecodeError):
            CryptoBinding.decode(bad)


@given(st.binary(min_size=1, max_size=255), st.binary(max_size=255))
def test_basic_password_response_round_trip(user: bytes, password: bytes) -> None:
    response = BasicPasswordResponse(user, password)
    assert parse_message(response.tlv().encode()).basic_password_response == response
    assert "password=" not in repr(response)


@pytest.mark.parametrize(
    "value",
    [b"", b"\x00\x00", b"\x05ab", b"\x01a\x05xy", b"\x01a\x00extra"],
)
def test_basic_password_response_malformed(value: bytes) -> None:
    with pytest.raises(DecodeError):
        BasicPasswordResponse.decode(value)


def test_parse_message_reads_each_tlv() -> None:
    payload = bytes([2, 7, 0, 9, 1]) + b"alice"
    data = encode_tlvs(
        [
            Tlv.status(TlvType.INTERMEDIATE_RESULT, Status.SUCCESS),
            Tlv.status(TlvType.RESULT, Status.FAILURE),
            Tlv.identity_type(IdentityType.MACHINE),
            Tlv.eap_payload(payload),
            Tlv.error(2001),
            Tlv.nak(99),
            Tlv(TlvType.REQUEST_ACTION, b"\x02\x01"),
            Tlv(TlvType.IDENTITY_HINT, b"host/pc1", mandatory=False),
            Tlv.basic_password_request(b"Password: "),
            Tlv(TlvType.AUTHORITY_ID, b"eapkit", mandatory=False),
        ]
    )
    msg = parse_message(data)
    assert msg.intermediate_result is Status.SUCCESS
    assert msg.result is Status.FAILURE
    assert msg.identity_type is IdentityType.MACHINE
    assert msg.eap_payload == payload
    assert msg.errors == (2001,)
    assert msg.naks == ((0, 99),)
    assert msg.request_actions == ((2, 1),)
    assert msg.identity_hints == (b"host/pc1",)
    assert msg.basic_password_request == b"Password: "
    assert msg.authority_id == b"eapkit"
    assert msg.unsupported == ()


@pytest.mark.parametrize(
    "tlv",
    [
        Tlv(TlvType.RESULT, b"\x00\x03"),
        Tlv(TlvType.RESULT, b"\x00"),
        Tlv(TlvType.IDENTITY_TYPE, b"\x00\x03"),
        Tlv(TlvType.ERROR, b"\x00\x00\x07"),
        Tlv(TlvType.NAK, b"\x00\x00\x00\x00\x00"),
        Tlv(TlvType.EAP_PAYLOAD, b"\x02\x01\x00"),
        Tlv(TlvType.EAP_PAYLOAD, b"\x02\x01\x00\x09\x01"),
        Tlv(TlvType.CRYPTO_BINDING, bytes(56)),
    ],
)
def test_malformed_known_tlv_is_decode_error(tlv: Tlv) -> None:
    with pytest.raises(DecodeError):
        parse_message(tlv.encode())


@pytest.mark.parametrize("kind", [TlvType.RESULT, TlvType.EAP_PAYLOAD, TlvType.CRYPTO_BINDING])
def test_a_once_only_tlv_twice_is_decode_error(kind: TlvType) -> None:
    one = {
        TlvType.RESULT: Tlv.status(TlvType.RESULT, Status.SUCCESS),
        TlvType.EAP_PAYLOAD: Tlv.eap_payload(bytes([2, 1, 0, 4])),
        TlvType.CRYPTO_BINDING: CryptoBinding(0, 1, 2, 0, bytes(32)).tlv(),
    }[kind]
    with pytest.raises(DecodeError):
        parse_message(one.encode() * 2)


def test_unknown_mandatory_is_reported_optional_skipped() -> None:
    data = encode_tlvs(
        [Tlv(0x3000, b"x"), Tlv(0x3001, b"y", mandatory=False), Tlv(TlvType.PAC, b"", True)]
    )
    assert parse_message(data).unsupported == (0x3000, TlvType.PAC)


def test_outer_tlvs_round_trip_and_are_removed() -> None:
    outer = Tlv(TlvType.AUTHORITY_ID, b"\x01" * 16, mandatory=False).encode()
    start = bytes([0x21])  # S, version 1
    framed = with_outer(start, outer)
    assert framed[0] == 0x31 and framed[1:5] == len(outer).to_bytes(4, "big")
    assert split_outer(framed) == (start, outer)
    with_length = bytes([0x81]) + (3).to_bytes(4, "big") + b"abc"
    assert split_outer(with_outer(with_length, outer)) == (with_length, outer)
    assert split_outer(start) == (start, b"")


@pytest.mark.parametrize(
    "data",
    [
        bytes([0x31]),
        bytes([0x31, 0, 0, 0, 9, 1, 2]),
        bytes([0x91, 0, 0]),
        bytes([0x31, 0, 0, 0, 5]) + Tlv(1, b"x", mandatory=True).encode(),
        bytes([0x31, 0, 0, 0, 3, 0, 1, 0]),
    ],
)
def test_malformed_outer_tlvs(data: bytes) -> None:
    with pytest.raises(DecodeError):
        split_outer(data)


@given(st.binary(max_size=60))
def test_split_outer_garbage(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        split_outer(bytes([0x31]) + data)
