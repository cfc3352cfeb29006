"""MS-CHAP-V2 over plain RADIUS (RFC 2548 §2.3), through the core: Success with the
authenticator response the client verifies, MPPE keys as RFC 3079 derives them on the
client's side, MS-CHAP-Error on failure, and every outcome through the one
authorization step: deleted, disabled and throttled users, and a 2FA user who gets the
same Reject whatever the password (issues 15, 23)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eapkit.authz import Authorizer, PasswordThrottle
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
from eapkit.directory import LocalDirectory
from eapkit.policy import UserPolicy
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore, Reply
from eapkit.radius.dictionary import VENDOR_MICROSOFT, Attr, MsAttr, vsa
from eapkit.radius.hiding import unhide_password
from eapkit.radius.mppe import recover_mppe_keys
from eapkit.radius.mschap import MS_CHAP_MPPE_KEYS, MsChapAccess, parse_mschap2_response
from eapkit.radius.packet import Code, Packet, decode, encode_request
from eapkit.radius.pap import PapAccess
from eapkit.store.memory import MemoryStore

SECRET = b"mschap-secret"
NORA_POLICY = UserPolicy(session_timeout=3600)
MAX_FAILURES = 3


@pytest.fixture
def users(tmp_path: Path) -> LocalDirectory:
    users = LocalDirectory(tmp_path / "users.db", cache_ttl=0)
    users.add("nora", "pencil", policy=NORA_POLICY, iterations=1000)
    users.add("tom", "pencil", second_factor="totp", iterations=1000)
    users.add("dora", "pencil", iterations=1000)
    users.add("gone", "pencil", iterations=1000)
    return users


def _pap_check(user: str, password: str, now: float) -> Verdict:
    return Verdict(False, "bad_password", user)


def _core(users: LocalDirectory, second_factor: str = "enforce") -> RadiusCore:
    throttle = PasswordThrottle(MemoryStore(), max_failures=MAX_FAILURES)
    authorizer = Authorizer(users, throttle=throttle)
    plain = MsChapAccess(users.nt_hash, authorizer, PapAccess(_pap_check, authorizer=authorizer))
    decisions = DecisionLog(io.StringIO())
    decisions.records = []
    clients = ClientTable([Client.of("127.0.0.0/8", SECRET, "gw", second_factor)])
    return RadiusCore(clients, None, plain=plain, decisions=decisions)


def _reasons(core: RadiusCore) -> list[str]:
    assert core.decisions.records is not None
    return [r["reason"] for r in core.decisions.records]


def _shape(reply: Packet) -> tuple[int, list[int], list[int]]:
    """What a reply tells on the wire apart from per-request values: its Code, the
    attribute types it carries and the Microsoft VSAs among them."""
    ms = sorted(t for t, _ in reply.vendor_attributes(VENDOR_MICROSOFT))
    return reply.code, sorted(t for t, _ in reply.attributes), ms


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


def test_right_password_gets_success_keys_and_policy(users: LocalDirectory) -> None:
    core = _core(users)
    data, challenge, peer_challenge, nt_response = _request("nora", "pencil")
    reply = _send(core, data)
    assert reply.code == Code.ACCESS_ACCEPT
    success = _ms(reply, MsAttr.MS_CHAP2_SUCCESS)
    assert success is not None and success[0] == 9  # the response's Ident
    nt_hash = nt_password_hash("pencil")
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
    # the reply attributes come from the authorization step (the user's policy)
    assert reply.get(Attr.SESSION_TIMEOUT) == (3600).to_bytes(4, "big")
    assert core.decisions.records is not None
    assert core.decisions.records[-1]["method"] == "mschapv2"


def test_wrong_password_and_unknown_user_get_the_same_ms_chap_error(
    users: LocalDirectory,
) -> None:
    core = _core(users)
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
    assert _reasons(core) == ["bad_password", "unknown_user"]


def test_deleted_and_disabled_users_are_refused(users: LocalDirectory) -> None:
    """The NAS's MS-CHAP-V2 with the right password: refused once the user is deleted
    or disabled, with the MS-CHAP-Error a wrong password gets (only the log tells)."""
    core = _core(users)
    wrong = _send(core, _request("nora", "crayon")[0])
    users.delete("gone")
    users.set_disabled("dora", True)
    gone = _send(core, _request("gone", "pencil")[0])
    dora = _send(core, _request("dora", "pencil")[0])
    dora_v1 = _send(core, _v1("dora", "pencil"))
    assert _shape(gone) == _shape(dora) == _shape(wrong)
    assert dora_v1.code == Code.ACCESS_REJECT and _ms(dora_v1, MS_CHAP_MPPE_KEYS) is None
    assert _reasons(core)[1:] == ["unknown_user", "user_disabled", "user_disabled"]
    users.set_disabled("dora", False)
    assert _send(core, _request("dora", "pencil")[0]).code == Code.ACCESS_ACCEPT


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_failed_passwords_are_throttled(users: LocalDirectory, version: str) -> None:
    """N wrong MS-CHAP passwords, then the right one is refused (``throttled``)
    unchecked; a NAS's failures count per (NAS, user), as PAP's do."""
    core = _core(users)

    def login(password: str) -> Packet:
        data = _request("nora", password)[0] if version == "v2" else _v1("nora", password)
        return _send(core, data)

    for _ in range(MAX_FAILURES):
        assert login("crayon").code == Code.ACCESS_REJECT
    right = login("pencil")
    assert right.code == Code.ACCESS_REJECT
    assert _ms(right, MsAttr.MS_CHAP2_SUCCESS) is None and _ms(right, MS_CHAP_MPPE_KEYS) is None
    assert _reasons(core) == ["bad_password"] * MAX_FAILURES + ["throttled"]


def test_a_success_clears_the_count(users: LocalDirectory) -> None:
    core = _core(users)
    for _ in range(MAX_FAILURES - 1):
        _send(core, _request("nora", "crayon")[0])
    assert _send(core, _request("nora", "pencil")[0]).code == Code.ACCESS_ACCEPT
    for _ in range(MAX_FAILURES - 1):
        _send(core, _request("nora", "crayon")[0])
    assert _send(core, _request("nora", "pencil")[0]).code == Code.ACCESS_ACCEPT


def test_a_2fa_users_password_is_never_confirmed(users: LocalDirectory) -> None:
    """Issue 15: the same outcome whatever the password; issue 23: never a Success that
    confirms it.  The right and a wrong password give the same Code and attributes,
    no State (no round that only a right password opens), the same reason."""
    core = _core(users)
    right = _send(core, _request("tom", "pencil")[0])
    wrong = _send(core, _request("tom", "crayon")[0])
    assert right.code == Code.ACCESS_REJECT
    assert _shape(right) == _shape(wrong)
    assert right.get(Attr.STATE) is None
    assert _ms(right, MsAttr.MS_CHAP2_SUCCESS) is None
    right_v1 = _send(core, _v1("tom", "pencil"))
    wrong_v1 = _send(core, _v1("tom", "crayon"))
    assert right_v1.code == Code.ACCESS_REJECT and _shape(right_v1) == _shape(wrong_v1)
    assert _reasons(core) == ["second_factor_required"] * 4
    # and never throttled for it: the password was never checked
    assert _send(core, _request("nora", "pencil")[0]).code == Code.ACCESS_ACCEPT


def test_a_nas_that_runs_the_second_factor_itself_gets_the_success(
    users: LocalDirectory,
) -> None:
    """``second_factor = "nas"``: the client entry asks the NAS's own second factor,
    so the password alone passes the authorization step there."""
    core = _core(users, second_factor="nas")
    data, challenge, peer_challenge, nt_response = _request("tom", "pencil")
    reply = _send(core, data)
    assert reply.code == Code.ACCESS_ACCEPT
    success = _ms(reply, MsAttr.MS_CHAP2_SUCCESS)
    assert success is not None
    assert check_authenticator_response(
        nt_password_hash("pencil"), nt_response, peer_challenge, challenge, "tom", success[1:]
    )


def _v1(user: str, password: str, flags: int = 1) -> bytes:
    challenge = os.urandom(8)
    nt_response = challenge_response(challenge, nt_password_hash(password))
    attrs = [
        (Attr.USER_NAME, user.encode()),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP_CHALLENGE, challenge),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP_RESPONSE, bytes((3, flags, *bytes(24))) + nt_response),
    ]
    return encode_request(Code.ACCESS_REQUEST, 7, attrs, SECRET)


def test_mschap_v1_right_password_gets_the_nt_key(users: LocalDirectory) -> None:
    core = _core(users)
    data = _v1("nora", "pencil")
    reply = _send(core, data)
    assert reply.code == Code.ACCESS_ACCEPT
    hidden = _ms(reply, MS_CHAP_MPPE_KEYS)
    assert hidden is not None
    keys = unhide_password(hidden, SECRET, decode(data).authenticator)
    # RFC 2548 §2.4.1: LM key (none kept: zeros), then the NT key MD4(NT hash)
    assert keys == bytes(8) + nt_hash_keys(nt_password_hash("pencil")).nt_hash_hash
    assert _ms(reply, MsAttr.MS_MPPE_ENCRYPTION_TYPES) == (6).to_bytes(4, "big")
    assert reply.get(Attr.SESSION_TIMEOUT) == (3600).to_bytes(4, "big")


def test_mschap_v1_wrong_password_and_lm_only(users: LocalDirectory) -> None:
    core = _core(users)
    wrong = _send(core, _v1("nora", "crayon"))
    assert wrong.code == Code.ACCESS_REJECT and _ms(wrong, MS_CHAP_MPPE_KEYS) is None
    error = _ms(wrong, MsAttr.MS_CHAP_ERROR)
    assert error is not None and error[1:].startswith(b"E=691")
    lm_only = _send(core, _v1("nora", "pencil", flags=0))
    assert lm_only.code == Code.ACCESS_REJECT
    assert _reasons(core) == ["bad_password", "lm_response_unsupported"]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=60), st.binary(max_size=20))
def test_malformed_ms_chap_attributes_get_a_reject(
    users: LocalDirectory, response: bytes, challenge: bytes
) -> None:
    core = _core(users)
    attrs = [
        (Attr.USER_NAME, b"nora"),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP_CHALLENGE, challenge),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP2_RESPONSE, response),
    ]
    reply = _send(core, encode_request(Code.ACCESS_REQUEST, 8, attrs, SECRET))
    assert reply.code == Code.ACCESS_REJECT
    assert (parse_mschap2_response(response) is None) == (len(response) != 50)
