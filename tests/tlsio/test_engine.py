"""The TLS-over-EAP engine and EAP-TLS methods under malformed input: every state, both
roles, arbitrary bytes end in a Failure (or a Reply), never an exception."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.methods.base import Done, MethodContext, Reply
from eapkit.methods.tls import TlsAuthenticator, TlsPeer, bind_identity
from eapkit.tlsio import (
    Continue,
    Failed,
    Fragment,
    FramingConfig,
    Message,
    SessionCache,
    TlsContext,
    TlsEapEngine,
    TlsRole,
    TlsVersion,
)
from eapkit.tlsio.framing import EapTlsFlags
from tests.certs import IDENTITY, lab, peer_config, server_config

CTX = MethodContext(identity=IDENTITY.encode())


@functools.cache
def _contexts(version: TlsVersion, fragment_size: int = 300) -> tuple[TlsContext, TlsContext]:
    lb = lab()
    framing = FramingConfig(fragment_size=fragment_size, max_rounds=60)
    server = TlsContext(
        server_config(lb, max_version=version, framing=framing, resumption=False),
        TlsRole.SERVER,
    )
    peer = TlsContext(peer_config(lb, framing=framing, resumption=False), TlsRole.PEER)
    return server, peer


def _drive(version: TlsVersion, steps: int) -> tuple[TlsAuthenticator | TlsPeer, bool] | None:
    """A live conversation stopped after ``steps`` messages; returns the side whose turn
    it is (and whether it is the server), or None if it ended before."""
    server_ctx, peer_ctx = _contexts(version)
    server = TlsAuthenticator(CTX, server_ctx, bind_identity)
    peer = TlsPeer(CTX, peer_ctx, None)
    message = server.start()
    server_turn = False
    for _ in range(steps):
        step = server.receive(message) if server_turn else peer.receive(message)
        if isinstance(step, Done):
            return None
        message = step.type_data
        server_turn = not server_turn
    return (server if server_turn else peer), server_turn


junk = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda flags, rest: bytes([flags]) + rest,
        st.sampled_from([0x00, 0x20, 0x40, 0x80, 0xC0, 0xA0, 0x07]),
        st.binary(max_size=200),
    ),
)


@settings(max_examples=60)
@given(
    st.sampled_from([TlsVersion.TLS1_2, TlsVersion.TLS1_3]),
    st.integers(0, 9),
    st.lists(junk, min_size=1, max_size=4),
)
def test_arbitrary_bytes_at_every_state(
    version: TlsVersion, steps: int, inputs: list[bytes]
) -> None:
    driven = _drive(version, steps)
    if driven is None:
        return
    side, is_server = driven
    for data in inputs:
        step = side.receive(data)
        assert isinstance(step, Reply | Done)
        if isinstance(step, Done) and step.outcome.success:
            # only the server, and only on an empty Response to its last flight
            assert is_server and Fragment.decode(data).is_ack
        if isinstance(step, Done):
            break


def _peer_engine(fragment_size: int = 300) -> TlsEapEngine:
    return TlsEapEngine(_contexts(TlsVersion.TLS1_3, fragment_size)[1], 13)


def _server_engine() -> TlsEapEngine:
    engine = TlsEapEngine(_contexts(TlsVersion.TLS1_3)[0], 13)
    engine.start()
    return engine


def test_peer_needs_the_start_message_first() -> None:
    event = _peer_engine().receive(b"\x00")
    assert isinstance(event, Failed) and event.reason == "malformed"


def test_server_refuses_a_start_flag() -> None:
    event = _server_engine().receive(b"\x20")
    assert isinstance(event, Failed) and event.reason == "malformed"


def test_oversized_announced_message_fails() -> None:
    engine = _server_engine()
    head = Fragment(EapTlsFlags.LENGTH_INCLUDED | EapTlsFlags.MORE_FRAGMENTS, b"x" * 50, 1 << 20)
    event = engine.receive(head.encode())
    assert isinstance(event, Failed) and event.reason == "malformed"
    assert "cap" in event.detail


def test_more_data_than_announced_fails() -> None:
    engine = _server_engine()
    first = Fragment(EapTlsFlags.LENGTH_INCLUDED | EapTlsFlags.MORE_FRAGMENTS, b"x" * 10, 15)
    assert isinstance(engine.receive(first.encode()), Continue)
    event = engine.receive(Fragment(EapTlsFlags.NONE, b"y" * 10).encode())
    assert isinstance(event, Failed) and event.reason == "malformed"


def test_fragment_is_acknowledged_with_the_flags_octet_alone() -> None:
    engine = _server_engine()
    first = Fragment(EapTlsFlags.LENGTH_INCLUDED | EapTlsFlags.MORE_FRAGMENTS, b"x" * 10, 15)
    event = engine.receive(first.encode())
    assert event == Continue(b"\x00")


def test_round_limit() -> None:
    engine = _server_engine()
    events = [
        engine.receive(Fragment(EapTlsFlags.MORE_FRAGMENTS, b"\x16").encode()) for _ in range(61)
    ]
    assert isinstance(events[-1], Failed) and events[-1].reason in ("too_many_rounds", "malformed")
    engine = _server_engine()
    last = None
    for _ in range(61):
        last = engine.receive(b"\x00")  # empty Responses, each a whole (empty) message
    assert isinstance(last, Failed) and last.reason == "too_many_rounds"


def test_garbage_tls_record_fails_with_an_alert_to_send() -> None:
    engine = _server_engine()
    event = engine.receive(b"\x00" + b"\x16\x03\x01\x00\x05hello")
    assert isinstance(event, Failed)
    assert event.alert_sent is not None and engine.has_output
    assert event.reason == event.alert_sent


def test_peer_waits_for_ack_between_its_fragments() -> None:
    engine = _peer_engine(fragment_size=100)
    event = engine.receive(b"\x20")
    assert isinstance(event, Message) and engine.has_output
    first = Fragment.decode(engine.next_type_data())
    assert first.more and first.length is not None and first.length > 100
    wrong = engine.receive(b"\x00junk")
    assert isinstance(wrong, Failed) and "ACK" in wrong.detail


def test_application_data_needs_a_finished_handshake() -> None:
    with pytest.raises(RuntimeError):
        _server_engine().write(b"x")
    with pytest.raises(RuntimeError):
        _server_engine().export_keying_material(b"label", 16, None)
    with pytest.raises(RuntimeError):
        _peer_engine().start()


def test_version_bits_go_out_on_every_message() -> None:
    server_ctx, _ = _contexts(TlsVersion.TLS1_3)
    engine = TlsEapEngine(server_ctx, 21, version=1)
    assert engine.start() == b"\x21"
    assert engine.ack() == b"\x01"


def test_session_cache_is_a_small_lru() -> None:
    cache = SessionCache(max_entries=2)
    sessions = [object(), object(), object()]
    for i, s in enumerate(sessions):
        cache.put(i, s)  # type: ignore[arg-type]
    assert len(cache) == 2 and cache.get(0) is None and cache.get(2) is sessions[2]
    cache.forget(2)
    cache.put(5, None)
    assert len(cache) == 1


@pytest.mark.parametrize("version", [TlsVersion.TLS1_2, TlsVersion.TLS1_3])
def test_only_the_handshake_messages_the_engine_reads_are_copied(
    version: TlsVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: OpenSSL's message callback copied every handshake message (certificates
    included) into Python for note_handshake, which reads only ClientHello, ServerHello
    and NewSessionTicket; the others are now skipped before the copy."""
    seen: list[tuple[bool, int]] = []
    original = TlsEapEngine.note_handshake

    def note(self: TlsEapEngine, written: bool, message: bytes) -> None:
        seen.append((written, message[0]))
        original(self, written, message)

    monkeypatch.setattr(TlsEapEngine, "note_handshake", note)
    lb = lab()
    server_ctx = TlsContext(server_config(lb, max_version=version), TlsRole.SERVER)
    peer_ctx = TlsContext(peer_config(lb), TlsRole.PEER)
    server = TlsAuthenticator(CTX, server_ctx, bind_identity)
    peer = TlsPeer(CTX, peer_ctx, None)
    message, server_turn = server.start(), False
    for _ in range(40):
        step = server.receive(message) if server_turn else peer.receive(message)
        if isinstance(step, Done):
            break
        message, server_turn = step.type_data, not server_turn
    assert isinstance(step, Done) and step.outcome.success
    kinds = {kind for _, kind in seen}
    assert {1, 2} <= kinds <= {1, 2, 4}  # ClientHello, ServerHello (NewSessionTicket)
