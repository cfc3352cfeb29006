"""EAP-MSCHAPv2 conversations: both eapkit roles against each other through the session
layer, and each role against hand-made messages (the hostapd test_eap_proto habit)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eapkit.catalog import lookup
from eapkit.crypto.mschap import (
    authenticator_response_digest,
    generate_nt_response,
    get_asymmetric_start_key,
    get_master_key,
    hash_nt_password_hash,
    nt_password_hash,
)
from eapkit.loopback import Conversation, converse
from eapkit.methods.base import Done, MethodContext, Reply
from eapkit.methods.mschapv2 import (
    MSCHAPV2,
    MsChapV2Authenticator,
    MsChapV2Challenge,
    MsChapV2FailureRequest,
    MsChapV2Peer,
    MsChapV2Response,
    MsChapV2SuccessRequest,
    decode_request,
    mschapv2_authenticator,
    mschapv2_peer,
)
from eapkit.packet import Code, EapType, MethodData, decode
from eapkit.rand import DeterministicRandom
from eapkit.session import AuthenticatorSession, PeerSession
from eapkit.testing import StaticNtHashes

PASSWORDS = {"alice": "correct horse", "bob": "hunter2"}


def run(
    table: StaticNtHashes,
    identity: str,
    password: str,
    *,
    seed: int = 1,
    **options: object,
) -> Conversation:
    auth_opts = {k: v for k, v in options.items() if k in ("max_retries", "password_change")}
    peer_opts = {k: v for k, v in options.items() if k in ("retry", "new_password", "username")}
    auth = AuthenticatorSession(
        [mschapv2_authenticator(table, **auth_opts)],  # type: ignore[arg-type]
        random=DeterministicRandom(seed),
    )
    peer = PeerSession(
        [mschapv2_peer(password, **peer_opts)],  # type: ignore[arg-type]
        identity,
        random=DeterministicRandom(seed + 1000),
    )
    return converse(auth, peer)


def mschap_payloads(conv: Conversation, side: str) -> list[bytes]:
    out = []
    for who, packet in conv.transcript:
        msg = decode(packet)
        if who == side and isinstance(msg, MethodData) and msg.method == MSCHAPV2:
            out.append(msg.type_data)
    return out


def test_registered() -> None:
    assert lookup("mschapv2").method == MSCHAPV2
    assert lookup(26).name == "mschapv2"


def test_success_both_sides_same_msk() -> None:
    conv = run(StaticNtHashes.from_passwords(PASSWORDS), "alice", "correct horse")
    assert conv.authenticator is not None and conv.peer is not None
    assert conv.authenticator.success and conv.peer.success
    assert conv.authenticator.user == "alice"
    a_keys, p_keys = conv.authenticator.keys, conv.peer.keys
    assert a_keys is not None and p_keys is not None
    assert a_keys.msk == p_keys.msk and len(a_keys.msk) == 64
    assert a_keys.emsk == b"" and a_keys.session_id == b""
    # The MSK is the authenticator's receive key, then its send key, then 32 zeros,
    # recomputed here from the messages on the wire.
    challenge = decode_request(mschap_payloads(conv, "authenticator")[0])
    assert isinstance(challenge, MsChapV2Challenge)
    response = mschap_payloads(conv, "peer")[0]
    nt_response = response[29:53]
    hh = hash_nt_password_hash(nt_password_hash("correct horse"))
    master = get_master_key(hh, nt_response)
    recv = get_asymmetric_start_key(master, 16, is_send=False, is_server=True)
    send = get_asymmetric_start_key(master, 16, is_send=True, is_server=True)
    assert a_keys.msk == recv + send + bytes(32)
    # the peer's send key is the authenticator's receive key
    assert a_keys.msk[:16] == get_asymmetric_start_key(master, 16, is_send=True, is_server=False)


def test_msk_differs_per_conversation() -> None:
    table = StaticNtHashes.from_passwords(PASSWORDS)
    k1 = run(table, "alice", "correct horse", seed=1).authenticator
    k2 = run(table, "alice", "correct horse", seed=2).authenticator
    assert k1 is not None and k2 is not None and k1.keys and k2.keys
    assert k1.keys.msk != k2.keys.msk


def test_wrong_password_is_e691_and_no_keys() -> None:
    conv = run(StaticNtHashes.from_passwords(PASSWORDS), "alice", "wrong")
    assert conv.authenticator is not None and conv.peer is not None
    assert not conv.authenticator.success and not conv.peer.success
    assert conv.authenticator.reason == "bad_password"
    assert conv.peer.reason == "authentication_failure"
    assert conv.authenticator.keys is None and conv.peer.keys is None
    failure = decode_request(mschap_payloads(conv, "authenticator")[-1])
    assert isinstance(failure, MsChapV2FailureRequest)
    assert failure.error == 691 and not failure.retry and failure.version == 3
    assert failure.challenge is not None
    assert mschap_payloads(conv, "peer")[-1] == b"\x04"
    assert decode(conv.transcript[-1][1]).code is Code.FAILURE


def _shape(conv: Conversation) -> list[tuple[str, int, bytes]]:
    """What an observer sees: who sent it, how long, and the bytes that do not depend on
    the random challenges (OpCode and the failure's E/R fields)."""
    out = []
    for who, packet in conv.transcript:
        msg = decode(packet)
        fixed = b""
        if isinstance(msg, MethodData) and msg.type_data[:1] == b"\x04" and who != "peer":
            fixed = msg.type_data[4:13]  # "E=691 R=0"
        out.append((who, len(packet), fixed))
    return out


def test_unknown_user_looks_like_wrong_password() -> None:
    table = StaticNtHashes.from_passwords({"alice": "x", "bob5": "y"})
    wrong = run(table, "bob5", "not y", max_retries=1)
    unknown = run(table, "eve5", "whatever", max_retries=1)
    assert wrong.authenticator is not None and unknown.authenticator is not None
    assert wrong.authenticator.reason == "bad_password"
    assert unknown.authenticator.reason == "unknown_user"
    assert _shape(wrong) == _shape(unknown)


def test_unknown_user_is_checked_against_a_stand_in_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Same work for unknown users: the NT-Response is checked (against a stand-in hash).
    import eapkit.methods.mschapv2_check as module
    from eapkit.crypto.mschap import nt_hash_keys as real

    checked: list[bytes] = []

    def spy(nt_hash: bytes) -> object:
        checked.append(nt_hash)
        return real(nt_hash)

    monkeypatch.setattr(module, "nt_hash_keys", spy)
    table = StaticNtHashes.from_passwords({"alice": "x"})
    peer_hash = nt_password_hash("pw")  # the peer role lives in the same module
    run(table, "nobody", "pw")
    run(table, "nobody", "pw", seed=7)
    stand_ins = [h for h in checked if h != peer_hash]
    assert len(stand_ins) == 2 and stand_ins[0] == stand_ins[1]  # stable per name
    run(table, "nobody2", "pw")
    stand_ins = [h for h in checked if h != peer_hash]
    assert len(stand_ins) == 3 and stand_ins[2] != stand_ins[0]


def test_retry_after_failure_then_success() -> None:
    asked: list[MsChapV2FailureRequest] = []

    def retry(failure: MsChapV2FailureRequest) -> str | None:
        asked.append(failure)
        return "correct horse"

    conv = run(
        StaticNtHashes.from_passwords(PASSWORDS), "alice", "typo", max_retries=1, retry=retry
    )
    assert conv.authenticator is not None and conv.peer is not None
    assert conv.authenticator.success and conv.peer.success
    assert len(asked) == 1 and asked[0].retry and asked[0].error == 691
    assert conv.authenticator.keys == conv.peer.keys
    # the retried Response is computed over the Failure's C, not the first challenge
    responses = mschap_payloads(conv, "peer")
    assert responses[0][0] == responses[1][0] == 2
    assert responses[1][1] == (responses[0][1] + 1) & 0xFF


def test_retries_run_out() -> None:
    tries: list[int] = []

    def retry(failure: MsChapV2FailureRequest) -> str | None:
        tries.append(int(failure.retry))
        return "still wrong"

    conv = run(
        StaticNtHashes.from_passwords(PASSWORDS), "alice", "wrong", max_retries=2, retry=retry
    )
    assert conv.authenticator is not None and not conv.authenticator.success
    failures = [
        decode_request(p)
        for p in mschap_payloads(conv, "authenticator")
        if decode_request(p).__class__ is MsChapV2FailureRequest
    ]
    assert [f.retry for f in failures] == [True, True, False]  # type: ignore[union-attr]
    assert tries == [1, 1]


def test_peer_without_retry_policy_acknowledges_retryable_failure() -> None:
    conv = run(StaticNtHashes.from_passwords(PASSWORDS), "alice", "wrong", max_retries=3)
    assert conv.authenticator is not None and conv.peer is not None
    assert not conv.authenticator.success and not conv.peer.success
    assert len(mschap_payloads(conv, "peer")) == 2


def test_change_password_when_expired() -> None:
    table = StaticNtHashes.from_passwords(PASSWORDS, expired=["alice"])
    conv = run(
        table,
        "alice",
        "correct horse",
        password_change=table,
        new_password="battery staple",
    )
    assert conv.authenticator is not None and conv.peer is not None
    assert conv.authenticator.success and conv.peer.success
    assert conv.authenticator.keys == conv.peer.keys
    assert table("alice") == nt_password_hash("battery staple")
    assert not table.expired("alice")
    failure = decode_request(mschap_payloads(conv, "authenticator")[1])
    assert isinstance(failure, MsChapV2FailureRequest) and failure.error == 648
    change = mschap_payloads(conv, "peer")[1]
    assert change[0] == 7 and len(change) == 586
    # and the new password works from now on
    again = run(table, "alice", "battery staple")
    assert again.authenticator is not None and again.authenticator.success


def test_expired_without_new_password_fails() -> None:
    table = StaticNtHashes.from_passwords(PASSWORDS, expired=["alice"])
    conv = run(table, "alice", "correct horse", password_change=table)
    assert conv.authenticator is not None and conv.peer is not None
    assert conv.authenticator.reason == "password_expired"
    assert conv.peer.reason == "password_expired"
    assert table("alice") == nt_password_hash("correct horse")


def test_expired_with_wrong_old_password_is_just_a_failure() -> None:
    table = StaticNtHashes.from_passwords(PASSWORDS, expired=["alice"])
    conv = run(table, "alice", "wrong", password_change=table, new_password="new one")
    assert conv.authenticator is not None and conv.authenticator.reason == "bad_password"
    assert table("alice") == nt_password_hash("correct horse")


def test_change_password_refused_by_store() -> None:
    table = StaticNtHashes.from_passwords(PASSWORDS, expired=["alice"])
    # StaticNtHashes refuses a new password equal to the old one
    conv = run(table, "alice", "correct horse", password_change=table, new_password="correct horse")
    assert conv.authenticator is not None and conv.peer is not None
    assert conv.authenticator.reason == "password_change_refused"
    assert conv.peer.reason == "password_change_failed"
    failure = decode_request(mschap_payloads(conv, "authenticator")[-1])
    assert isinstance(failure, MsChapV2FailureRequest) and failure.error == 709


def test_domain_prefix_in_identity_and_name() -> None:
    table = StaticNtHashes.from_passwords({"CORP\\alice": "pw"})
    conv = run(table, "CORP\\alice", "pw")
    assert conv.authenticator is not None and conv.authenticator.success


def test_name_must_match_identity() -> None:
    conv = run(StaticNtHashes.from_passwords(PASSWORDS), "alice", "correct horse", username="bob")
    assert conv.authenticator is not None
    assert conv.authenticator.reason == "identity_mismatch"


# -- one role against hand-made messages ---------------------------------------------------


def ctx(identity: bytes = b"alice", seed: int = 3) -> MethodContext:
    return MethodContext(identity=identity, random=DeterministicRandom(seed))


def make_authenticator(**kw: object) -> tuple[MsChapV2Authenticator, MsChapV2Challenge]:
    table = StaticNtHashes.from_passwords(PASSWORDS)
    auth = MsChapV2Authenticator(ctx(), table, **kw)  # type: ignore[arg-type]
    challenge = decode_request(auth.start())
    assert isinstance(challenge, MsChapV2Challenge)
    return auth, challenge


def good_response(challenge: MsChapV2Challenge, password: str = "correct horse") -> bytes:
    pc = bytes(range(16))
    nt = generate_nt_response(challenge.challenge, pc, "alice", password=password)
    return MsChapV2Response(challenge.ms_chap_id, pc, nt, b"alice").encode()


def test_authenticator_success_request_content() -> None:
    auth, challenge = make_authenticator(success_message="Welcome")
    assert challenge.name == b"eapkit"
    step = auth.receive(good_response(challenge))
    assert isinstance(step, Reply)
    success = decode_request(step.type_data)
    assert isinstance(success, MsChapV2SuccessRequest)
    assert success.ms_chap_id == challenge.ms_chap_id and success.message == "Welcome"
    nt = good_response(challenge)[29:53]
    expected = authenticator_response_digest(
        hash_nt_password_hash(nt_password_hash("correct horse")),
        nt,
        bytes(range(16)),
        challenge.challenge,
        "alice",
    )
    assert success.authenticator_response == expected
    done = auth.receive(b"\x03")
    assert isinstance(done, Done) and done.outcome.success and done.outcome.keys is not None


@pytest.mark.parametrize(
    "second",
    [b"\x04", b"\x01", good_response(MsChapV2Challenge(0, bytes(16))), b"", b"\x07"],
    ids=["failure-ack", "bad-opcode", "response-again", "empty", "change-password"],
)
def test_authenticator_after_success_request_only_takes_success_ack(second: bytes) -> None:
    auth, challenge = make_authenticator()
    assert isinstance(auth.receive(good_response(challenge)), Reply)
    done = auth.receive(second)
    assert isinstance(done, Done) and not done.outcome.success
    assert done.outcome.keys is None


def test_authenticator_refuses_retry_when_not_allowed() -> None:
    auth, challenge = make_authenticator()
    step = auth.receive(good_response(challenge, "wrong"))
    assert isinstance(step, Reply)
    failure = decode_request(step.type_data)
    assert isinstance(failure, MsChapV2FailureRequest) and not failure.retry
    assert failure.challenge is not None
    retry = MsChapV2Challenge(failure.ms_chap_id, failure.challenge)
    done = auth.receive(good_response(retry))
    assert isinstance(done, Done) and done.outcome.reason == "protocol_error"


def test_authenticator_retry_uses_the_failure_challenge() -> None:
    auth, challenge = make_authenticator(max_retries=1)
    step = auth.receive(good_response(challenge, "wrong"))
    assert isinstance(step, Reply)
    failure = decode_request(step.type_data)
    assert isinstance(failure, MsChapV2FailureRequest) and failure.retry
    assert failure.challenge is not None and failure.challenge != challenge.challenge
    # a Response over the old challenge no longer passes ...
    auth2, challenge2 = make_authenticator(max_retries=1)
    auth2.receive(good_response(challenge2, "wrong"))
    stale = auth2.receive(good_response(challenge2))
    assert isinstance(stale, Reply)
    assert isinstance(decode_request(stale.type_data), MsChapV2FailureRequest)
    # ... one over C does
    ok = auth.receive(good_response(MsChapV2Challenge(failure.ms_chap_id, failure.challenge)))
    assert isinstance(ok, Reply)
    assert isinstance(decode_request(ok.type_data), MsChapV2SuccessRequest)


def make_peer(**kw: object) -> tuple[MsChapV2Peer, MsChapV2Challenge, MsChapV2Response]:
    peer = MsChapV2Peer(ctx(), password="correct horse", **kw)  # type: ignore[arg-type]
    challenge = MsChapV2Challenge(9, bytes(range(100, 116)), b"server")
    step = peer.receive(challenge.encode())
    assert isinstance(step, Reply)
    from eapkit.methods.mschapv2 import decode_response

    response = decode_response(step.type_data)
    assert isinstance(response, MsChapV2Response)
    return peer, challenge, response


def test_peer_response_content() -> None:
    _, challenge, response = make_peer()
    assert response.ms_chap_id == 9 and response.name == b"alice" and response.flags == 0
    assert response.nt_response == generate_nt_response(
        challenge.challenge, response.peer_challenge, "alice", password="correct horse"
    )


def _success_for(
    challenge: MsChapV2Challenge, response: MsChapV2Response, password: str
) -> MsChapV2SuccessRequest:
    digest = authenticator_response_digest(
        hash_nt_password_hash(nt_password_hash(password)),
        response.nt_response,
        response.peer_challenge,
        challenge.challenge,
        "alice",
    )
    return MsChapV2SuccessRequest(response.ms_chap_id, digest, "OK")


def test_peer_accepts_right_authenticator_response() -> None:
    peer, challenge, response = make_peer()
    done = peer.receive(_success_for(challenge, response, "correct horse").encode())
    assert isinstance(done, Done) and done.outcome.success and done.type_data == b"\x03"
    assert done.outcome.keys is not None


@pytest.mark.parametrize(
    "forge",
    [
        lambda c, r: _success_for(c, r, "other password"),
        lambda c, r: MsChapV2SuccessRequest(r.ms_chap_id, bytes(20)),
        lambda c, r: _success_for(MsChapV2Challenge(0, bytes(16)), r, "correct horse"),
    ],
    ids=["wrong-password", "zeros", "other-challenge"],
)
def test_peer_refuses_wrong_authenticator_response(
    forge: Callable[[MsChapV2Challenge, MsChapV2Response], MsChapV2SuccessRequest],
) -> None:
    peer, challenge, response = make_peer()
    done = peer.receive(forge(challenge, response).encode())
    assert isinstance(done, Done) and not done.outcome.success
    assert done.outcome.reason == "bad_authenticator_response"
    assert done.type_data == b"\x04"  # a Failure acknowledgement, not a Success one
    assert done.outcome.keys is None


def test_peer_refuses_success_before_responding() -> None:
    peer = MsChapV2Peer(ctx(), password="pw")
    done = peer.receive(MsChapV2SuccessRequest(1, bytes(20)).encode())
    assert isinstance(done, Done) and done.outcome.reason == "protocol_error"


def test_peer_session_refuses_eap_success_after_bad_authenticator_response() -> None:
    # End to end through the session: a forged Success Request is followed by an
    # EAP-Success the peer must not accept.
    auth = AuthenticatorSession(
        [mschapv2_authenticator(StaticNtHashes.from_passwords(PASSWORDS))],
        random=DeterministicRandom(5),
    )
    peer = PeerSession([mschapv2_peer("correct horse")], "alice", random=DeterministicRandom(6))
    packet = auth.start()
    from eapkit.session import Finished, Send

    assert isinstance(packet, Send)
    reply = peer.receive(packet.packet)
    assert isinstance(reply, Send)
    to_peer = auth.receive(reply.packet)
    assert isinstance(to_peer, Send)
    reply = peer.receive(to_peer.packet)
    assert isinstance(reply, Send)
    to_peer = auth.receive(reply.packet)
    assert isinstance(to_peer, Send)
    msg = decode(to_peer.packet)
    assert isinstance(msg, MethodData)
    forged = bytearray(msg.type_data)
    forged[6] ^= 0x01  # flip one hex digit of S=
    forged_packet = MethodData(
        Code.REQUEST, msg.identifier, EapType.MSCHAPV2, bytes(forged)
    ).encode()
    ack = peer.receive(forged_packet)
    assert isinstance(ack, Send)
    final = peer.receive(bytes([3, msg.identifier, 0, 4]))
    assert isinstance(final, Finished) and not final.result.success
    assert final.result.keys is None


def test_overlong_names_end_in_failure_not_exceptions() -> None:
    table = StaticNtHashes.from_passwords(PASSWORDS)
    long_id = b"a" * 300
    auth = MsChapV2Authenticator(MethodContext(identity=long_id), table)
    challenge = decode_request(auth.start())
    assert isinstance(challenge, MsChapV2Challenge)
    resp = MsChapV2Response(challenge.ms_chap_id, bytes(16), bytes(24), long_id).encode()
    done = auth.receive(resp)
    assert isinstance(done, Done) and done.outcome.reason == "malformed"
    from eapkit.errors import ConfigError

    with pytest.raises(ConfigError):
        MsChapV2Peer(MethodContext(identity=long_id), password="pw")


def test_peer_retry_with_unusable_password_ends_cleanly() -> None:
    peer, _, _ = make_peer(retry=lambda f: "x" * 300)
    done = peer.receive(MsChapV2FailureRequest(9, 691, True, bytes(16), 3, "").encode())
    assert isinstance(done, Done) and done.outcome.reason == "bad_password_input"
    assert done.type_data == b"\x04"


def test_lookup_returning_garbage_is_a_config_error() -> None:
    from eapkit.errors import ConfigError

    auth = MsChapV2Authenticator(ctx(), lambda user: b"short")
    challenge = decode_request(auth.start())
    assert isinstance(challenge, MsChapV2Challenge)
    with pytest.raises(ConfigError):
        auth.receive(good_response(challenge))
