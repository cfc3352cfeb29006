"""The APDU transport (tokens.pcsc) against scripted links, and the APDU/TLV codecs."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import DecodeError
from tokens.apdu import Apdu, parse_tlvs, tlv, tlv_dict
from tokens.errors import StatusError, TransportError, sw_meaning
from tokens.pcsc import ApduTransport, atr_allows_extended_length


class ScriptedLink:
    """A card link that answers from a function and records what it was sent."""

    def __init__(self, answer: object, atr: bytes = bytes.fromhex("3b8080018000")) -> None:
        self.answer = answer
        self.sent: list[bytes] = []
        self.transactions = 0
        self.open_transactions = 0
        self._atr = atr

    @property
    def atr(self) -> bytes:
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        assert self.open_transactions == 1, "every exchange runs inside a transaction"
        out: bytes = self.answer(apdu)  # type: ignore[operator]
        return out

    def begin_transaction(self) -> None:
        self.transactions += 1
        self.open_transactions += 1

    def end_transaction(self) -> None:
        self.open_transactions -= 1

    def close(self) -> None:
        pass


def test_get_response_collects_61xx_parts() -> None:
    payload = bytes(range(256)) * 2 + b"tail"
    answers = [
        payload[:256] + b"\x61\x00",
        payload[256:512] + b"\x61\x04",
        payload[512:] + b"\x90\x00",
    ]

    def answer(apdu: bytes) -> bytes:
        return answers.pop(0)

    link = ScriptedLink(answer)
    out = ApduTransport(link).send(0, 0xA2, 0, 0, b"x")
    assert out == payload
    assert link.sent[1] == b"\x00\xc0\x00\x00\x00"
    assert link.sent[2] == b"\x00\xc0\x00\x00\x04"
    assert link.open_transactions == 0


def test_get_response_instruction_is_configurable() -> None:
    def answer(apdu: bytes) -> bytes:
        return b"ab\x61\x02" if apdu[1] == 0x01 else b"cd\x90\x00"

    link = ScriptedLink(answer)
    assert ApduTransport(link, get_response_ins=0xA5).send(0, 1, 0, 0) == b"abcd"
    assert link.sent[1][1] == 0xA5


def test_wrong_le_is_reissued_with_the_card_s_le() -> None:
    def answer(apdu: bytes) -> bytes:
        return b"\x6c\x05" if apdu[-1] != 5 else b"hello\x90\x00"

    link = ScriptedLink(answer)
    assert ApduTransport(link).send(0, 0xB0, 0, 0, le=256) == b"hello"
    assert link.sent == [b"\x00\xb0\x00\x00\x00", b"\x00\xb0\x00\x00\x05"]


def test_long_data_is_chained_without_extended_length() -> None:
    received = bytearray()

    def answer(apdu: bytes) -> bytes:
        parsed = Apdu.decode(apdu)
        received.extend(parsed.data)
        return b"\x90\x00"

    link = ScriptedLink(answer)
    data = bytes(i % 251 for i in range(700))
    ApduTransport(link, extended=False).send(0, 0xDB, 0x3F, 0xFF, data)
    assert bytes(received) == data
    assert [a[0] for a in link.sent] == [0x10, 0x10, 0x00]
    assert all(len(Apdu.decode(a).data) <= 255 for a in link.sent)
    assert link.transactions == 1


def test_chain_stops_at_the_first_refused_part() -> None:
    link = ScriptedLink(lambda apdu: b"\x68\x84")
    with pytest.raises(StatusError) as info:
        ApduTransport(link, extended=False).send(0, 0xDB, 0, 0, bytes(600))
    assert info.value.sw == 0x6884
    assert "chaining" in info.value.meaning
    assert len(link.sent) == 1


def test_extended_length_from_the_atr() -> None:
    # 3B 88 80 01 | historical: 80 73 C0 21 C0 57 59 4B (card capabilities, ext. length)
    ext_atr = bytes.fromhex("3b888001" + "8073c021c057594b") + b"\x00"
    assert atr_allows_extended_length(ext_atr)
    assert not atr_allows_extended_length(bytes.fromhex("3b8080018000"))
    assert not atr_allows_extended_length(b"\x3b")
    link = ScriptedLink(lambda apdu: b"\x90\x00", atr=ext_atr)
    transport = ApduTransport(link)
    assert transport.extended
    transport.send(0, 0xDB, 0, 0, bytes(600))
    assert len(link.sent) == 1
    assert Apdu.decode(link.sent[0]).data == bytes(600)


@given(st.binary(max_size=40))
def test_atr_parser_never_raises(atr: bytes) -> None:
    assert atr_allows_extended_length(atr) in (True, False)


def test_status_errors_carry_meanings_and_retries() -> None:
    link = ScriptedLink(lambda apdu: b"\x63\xc2")
    with pytest.raises(StatusError) as info:
        ApduTransport(link).send(0, 0x20, 0, 0x80, b"12345678", what="VERIFY PIN")
    assert info.value.retries == 2
    assert "2 tries left" in str(info.value)
    assert "12345678" not in str(info.value)
    assert sw_meaning(0x6A82) == "file or application not found"
    assert "more bytes" in sw_meaning(0x6110)


def test_response_without_status_word_is_a_transport_error() -> None:
    with pytest.raises(TransportError):
        ApduTransport(ScriptedLink(lambda apdu: b"\x90")).send(0, 0, 0, 0)


def test_endless_61xx_is_cut_off() -> None:
    with pytest.raises(TransportError):
        ApduTransport(ScriptedLink(lambda apdu: b"\x00\x61\x01")).send(0, 0, 0, 0)


apdus = st.builds(
    Apdu,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=300),
    st.none() | st.integers(1, 65536),
)


@given(apdus)
def test_apdu_round_trip(apdu: Apdu) -> None:
    assert Apdu.decode(apdu.encode(extended=True)) == apdu
    if len(apdu.data) <= 255 and (apdu.le is None or apdu.le <= 256):
        assert Apdu.decode(apdu.encode()) == apdu


@given(st.binary(max_size=300))
def test_apdu_decoder_raises_only_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        Apdu.decode(raw)


tags = st.sampled_from([0x4F, 0x53, 0x70, 0x7C, 0x7F49, 0x5FC105, 0x81])


@given(st.lists(st.tuples(tags, st.binary(max_size=300)), max_size=5))
def test_tlv_round_trip(items: list[tuple[int, bytes]]) -> None:
    encoded = b"".join(tlv(t, v) for t, v in items)
    assert parse_tlvs(encoded) == items


@given(st.binary(max_size=200))
def test_tlv_decoder_raises_only_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        tlv_dict(raw)
