"""RFC 3748 codec: round trips, the Length rules of §4, and the DecodeError-only promise."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit import DecodeError, EapkitError
from eapkit.packet import (
    Code,
    EapType,
    Expanded,
    ExpandedNak,
    Failure,
    Identity,
    Message,
    MethodData,
    MethodId,
    Nak,
    Success,
    decode,
    decode_frame,
    method_message,
)
from tests.strategies import messages


@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    wire = msg.encode()
    assert decode(wire) == msg
    assert decode_frame(wire) == (msg, len(wire))


@given(messages, st.binary(min_size=1, max_size=40))
def test_bytes_beyond_length_are_padding(msg: Message, padding: bytes) -> None:
    """RFC 3748 §4: octets outside the Length field are link-layer padding."""
    wire = msg.encode()
    decoded, used = decode_frame(wire + padding)
    assert decoded == msg
    assert used == len(wire)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        msg = decode(data)
    except DecodeError as exc:
        assert isinstance(exc, EapkitError)
        assert "offset" in str(exc)
    else:
        assert msg.encode() == data[: len(msg.encode())]


@settings(max_examples=2000)
@given(
    st.sampled_from([1, 2]),
    st.integers(0, 255),
    st.sampled_from([1, 2, 3, 254, 255, 0, 6, 13]),
    st.binary(max_size=40),
    st.integers(0, 60),
)
def test_structured_garbage_raises_only_decode_error(
    code: int, ident: int, eap_type: int, body: bytes, length: int
) -> None:
    """Header-shaped input reaches the type-specific branches far more often."""
    data = bytes((code, ident)) + length.to_bytes(2, "big") + bytes((eap_type,)) + body
    with contextlib.suppress(DecodeError):
        decode(data)


@pytest.mark.slow
@settings(max_examples=10_000)
@given(st.binary(max_size=64))
def test_ten_thousand_arbitrary_inputs(data: bytes) -> None:
    """The foundation issue's bar: >= 10,000 arbitrary inputs, DecodeError only.  In the
    default suite this runs at 10,000 examples of short inputs; HYPOTHESIS_PROFILE=long
    raises every other test to 20,000."""
    with contextlib.suppress(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"", 0),
        (b"\x01\x00\x00", 0),
        (b"\x01\x00\x00\x03", 2),
        (b"\x01\x00\x00\x09\x01", 2),
        (b"\x03\x00\x00\x05\x00", 2),
        (b"\x01\x00\x00\x04", 4),
        (b"\x05\x00\x00\x04", 0),
        (b"\x01\x00\x00\x06\x03\x06", 4),
        (b"\x02\x00\x00\x05\x03", 5),
        (b"\x01\x00\x00\x05\x00", 4),
        (b"\x01\x00\x00\x08\xfe\x00\x00\x00", 4),
    ],
)
def test_malformed_headers_name_the_offset(data: bytes, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.offset == offset


def test_non_bytes_input_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode("not bytes")  # type: ignore[arg-type]


def test_classes_chosen_by_code_and_type() -> None:
    assert decode(b"\x03\x07\x00\x04") == Success(7)
    assert decode(b"\x04\x07\x00\x04") == Failure(7)
    assert decode(b"\x02\x01\x00\x0a\x01alice") == Identity(Code.RESPONSE, 1, b"alice")
    assert decode(b"\x02\x01\x00\x06\x03\x06") == Nak(1, (EapType.GTC,))
    assert decode(b"\x01\x02\x00\x07\x06hi") == MethodData(Code.REQUEST, 2, 6, b"hi")
    expanded_nak = bytes.fromhex("0201001cfe00000000000003fe00000000000006fe0000010000002a")
    assert decode(expanded_nak) == ExpandedNak(1, (MethodId(0, 6), MethodId(1, 42)))
    vendor = bytes.fromhex("0105000dfe00002800000001") + b"x"
    assert decode(vendor) == Expanded(Code.REQUEST, 5, 40, 1, b"x")


def test_constructors_refuse_impossible_fields() -> None:
    with pytest.raises(ValueError):
        Success(256)
    with pytest.raises(ValueError):
        Identity(Code.SUCCESS, 1)
    with pytest.raises(ValueError):
        Nak(1, ())
    with pytest.raises(ValueError):
        MethodData(Code.REQUEST, 1, EapType.NAK)
    with pytest.raises(ValueError):
        Expanded(Code.REQUEST, 1, 0, 3)
    with pytest.raises(ValueError):
        MethodData(Code.REQUEST, 1, 6, b"x" * 70000).encode()


def test_method_message_uses_legacy_type_when_it_can() -> None:
    legacy = method_message(Code.REQUEST, 3, MethodId(0, 13), b"\x20")
    assert legacy == MethodData(Code.REQUEST, 3, 13, b"\x20")
    vendor = method_message(Code.REQUEST, 3, MethodId(9, 13), b"\x20")
    assert vendor == Expanded(Code.REQUEST, 3, 9, 13, b"\x20")
    assert str(MethodId(0, 13)) == "TLS"
    assert str(MethodId(9, 13)) == "expanded 9:13"
