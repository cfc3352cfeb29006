"""hypothesis: every EAP-MSCHAPv2 message round-trips; decoders and both state machines,
fed arbitrary or mutated bytes in every state, give a value, a DecodeError or a Failure,
never another exception."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.crypto.mschap import generate_nt_response
from eapkit.errors import DecodeError
from eapkit.methods.base import Done, MethodContext, Reply, Step
from eapkit.methods.mschapv2 import (
    MsChapV2Authenticator,
    MsChapV2Challenge,
    MsChapV2ChangePassword,
    MsChapV2FailureRequest,
    MsChapV2FailureResponse,
    MsChapV2Peer,
    MsChapV2Response,
    MsChapV2SuccessRequest,
    MsChapV2SuccessResponse,
    decode_request,
    decode_response,
)
from eapkit.rand import DeterministicRandom
from eapkit.testing import StaticNtHashes

octets = st.integers(0, 255)
b16 = st.binary(min_size=16, max_size=16)
b24 = st.binary(min_size=24, max_size=24)
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
names = st.binary(max_size=80)

challenges = st.builds(MsChapV2Challenge, octets, b16, names)
responses = st.builds(
    MsChapV2Response, octets, b16, b24, names, octets, st.binary(min_size=8, max_size=8)
)
success_requests = st.builds(
    MsChapV2SuccessRequest, octets, st.binary(min_size=20, max_size=20), text
)
failure_requests = st.builds(
    MsChapV2FailureRequest,
    octets,
    st.integers(0, 9_999_999_999),
    st.booleans(),
    st.none() | b16,
    st.none() | st.integers(0, 9_999_999_999),
    text,
)
change_passwords = st.builds(
    MsChapV2ChangePassword,
    octets,
    st.binary(min_size=516, max_size=516),
    b16,
    b16,
    b24,
    st.integers(0, 0xFFFF),
    st.binary(min_size=8, max_size=8),
)
requests = st.one_of(challenges, success_requests, failure_requests)
responses_all = st.one_of(
    responses,
    change_passwords,
    st.just(MsChapV2SuccessResponse()),
    st.just(MsChapV2FailureResponse()),
)


@given(requests)
def test_requests_round_trip(msg: MsChapV2Challenge) -> None:
    data = msg.encode()
    assert decode_request(data) == msg
    assert int.from_bytes(data[2:4], "big") == len(data)


@given(responses_all)
def test_responses_round_trip(msg: MsChapV2Response) -> None:
    assert decode_response(msg.encode()) == msg


def test_wire_examples() -> None:
    # byte layouts of draft-kamath-pppext-eap-mschapv2-02 §2
    c = MsChapV2Challenge(7, bytes(range(16)), b"srv").encode()
    assert c == bytes([1, 7, 0, 24, 16]) + bytes(range(16)) + b"srv"
    f = MsChapV2FailureRequest(7, 691, True, bytes(16), 3, "no").encode()
    assert f == b"\x04\x07\x00\x39" + b"E=691 R=1 C=" + b"0" * 32 + b" V=3 M=no"
    s = MsChapV2SuccessRequest(7, bytes([0xAB]) * 20, "OK").encode()
    assert s == b"\x03\x07\x00\x33S=" + b"AB" * 20 + b" M=OK"
    assert (
        len(MsChapV2ChangePassword(1, bytes(516), bytes(16), bytes(16), bytes(24)).encode()) == 586
    )


@pytest.mark.parametrize(
    "text_in, fields",
    [
        (b"E=691 R=0 C=00000000000000000000000000000000 V=3 M=FAILED", (691, False, 3, "FAILED")),
        (b"E=646 R=0 V=3", (646, False, 3, "")),  # no C: older servers
        (b"E=691 R=1 C=0123456789abcdef0123456789ABCDEF V=3 M=a b  c", (691, True, 3, "a b  c")),
        (b"E=649", (649, False, None, "")),
    ],
)
def test_failure_messages_seen_in_the_wild(
    text_in: bytes, fields: tuple[int, bool, int | None, str]
) -> None:
    msg = decode_request(bytes([4, 1]) + (4 + len(text_in)).to_bytes(2, "big") + text_in)
    assert isinstance(msg, MsChapV2FailureRequest)
    assert (msg.error, msg.retry, msg.version, msg.message) == fields


@pytest.mark.parametrize(
    "body",
    [b"R=0", b"E=x", b"E=691 R=2", b"E=691 R=0 C=00", b"E=691 X=1", b"E=691 V=three", b"\xff"],
)
def test_bad_failure_messages(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_request(bytes([4, 1]) + (4 + len(body)).to_bytes(2, "big") + body)


@pytest.mark.parametrize(
    "body",
    [b"", b"S=", b"S=" + b"0" * 39, b"X=" + b"0" * 40, b"S=" + b"g" * 40, b"S= " + b"0" * 39],
)
def test_bad_success_messages(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_request(bytes([3, 1]) + (4 + len(body)).to_bytes(2, "big") + body)


def test_ms_length_must_match() -> None:
    good = MsChapV2Challenge(1, bytes(16)).encode()
    with pytest.raises(DecodeError, match="MS-Length"):
        decode_request(good + b"x")
    with pytest.raises(DecodeError, match="MS-Length"):
        decode_request(good[:2] + b"\x00\x05" + good[4:])


@given(st.binary(max_size=700))
def test_decode_request_any_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_request(data)


@given(st.binary(max_size=700))
def test_decode_response_any_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_response(data)


def _mutations(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid messages with a byte changed, cut short or extended: closer to the parser's
    edges than uniform random bytes."""

    def mutate(data: bytes, pos: int, value: int, mode: int) -> bytes:
        if not data:
            return data
        i = pos % len(data)
        if mode == 0:
            return data[:i] + bytes([value]) + data[i + 1 :]
        if mode == 1:
            return data[:i]
        return data + bytes([value])

    return st.builds(mutate, valid, st.integers(0, 1000), octets, st.integers(0, 2))


any_request_bytes = st.one_of(
    st.binary(max_size=200),
    requests.map(lambda m: m.encode()),
    _mutations(requests.map(lambda m: m.encode())),
)
any_response_bytes = st.one_of(
    st.binary(max_size=200),
    responses_all.map(lambda m: m.encode()),
    _mutations(responses_all.map(lambda m: m.encode())),
)

PASSWORD = "correct horse"


def _ctx() -> MethodContext:
    return MethodContext(identity=b"alice", random=DeterministicRandom(11))


def _table() -> StaticNtHashes:
    return StaticNtHashes.from_passwords({"alice": PASSWORD}, expired=())


def _response_for(challenge: bytes, ms_id: int, password: str) -> bytes:
    pc = bytes(16)
    nt = generate_nt_response(challenge, pc, "alice", password=password)
    return MsChapV2Response(ms_id, pc, nt, b"alice").encode()


def _auth_in(state: str) -> MsChapV2Authenticator:
    table = _table()
    if state == "failure_sent_change":
        table.expired_users.add("alice")
    auth = MsChapV2Authenticator(_ctx(), table, max_retries=1, password_change=table)
    challenge = decode_request(auth.start())
    assert isinstance(challenge, MsChapV2Challenge)
    if state == "challenge_sent":
        return auth
    password = PASSWORD if state in ("success_sent", "failure_sent_change") else "wrong"
    step = auth.receive(_response_for(challenge.challenge, challenge.ms_chap_id, password))
    assert isinstance(step, Reply)
    if state == "done":
        auth.receive(b"\x04")
    return auth


def _check_step(step: Step) -> None:
    assert isinstance(step, Reply | Done)
    if isinstance(step, Done):
        assert step.outcome.success == (step.outcome.keys is not None)


AUTH_STATES = [
    "challenge_sent",
    "success_sent",
    "failure_sent_retry",
    "failure_sent_change",
    "done",
]


@pytest.mark.parametrize("state", AUTH_STATES)
@given(data=any_response_bytes)
def test_authenticator_any_bytes_in_every_state(state: str, data: bytes) -> None:
    auth = _auth_in(state)
    step = auth.receive(data)
    _check_step(step)
    if isinstance(step, Done) and step.outcome.success:
        # only a Success acknowledgement to a Success Request completes the method
        assert state == "success_sent" and data[:1] == b"\x03"
    if state == "done":
        assert isinstance(step, Done) and not step.outcome.success


def _peer_in(state: str) -> tuple[MsChapV2Peer, MsChapV2Challenge | None]:
    peer = MsChapV2Peer(
        _ctx(),
        password=PASSWORD,
        retry=lambda f: "again",
        new_password=lambda f: "new password",
    )
    if state == "start":
        return peer, None
    challenge = MsChapV2Challenge(5, bytes(range(16)), b"srv")
    assert isinstance(peer.receive(challenge.encode()), Reply)
    if state == "after_retry":
        retry = MsChapV2FailureRequest(5, 691, True, bytes(16), 3, "")
        assert isinstance(peer.receive(retry.encode()), Reply)
    if state == "after_change":
        expired = MsChapV2FailureRequest(5, 648, False, bytes(16), 3, "")
        assert isinstance(peer.receive(expired.encode()), Reply)
    if state == "done":
        peer.receive(MsChapV2FailureRequest(5, 691).encode())
    return peer, challenge


PEER_STATES = ["start", "responded", "after_retry", "after_change", "done"]


@pytest.mark.parametrize("state", PEER_STATES)
@given(data=any_request_bytes)
def test_peer_any_bytes_in_every_state(state: str, data: bytes) -> None:
    peer, _ = _peer_in(state)
    step = peer.receive(data)
    _check_step(step)
    # no forged or random Success Request gets the peer to accept
    assert not (isinstance(step, Done) and step.outcome.success)
    if state == "done":
        assert isinstance(step, Done)


@given(identity=st.binary(max_size=400), name=st.binary(max_size=400), nt=b24, pc=b16)
def test_authenticator_any_identity_and_name(
    identity: bytes, name: bytes, nt: bytes, pc: bytes
) -> None:
    auth = MsChapV2Authenticator(
        MethodContext(identity=identity, random=DeterministicRandom(1)), _table()
    )
    challenge = decode_request(auth.start())
    assert isinstance(challenge, MsChapV2Challenge)
    step = auth.receive(MsChapV2Response(challenge.ms_chap_id, pc, nt, name).encode())
    _check_step(step)
    assert not (isinstance(step, Done) and step.outcome.success)
