"""PEAP's TLVs ([MS-PEAP] §2.2.8)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.eap_tlv import CryptoBinding, Result, Tlv, TlvType, decode_tlvs, encode_tlvs
from eapkit.errors import DecodeError

tlvs = st.builds(Tlv, st.integers(0, 0x3FFF), st.binary(max_size=80), st.booleans())


@given(st.lists(tlvs, max_size=6))
def test_tlvs_round_trip(items: list[Tlv]) -> None:
    assert decode_tlvs(encode_tlvs(items)) == items


@given(st.binary(max_size=120))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_tlvs(data)
    with contextlib.suppress(DecodeError):
        CryptoBinding.decode(data)


def test_result_tlv_as_hostapd_sends_it() -> None:
    """hostapd eap_server_peap.c: 80 03 00 02 00 01 (mandatory Result, Success)."""
    assert Tlv.result(Result.SUCCESS).encode() == bytes.fromhex("800300020001")
    assert decode_tlvs(bytes.fromhex("800300020002")) == [Tlv(TlvType.RESULT, b"\x00\x02")]


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=20, max_size=20))
def test_crypto_binding_round_trip(nonce: bytes, mac: bytes) -> None:
    cb = CryptoBinding(0, 0, CryptoBinding.REQUEST, nonce, mac)
    assert CryptoBinding.decode(cb.encode()) == cb


def test_truncated_tlv() -> None:
    with pytest.raises(DecodeError):
        decode_tlvs(bytes.fromhex("8003000500"))
