"""RFC 5216 §3.1 framing: flags, the TLS Message Length, fragments and reassembly."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import ConfigError, DecodeError
from eapkit.tlsio.framing import (
    EapTlsFlags,
    Fragment,
    Fragmenter,
    FramingConfig,
    Reassembler,
    fragments,
)

L, M, S = EapTlsFlags.LENGTH_INCLUDED, EapTlsFlags.MORE_FRAGMENTS, EapTlsFlags.START


def test_start_and_ack_encoding() -> None:
    assert Fragment(S).encode() == b"\x20"
    assert Fragment().encode() == b"\x00"
    assert Fragment(version=1).encode() == b"\x01"  # PEAPv1 / TTLSv0 style version bits
    assert Fragment.decode(b"\x00").is_ack
    assert not Fragment.decode(b"\x20").is_ack
    first = Fragment(L | M, b"abc", 10)
    assert first.encode() == b"\xc0\x00\x00\x00\x0aabc"


def test_reserved_bits_are_ignored_but_kept_for_round_trip() -> None:
    frag = Fragment.decode(b"\x18xyz")
    assert frag.flags == EapTlsFlags.NONE and frag.data == b"xyz" and frag.version == 0
    assert frag.encode() == b"\x18xyz"


@given(st.binary(max_size=64))
def test_decode_arbitrary_bytes_gives_a_fragment_or_decode_error(data: bytes) -> None:
    try:
        frag = Fragment.decode(data)
    except DecodeError:
        return
    assert frag.encode() == data


@given(
    st.sampled_from([EapTlsFlags.NONE, L, M, L | M, S, S | L]),
    st.binary(max_size=40),
    st.integers(0, 7),
    st.integers(0, 0xFFFFFFFF),
)
def test_fragment_round_trip(flags: EapTlsFlags, data: bytes, version: int, length: int) -> None:
    frag = Fragment(flags, data, length if flags & L else None, version)
    assert Fragment.decode(frag.encode()) == frag


@given(st.binary(min_size=1, max_size=5000), st.integers(16, 1500), st.booleans())
def test_fragmenter_and_reassembler_round_trip(
    message: bytes, size: int, always_length: bool
) -> None:
    parts = fragments(message, size, always_include_length=always_length)
    assert all(len(p.data) <= size for p in parts)
    assert all(p.more for p in parts[:-1]) and not parts[-1].more
    if len(parts) > 1 or always_length:
        assert parts[0].length == len(message)
    assert all(p.length is None for p in parts[1:])
    joiner = Reassembler()
    results = [joiner.feed(Fragment.decode(p.encode())) for p in parts]
    assert results[:-1] == [None] * (len(parts) - 1)
    assert results[-1] == message


@given(st.binary(min_size=1, max_size=3000), st.data())
def test_any_split_reassembles_to_the_same_bytes(message: bytes, data: st.DataObject) -> None:
    """Any cut of a TLS message into fragments (not only ours) reassembles to it."""
    cuts = sorted(
        data.draw(st.sets(st.integers(1, max(1, len(message) - 1)), max_size=20))
        if len(message) > 1
        else set()
    )
    bounds = [0, *cuts, len(message)]
    chunks = [message[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    repeat_length = data.draw(st.booleans())  # some peers repeat L on every fragment
    joiner = Reassembler()
    out: bytes | None = None
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        flags = EapTlsFlags.NONE if last else M
        length = None
        if len(chunks) > 1 and (i == 0 or repeat_length):
            flags |= L
            length = len(message)
        out = joiner.feed(Fragment(flags, chunk, length))
        assert (out is None) != last
    assert out == message


@given(st.lists(st.binary(max_size=80), max_size=12))
def test_reassembler_on_arbitrary_fragments_returns_or_raises_decode_error(
    raw: list[bytes],
) -> None:
    joiner = Reassembler(max_message=300)
    for item in raw:
        try:
            frag = Fragment.decode(item)
            result = joiner.feed(frag)
        except DecodeError:
            joiner = Reassembler(max_message=300)
            continue
        assert result is None or isinstance(result, bytes)
        assert result is None or len(result) <= 300


@pytest.mark.parametrize(
    ("sequence", "problem"),
    [
        ([Fragment(L | M, b"a" * 10, 70_000)], "over the"),
        ([Fragment(L, b"abc", 5)], "ends the message"),
        ([Fragment(L, b"abcdef", 5)], "more than"),
        ([Fragment(L | M, b"abc", 3)], "M flag set but"),
        ([Fragment(L | M, b"abc", 5), Fragment(EapTlsFlags.NONE, b"defg")], "more than"),
        ([Fragment(L | M, b"abc", 8), Fragment(EapTlsFlags.NONE, b"de")], "ends the message"),
        ([Fragment(L | M, b"abc", 8), Fragment(L | M, b"de", 9)], "announces"),
        ([Fragment(L | M, b"abc", 8), Fragment(S, b"")], "Start"),
        ([Fragment(L | M, b"abc", 8), Fragment(M, b"")], "empty fragment"),
        ([Fragment(M, b"x" * 200), Fragment(M, b"x" * 200)], "more than"),
    ],
)
def test_reassembly_violations(sequence: list[Fragment], problem: str) -> None:
    joiner = Reassembler(max_message=65536 if problem != "more than" else 300)
    with pytest.raises(DecodeError, match=problem):
        for frag in sequence:
            joiner.feed(frag)


def test_message_without_length_and_without_more_is_whole() -> None:
    assert Reassembler().feed(Fragment(EapTlsFlags.NONE, b"hello")) == b"hello"
    assert Reassembler().feed(Fragment(L, b"hello", 5)) == b"hello"


def test_truncated_length_field() -> None:
    with pytest.raises(DecodeError, match="TLS Message Length"):
        Fragment.decode(b"\x80\x00\x00")
    with pytest.raises(DecodeError):
        Fragment.decode(b"")


def test_fragmenter_refuses_to_run_past_the_end() -> None:
    cutter = Fragmenter(b"abc", 16)
    cutter.next_fragment()
    assert cutter.done
    with pytest.raises(RuntimeError):
        cutter.next_fragment()


def test_framing_config_limits() -> None:
    with pytest.raises(ConfigError):
        FramingConfig(fragment_size=8)
    with pytest.raises(ConfigError):
        FramingConfig(max_rounds=0)
    with pytest.raises(ConfigError):
        FramingConfig(max_message=0)
