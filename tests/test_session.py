"""The session layer in both roles, in the style of hostapd's tests/hwsim/test_eap_proto.py:
every state is fed out-of-order, duplicate, truncated, wrong-identifier and oversized
messages, and nothing but Send/Discard/Finished ever comes out."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.loopback import converse
from eapkit.methods.base import (
    Authenticator,
    Done,
    KeyMaterial,
    MethodContext,
    MethodFactory,
    Outcome,
    Peer,
    Reply,
    Step,
)
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.packet import (
    Code,
    EapType,
    Expanded,
    ExpandedNak,
    Failure,
    Identity,
    MethodData,
    MethodId,
    Nak,
    Notification,
    Success,
    decode,
)
from eapkit.rand import DeterministicRandom
from eapkit.session import (
    AuthenticatorSession,
    Discard,
    Finished,
    PeerSession,
    Send,
    SessionConfig,
)
from eapkit.testing import InMemoryPasswords

PASSWORDS = InMemoryPasswords({"alice": "correct horse"})
MD5 = MethodId.legacy(EapType.MD5_CHALLENGE)
VENDOR = MethodId(0x9999, 7)
KEYS = KeyMaterial(bytes(range(64)), bytes(range(64, 128)), b"\x99session")


@dataclass
class Counting:
    """A method that replies ``rounds`` times, then succeeds with KEYS; counts its calls."""

    method: MethodId
    rounds: int = 1
    calls: list[bytes] = field(default_factory=list)

    def start(self) -> bytes:
        return b"start"

    def receive(self, type_data: bytes) -> Step:
        self.calls.append(type_data)
        if len(self.calls) > self.rounds:
            return Done(Outcome.ok(KEYS))
        return Reply(b"more")


@dataclass
class CountingPeer:
    method: MethodId
    calls: list[bytes] = field(default_factory=list)

    def receive(self, type_data: bytes) -> Step:
        self.calls.append(type_data)
        if type_data == b"more":
            return Done(Outcome.ok(KEYS), b"last")
        return Reply(b"answer")


def counting_factory(
    method: MethodId, rounds: int = 1, made: list[Counting] | None = None
) -> MethodFactory[Authenticator]:
    def create(ctx: MethodContext) -> Counting:
        m = Counting(method, rounds)
        if made is not None:
            made.append(m)
        return m

    return MethodFactory(method, create, "counting")


def counting_peer(method: MethodId, made: list[CountingPeer] | None = None) -> MethodFactory[Peer]:
    def create(ctx: MethodContext) -> CountingPeer:
        m = CountingPeer(method)
        if made is not None:
            made.append(m)
        return m

    return MethodFactory(method, create, "counting")


def gtc_pair(
    password: str = "correct horse", user: str = "alice"
) -> tuple[AuthenticatorSession, PeerSession]:
    auth = AuthenticatorSession([gtc_authenticator(PASSWORDS)], random=DeterministicRandom(1))
    peer = PeerSession([gtc_peer(lambda prompt: password)], user)
    return auth, peer


def sent(action: object) -> bytes:
    assert isinstance(action, Send), action
    return action.packet


# -- whole conversations ----------------------------------------------------------------


def test_gtc_success_through_the_session() -> None:
    auth, peer = gtc_pair()
    conv = converse(auth, peer)
    assert conv.authenticator is not None and conv.peer is not None
    assert conv.authenticator.success and conv.peer.success
    assert conv.authenticator.user == "alice"
    assert conv.authenticator.method == MethodId.legacy(EapType.GTC)
    assert conv.authenticator.keys is None  # GTC derives no MSK
    kinds = [type(decode(p)).__name__ for _, p in conv.transcript]
    assert kinds == ["Identity", "Identity", "MethodData", "MethodData", "Success"]


def test_gtc_wrong_password_and_unknown_user_fail_with_reasons() -> None:
    conv = converse(*gtc_pair(password="wrong"))
    assert conv.authenticator is not None and conv.peer is not None
    assert not conv.authenticator.success and conv.authenticator.reason == "bad_password"
    assert not conv.peer.success and conv.peer.reason == "eap_failure"
    assert isinstance(decode(conv.transcript[-1][1]), Failure)
    conv = converse(*gtc_pair(user="mallory"))
    assert conv.authenticator is not None and conv.authenticator.reason == "unknown_user"


def test_keys_reach_both_results() -> None:
    auth = AuthenticatorSession([counting_factory(MD5)])
    peer = PeerSession([counting_peer(MD5)], "bob")
    conv = converse(auth, peer)
    assert conv.authenticator is not None and conv.peer is not None
    assert conv.authenticator.keys == KEYS == conv.peer.keys


def test_identity_from_the_nas_starts_the_first_method() -> None:
    """Over RADIUS the NAS runs the Identity round: the first packet is the Response."""
    auth = AuthenticatorSession([gtc_authenticator(PASSWORDS)], random=DeterministicRandom(2))
    first = auth.receive(Identity(Code.RESPONSE, 42, b"alice").encode())
    req = decode(sent(first))
    assert isinstance(req, MethodData) and req.identifier == 43 and req.type == EapType.GTC
    done = auth.receive(MethodData(Code.RESPONSE, 43, EapType.GTC, b"correct horse").encode())
    assert isinstance(done, Finished) and done.result.success
    assert done.packet == Success(43).encode()


def test_no_identity_round() -> None:
    auth = AuthenticatorSession([counting_factory(MD5)], config=SessionConfig(identity_round=False))
    req = decode(sent(auth.start()))
    assert isinstance(req, MethodData) and req.type == EapType.MD5_CHALLENGE
    with pytest.raises(RuntimeError):
        auth.start()


# -- Nak ------------------------------------------------------------------------------


def test_legacy_nak_moves_to_the_next_accepted_method() -> None:
    auth = AuthenticatorSession(
        [counting_factory(MD5), counting_factory(VENDOR), gtc_authenticator(PASSWORDS)]
    )
    peer = PeerSession([gtc_peer(lambda p: "correct horse")], "alice")
    conv = converse(auth, peer)
    assert conv.authenticator is not None and conv.authenticator.success
    naks = [decode(p) for who, p in conv.transcript if isinstance(decode(p), Nak)]
    assert naks == [Nak(naks[0].identifier, (EapType.GTC,))]


def test_nak_of_every_method_fails() -> None:
    auth = AuthenticatorSession([counting_factory(MD5)])
    peer = PeerSession([gtc_peer(lambda p: "x")], "alice")
    conv = converse(auth, peer)
    assert conv.authenticator is not None
    assert not conv.authenticator.success
    assert conv.authenticator.reason == "peer_refused_methods"


def test_peer_without_methods_naks_with_zero() -> None:
    peer = PeerSession([], "alice")
    out = decode(sent(peer.receive(MethodData(Code.REQUEST, 9, 13, b"\x20").encode())))
    assert out == Nak(9, (0,))


def test_expanded_request_gets_expanded_nak_and_vendor_method_runs() -> None:
    auth = AuthenticatorSession([counting_factory(VENDOR), counting_factory(MD5)])
    peer = PeerSession([counting_peer(MD5)], "alice")
    conv = converse(auth, peer)
    assert conv.authenticator is not None and conv.authenticator.success
    assert any(isinstance(decode(p), ExpandedNak) for _, p in conv.transcript)
    # and a peer that has the vendor method runs it in Expanded packets
    auth = AuthenticatorSession([counting_factory(VENDOR)])
    peer = PeerSession([counting_peer(VENDOR)], "alice")
    conv = converse(auth, peer)
    assert conv.authenticator is not None and conv.authenticator.success
    assert any(isinstance(decode(p), Expanded) for _, p in conv.transcript)


def test_legacy_nak_with_254_accepts_expanded_methods() -> None:
    auth = AuthenticatorSession([counting_factory(MD5), counting_factory(VENDOR)])
    req = decode(sent(auth.start()))
    req = decode(sent(auth.receive(Identity(Code.RESPONSE, req.identifier, b"a").encode())))
    nxt = decode(sent(auth.receive(Nak(req.identifier, (EapType.EXPANDED,)).encode())))
    assert isinstance(nxt, Expanded) and nxt.method == VENDOR


def test_nak_after_the_method_started_is_a_failure() -> None:
    auth = AuthenticatorSession([counting_factory(MD5, rounds=3)])
    req = decode(sent(auth.start()))
    req = decode(sent(auth.receive(Identity(Code.RESPONSE, req.identifier, b"a").encode())))
    req = decode(sent(auth.receive(MethodData(Code.RESPONSE, req.identifier, 4, b"r").encode())))
    end = auth.receive(Nak(req.identifier, (6,)).encode())
    assert isinstance(end, Finished) and end.result.reason == "nak_after_start"


# -- duplicates, identifiers, limits ---------------------------------------------------


def test_retransmitted_response_gets_the_same_request_without_rerunning() -> None:
    made: list[Counting] = []
    auth = AuthenticatorSession([counting_factory(MD5, rounds=2, made=made)])
    req = decode(sent(auth.start()))
    ident = Identity(Code.RESPONSE, req.identifier, b"a").encode()
    req1 = sent(auth.receive(ident))
    resp = MethodData(Code.RESPONSE, decode(req1).identifier, 4, b"r1").encode()
    req2 = sent(auth.receive(resp))
    assert sent(auth.receive(resp)) == req2
    assert sent(auth.receive(resp + b"\x00pad")) == req2  # padding is not part of the packet
    assert made[0].calls == [b"r1"]
    assert auth.counters.duplicates == 2
    assert auth.retransmit() == req2


def test_wrong_identifier_is_discarded_and_counted() -> None:
    auth, _ = gtc_pair()
    req = decode(sent(auth.start()))
    out = auth.receive(Identity(Code.RESPONSE, (req.identifier + 5) & 0xFF, b"a").encode())
    assert isinstance(out, Discard) and "identifier" in out.reason
    assert auth.counters.discarded == 1
    assert not auth.finished


def test_round_limit_ends_a_runaway_method() -> None:
    auth = AuthenticatorSession(
        [counting_factory(MD5, rounds=10_000)], config=SessionConfig(max_rounds=5)
    )
    action = auth.start()
    while isinstance(action, Send):
        req = decode(action.packet)
        if isinstance(req, Identity):
            action = auth.receive(Identity(Code.RESPONSE, req.identifier, b"a").encode())
        else:
            action = auth.receive(MethodData(Code.RESPONSE, req.identifier, 4, b"x").encode())
    assert isinstance(action, Finished)
    assert action.result.reason == "too_many_rounds" and action.result.rounds == 5
    assert action.packet is not None and isinstance(decode(action.packet), Failure)


def test_size_limit_ends_the_conversation() -> None:
    auth = AuthenticatorSession([counting_factory(MD5)], config=SessionConfig(max_bytes=100))
    req = decode(sent(auth.start()))
    big = Identity(Code.RESPONSE, req.identifier, b"a" * 200).encode()
    end = auth.receive(big)
    assert isinstance(end, Finished) and end.result.reason == "too_much_data"


def test_finished_authenticator_discards_everything() -> None:
    auth, peer = gtc_pair()
    converse(auth, peer)
    assert isinstance(auth.receive(Identity(Code.RESPONSE, 1, b"a").encode()), Discard)


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x02",
        b"\x02\x00\x00",
        b"\x02\x00\x00\x02",
        b"\x02\x00\x00\x50\x01",
        Identity(Code.REQUEST, 0, b"").encode(),
        Success(0).encode(),
        Failure(0).encode(),
        Notification(Code.RESPONSE, 0).encode(),
        Nak(0, (6,)).encode(),
    ],
)
def test_authenticator_discards_junk_while_waiting_for_identity(packet: bytes) -> None:
    auth, _ = gtc_pair()
    req = decode(sent(auth.start()))
    if len(packet) >= 2:
        packet = packet[:1] + bytes((req.identifier,)) + packet[2:]
    assert isinstance(auth.receive(packet), Discard)
    assert not auth.finished


def test_method_that_raises_decode_error_fails_the_conversation() -> None:
    from eapkit.errors import DecodeError

    class Fragile:
        method = MD5

        def start(self) -> bytes:
            return b""

        def receive(self, type_data: bytes) -> Step:
            raise DecodeError("bad TLV", offset=3)

    auth = AuthenticatorSession([MethodFactory(MD5, lambda ctx: Fragile())])
    req = decode(sent(auth.start()))
    req = decode(sent(auth.receive(Identity(Code.RESPONSE, req.identifier, b"a").encode())))
    end = auth.receive(MethodData(Code.RESPONSE, req.identifier, 4, b"x").encode())
    assert isinstance(end, Finished) and end.result.reason == "malformed"
    assert "bad TLV" in end.result.detail


# -- peer ------------------------------------------------------------------------------


def test_peer_resends_its_response_to_a_duplicate_request() -> None:
    made: list[CountingPeer] = []
    peer = PeerSession([counting_peer(MD5, made)], "alice")
    req = MethodData(Code.REQUEST, 3, 4, b"start").encode()
    first = sent(peer.receive(req))
    assert sent(peer.receive(req)) == first
    assert made[0].calls == [b"start"] and peer.counters.duplicates == 1


def test_peer_answers_identity_and_notification() -> None:
    peer = PeerSession([], "bob@example.org")
    assert decode(sent(peer.receive(Identity(Code.REQUEST, 1).encode()))) == Identity(
        Code.RESPONSE, 1, b"bob@example.org"
    )
    note = Notification(Code.REQUEST, 2, b"password expires soon").encode()
    assert decode(sent(peer.receive(note))) == Notification(Code.RESPONSE, 2)
    assert peer.notifications == [b"password expires soon"]


def test_peer_refuses_success_before_a_method_finished() -> None:
    peer = PeerSession([counting_peer(MD5)], "alice")
    assert isinstance(peer.receive(Success(0).encode()), Discard)
    sent(peer.receive(MethodData(Code.REQUEST, 1, 4, b"start").encode()))
    assert isinstance(peer.receive(Success(1).encode()), Discard)  # method still running
    sent(peer.receive(MethodData(Code.REQUEST, 2, 4, b"more").encode()))
    assert isinstance(peer.receive(Success(7).encode()), Discard)  # wrong identifier
    end = peer.receive(Success(2).encode())
    assert isinstance(end, Finished) and end.result.success and end.result.keys == KEYS


def test_peer_ends_on_failure_and_ignores_method_change() -> None:
    peer = PeerSession([counting_peer(MD5), gtc_peer(lambda p: "x")], "alice")
    sent(peer.receive(MethodData(Code.REQUEST, 1, 4, b"start").encode()))
    assert isinstance(peer.receive(MethodData(Code.REQUEST, 2, 6, b"p").encode()), Discard)
    end = peer.receive(Failure(1).encode())
    assert isinstance(end, Finished) and not end.result.success
    assert end.result.reason == "eap_failure" and end.result.keys is None
    assert isinstance(peer.receive(Identity(Code.REQUEST, 3).encode()), Discard)


def test_peer_discards_responses_and_garbage() -> None:
    peer = PeerSession([counting_peer(MD5)], "alice")
    assert isinstance(peer.receive(Identity(Code.RESPONSE, 1, b"x").encode()), Discard)
    assert isinstance(peer.receive(b"\x01\x01\x00\x10"), Discard)
    assert peer.counters.discarded == 2


def test_peer_round_limit() -> None:
    peer = PeerSession([], "a", config=SessionConfig(max_rounds=3))
    for i in range(3):
        sent(peer.receive(Identity(Code.REQUEST, i).encode()))
    end = peer.receive(Identity(Code.REQUEST, 9).encode())
    assert isinstance(end, Finished) and end.result.reason == "too_many_rounds"


# -- property-based: arbitrary bytes at every state ------------------------------------


def _gtc_transcript() -> list[tuple[str, bytes]]:
    auth, peer = gtc_pair()
    return converse(auth, peer).transcript


@given(st.integers(0, 4), st.binary(max_size=80), st.booleans())
def test_authenticator_survives_arbitrary_bytes_at_every_state(
    position: int, junk: bytes, keep_identifier: bool
) -> None:
    auth, _ = gtc_pair()
    transcript = _gtc_transcript()
    action = auth.start()
    peer_packets = [p for who, p in transcript if who == "peer"]
    for i, packet in enumerate(peer_packets):
        if i == position:
            if keep_identifier and len(junk) >= 2 and isinstance(action, Send):
                junk = junk[:1] + action.packet[1:2] + junk[2:]
            out = auth.receive(junk)
            assert isinstance(out, Send | Discard | Finished)
        if auth.finished:
            break
        action = auth.receive(packet)
        assert isinstance(action, Send | Discard | Finished)


@given(st.integers(0, 4), st.binary(max_size=80), st.booleans())
def test_peer_survives_arbitrary_bytes_at_every_state(
    position: int, junk: bytes, keep_identifier: bool
) -> None:
    _, peer = gtc_pair()
    auth_packets = [p for who, p in _gtc_transcript() if who == "authenticator"]
    for i, packet in enumerate(auth_packets):
        if i == position:
            if keep_identifier and len(junk) >= 2:
                junk = junk[:1] + packet[1:2] + junk[2:]
            out = peer.receive(junk)
            assert isinstance(out, Send | Discard | Finished)
        if peer.finished:
            break
        assert isinstance(peer.receive(packet), Send | Discard | Finished)


@given(st.lists(st.binary(max_size=40), max_size=30))
def test_sessions_fed_only_garbage_never_raise(packets: list[bytes]) -> None:
    auth, peer = gtc_pair()
    auth.start()
    for p in packets:
        assert isinstance(auth.receive(p), Send | Discard | Finished)
        assert isinstance(peer.receive(p), Send | Discard | Finished)
