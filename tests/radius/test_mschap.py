"""MS-CHAP-V2 over plain RADIUS (RFC 2548 §2.3), through the core: Success with the
authenticator response the client verifies, MPPE keys as RFC 3079 derives them on the
client's side, MS-CHAP-Error on failure, and the second-factor rule (issue 23)."""

from __future__ import annotations

import io
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.credentials import Verdict
from eapkit.crypto.mschap import (
    challenge_response,
    check_authenticator_response,
    generate_nt_response,
    get_asymmetric_start_key,
    get_master_key,
    nt_hash_keys,
    nt_password_hash,
)
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore, Reply
from eapkit.radius.dictionary import VENDOR_MICROSOFT, Attr, MsAttr, vsa
from eapkit.radius.hiding import hide_password, unhide_password
from eapkit.radius.mppe import recover_mppe_keys
from eapkit.radius.mschap import MS_CHAP_MPPE_KEYS, MsChapAccess, parse_mschap2_response
from eapkit.radius.packet import Code, Packet, decode, encode_request
from eapkit.radius.pap import PapAccess

SECRET = b"mschap-secret"
HASHES = {"nora": nt_password_hash("pencil"), "tom": nt_password_hash("pencil")}


def _lookup(user: str) -> bytes | None:
    return HASHES.get(user)


def _pap_check(user: str, password: str, now: float) -> Verdict:
    return Verdict(False, "bad_password", user)


def _code(user: str, code: str, now: float) -> Verdict:
    return Verdict(code == "123456", "ok" if code == "123456" else "bad_code", user)


def _core() -> RadiusCore:
    plain = MsChapAccess(
        _lookup,
        PapAccess(_pap_check, code_check=_code),
        needs_second_factor=lambda user, client: user == "tom",
    )
    decisions = DecisionLog(io.StringIO())
    decisions.records = []
    clients = ClientTable([Client.of("127.0.0.0/8", SECRET, "gw")])
    return RadiusCore(clients, None, plain=plain, decisions=decisions)


def _request(user: str, password: str) -> tuple[bytes, bytes, bytes, bytes]:
    challenge, peer_challenge = os.urandom(16), os.urandom(16)
    nt_response = generate_nt_response(challenge, peer_challenge, user, password)
    response = bytes((9, 0)) + peer_challenge + bytes(8) + nt_response
    attrs = [
        (Attr.USER_NAME, user.encode()),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP_CHALLENGE, challenge),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP2_RESPONSE, response),
    ]
    data = encode_request(Code.ACCESS_REQUEST, 5, attrs, SECRET)
    return data, challenge, peer_challenge, nt_response


def _send(core: RadiusCore, data: bytes, port: int = 40000) -> Packet:
    handled = core.receive(data, ("127.0.0.1", port), 1.0)
    assert isinstance(handled, Reply)
    return decode(handled.data)


def _ms(reply: Packet, vtype: int) -> bytes | None:
    return next((v for t, v in reply.vendor_attributes(VENDOR_MICROSOFT) if t == vtype), None)


def test_right_password_gets_success_keys_and_policy() -> None:
    core = _core()
    data, challenge, peer_challenge, nt_response = _request("nora", "pencil")
    reply = _send(core, data)
    assert reply.code == Code.ACCESS_ACCEPT
    success = _ms(reply, MsAttr.MS_CHAP2_SUCCESS)
    assert success is not None and success[0] == 9  # the response's Ident
    nt_hash = HASHES["nora"]
    assert check_authenticator_response(
        nt_hash, nt_response, peer_challenge, challenge, "nora", success[1:]
    )
    request = decode(data)
    keys = recover_mppe_keys(reply, SECRET, request.authenticator)
    assert keys is not None
    # RFC 3079 §3.4 on the client's side: its receive key is the server's send key.
    master = get_master_key(nt_hash_keys(nt_hash).nt_hash_hash, nt_response)
    assert keys.send == get_asymmetric_start_key(master, 16, is_send=False, is_server=False)
    assert keys.recv == get_asymmetric_start_key(master, 16, is_send=True, is_server=False)
    assert _ms(reply, MsAttr.MS_MPPE_ENCRYPTION_POLICY) == (1).to_bytes(4, "big")
    assert _ms(reply, MsAttr.MS_MPPE_ENCRYPTION_TYPES) == (6).to_bytes(4, "big")
    assert core.decisions.records is not None
    assert core.decisions.records[-1]["method"] == "mschapv2"


def test_wrong_password_and_unknown_user_get_the_same_ms_chap_error() -> None:
    core = _core()
    errors = []
    for user, password in (("nora", "crayon"), ("nobody", "pencil")):
        data, challenge, _, _ = _request(user, password)
        reply = _send(core, data)
        assert reply.code == Code.ACCESS_REJECT
        assert _ms(reply, MsAttr.MS_CHAP2_SUCCESS) is None
        assert recover_mppe_keys(reply, SECRET, decode(data).authenticator) is None
        error = _ms(reply, MsAttr.MS_CHAP_ERROR)
        assert error is not None and error[0] == 9
        assert error[1:].startswith(b"E=691 R=0 C=" + challenge.hex().upper().encode())
        errors.append(error[1:].split(b" C=")[0])
    assert errors[0] == errors[1]
    assert core.decisions.records is not None
    assert [r["reason"] for r in core.decisions.records] == ["bad_password", "unknown_user"]


def test_second_factor_user_gets_the_code_round_then_success() -> None:
    core = _core()
    data, challenge, peer_challenge, nt_response = _request("tom", "pencil")
    first = _send(core, data)
    assert first.code == Code.ACCESS_CHALLENGE  # never an Accept on the password alone
    assert _ms(first, MsAttr.MS_CHAP2_SUCCESS) is None
    state = first.get(Attr.STATE)
    assert state is not None
    auth = os.urandom(16)
    attrs = [
        (Attr.USER_NAME, b"tom"),
        (Attr.USER_PASSWORD, hide_password(b"123456", SECRET, auth)),
        (Attr.STATE, state),
    ]
    second = _send(
        core, encode_request(Code.ACCESS_REQUEST, 6, attrs, SECRET, authenticator=auth), 40001
    )
    assert second.code == Code.ACCESS_ACCEPT
    success = _ms(second, MsAttr.MS_CHAP2_SUCCESS)
    assert success is not None
    assert check_authenticator_response(
        HASHES["tom"], nt_response, peer_challenge, challenge, "tom", success[1:]
    )
    assert recover_mppe_keys(second, SECRET, auth) is not None  # under the new request


def test_second_factor_user_with_a_wrong_code_is_rejected() -> None:
    core = _core()
    first = _send(core, _request("tom", "pencil")[0])
    state = first.get(Attr.STATE)
    assert state is not None
    auth = os.urandom(16)
    attrs = [
        (Attr.USER_NAME, b"tom"),
        (Attr.USER_PASSWORD, hide_password(b"000000", SECRET, auth)),
        (Attr.STATE, state),
    ]
    reply = _send(core, encode_request(Code.ACCESS_REQUEST, 6, attrs, SECRET, authenticator=auth))
    assert reply.code == Code.ACCESS_REJECT and _ms(reply, MsAttr.MS_CHAP2_SUCCESS) is None


def test_second_factor_without_a_code_round_is_refused() -> None:
    plain = MsChapAccess(_lookup, None, needs_second_factor=lambda user, client: True)
    core = RadiusCore(
        ClientTable([Client.of("127.0.0.0/8", SECRET, "gw")]),
        None,
        plain=plain,
        decisions=DecisionLog(io.StringIO()),
    )
    reply = _send(core, _request("nora", "pencil")[0])
    assert reply.code == Code.ACCESS_REJECT and _ms(reply, MsAttr.MS_CHAP2_SUCCESS) is None


def _v1(user: str, password: str, flags: int = 1) -> bytes:
    challenge = os.urandom(8)
    nt_response = challenge_response(challenge, nt_password_hash(password))
    attrs = [
        (Attr.USER_NAME, user.encode()),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP_CHALLENGE, challenge),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP_RESPONSE, bytes((3, flags, *bytes(24))) + nt_response),
    ]
    return encode_request(Code.ACCESS_REQUEST, 7, attrs, SECRET)


def test_mschap_v1_right_password_gets_the_nt_key() -> None:
    core = _core()
    data = _v1("nora", "pencil")
    reply = _send(core, data)
    assert reply.code == Code.ACCESS_ACCEPT
    hidden = _ms(reply, MS_CHAP_MPPE_KEYS)
    assert hidden is not None
    keys = unhide_password(hidden, SECRET, decode(data).authenticator)
    # RFC 2548 §2.4.1: LM key (none kept: zeros), then the NT key MD4(NT hash)
    assert keys == bytes(8) + nt_hash_keys(HASHES["nora"]).nt_hash_hash
    assert _ms(reply, MsAttr.MS_MPPE_ENCRYPTION_TYPES) == (6).to_bytes(4, "big")


def test_mschap_v1_wrong_password_lm_only_and_second_factor() -> None:
    core = _core()
    wrong = _send(core, _v1("nora", "crayon"))
    assert wrong.code == Code.ACCESS_REJECT and _ms(wrong, MS_CHAP_MPPE_KEYS) is None
    error = _ms(wrong, MsAttr.MS_CHAP_ERROR)
    assert error is not None and error[1:].startswith(b"E=691")
    lm_only = _send(core, _v1("nora", "pencil", flags=0))
    assert lm_only.code == Code.ACCESS_REJECT
    tom = _send(core, _v1("tom", "pencil"))
    assert tom.code == Code.ACCESS_CHALLENGE and _ms(tom, MS_CHAP_MPPE_KEYS) is None
    assert core.decisions.records is not None
    reasons = [r["reason"] for r in core.decisions.records]
    assert reasons == ["bad_password", "lm_response_unsupported"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.binary(max_size=20))
def test_malformed_ms_chap_attributes_get_a_reject(response: bytes, challenge: bytes) -> None:
    core = _core()
    attrs = [
        (Attr.USER_NAME, b"nora"),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP_CHALLENGE, challenge),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP2_RESPONSE, response),
    ]
    reply = _send(core, encode_request(Code.ACCESS_REQUEST, 8, attrs, SECRET))
    assert reply.code == Code.ACCESS_REJECT
    assert (parse_mschap2_response(response) is None) == (len(response) != 50)
