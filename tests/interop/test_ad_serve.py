"""Active Directory users through a running ``eapkit serve`` against a Samba DC
(tests/interop/samba_dc.py, in its own network namespace):

- PEAP/MSCHAPv2, bare EAP-MSCHAPv2, TTLS/MSCHAPv2 and TTLS/PAP by ``eapol_test``,
  ``MPPE keys OK``
  (MS-CHAPv2 checked by the DC through ``ntlm_auth --request-nt-key``);
- MS-CHAP-V2 over plain RADIUS (pyrad as the NAS): S= verifies, MPPE keys right;
- PAP + TOTP by ``radclient`` for an AD user enrolled with ``eapkit enroll totp``;
- an account renamed on the DC keeps its TOTP (stored under the objectGUID), and a new
  account given the old name has none;
- the disabled, expired, must-change and locked-out accounts refused, each with its reason in the
  decision log and the same Access-Reject on the wire, by PAP and by MS-CHAPv2;
- a ``[[policy.groups]]`` entry matched through a nested group, and named in the decision log;
- user names with LDAP filter metacharacters (``*``, ``(``, ``)``, ``\\``, NUL) find
  nobody (RFC 4515 §3 escaping; pyrad as the NAS: radclient cannot send a NUL);
- an ``ntlm_auth`` that hangs is killed at its timeout (``directory_unavailable``);
- the DC stopped mid-run: ``directory_unavailable``, and the server keeps answering.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eapkit.crypto.mschap import (
    check_authenticator_response,
    generate_nt_response,
    get_master_key,
    hash_nt_password_hash,
    mschapv2_msk,
    nt_password_hash,
)
from eapkit.directory.ad import AdDirectory
from eapkit.directory.ad_rules import AdSettings
from eapkit.directory.base import User
from eapkit.directory.groups import LdapSettings
from eapkit.radius.mppe import mppe_keys_from_msk, recover_mppe_keys
from eapkit.radius.packet import decode
from tests.interop.samba_dc import (
    BASE,
    BIND_DN,
    BIND_PASSWORD,
    DOMAIN,
    PASSWORDS,
    REALM,
    SambaDc,
    running_dc,
)
from tests.interop.test_radclient import radclient
from tests.interop.test_two_factor_radius import code
from tests.interop.tools import EapkitServe, eapol_test

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDc]:
    with running_dc(Path(tmp_path_factory.mktemp("samba-dc"))) as server:
        yield server


def _serve(work: Path, dc: SambaDc, ntlm_auth: list[str], timeout: float = 5) -> EapkitServe:
    work.mkdir(parents=True, exist_ok=True)
    (work / "bind.pw").write_text(BIND_PASSWORD + "\n")
    command = ", ".join(f'"{part}"' for part in ntlm_auth)
    (work / "serve.toml").write_text(
        f"""
db = "eapkit.db"

[directory]
kind = "ad"
servers = ["{dc.ldaps_url}"]
base = "{BASE}"
bind_dn = "{BIND_DN}"
bind_password_file = "bind.pw"
ca = "{dc.ca}"
timeout = 3
cache_ttl = 0             # the enrollment below comes from another process
domain = "{DOMAIN}"
ntlm_auth = [{command}]
ntlm_auth_timeout = {timeout}

[[policy.groups]]
group = "vpn-admins"      # alice is in it only through vpn-staff
session_timeout = 3600
class = "admins"
"""
    )
    extra = ["--config", str(work / "serve.toml"), "--methods", "peap,ttls,mschapv2,gtc"]
    return EapkitServe(work, users=(), extra=extra)


@pytest.fixture(scope="module")
def server(dc: SambaDc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EapkitServe]:
    ntlm_auth = ["ntlm_auth", f"--configfile={dc.smb_conf}"]
    with _serve(Path(tmp_path_factory.mktemp("serve-ad")), dc, ntlm_auth) as srv:
        yield srv


def _pap(port: int, user: str, password: str, state: str | None = None) -> str:
    attrs = f'User-Name = "{user}"\nUser-Password = "{password}"\nMessage-Authenticator = 0x00\n'
    if state:
        attrs += f"State = {state}\n"
    return radclient(port, attrs).stdout


def _network(method: str, user: str, password: str, ca: Path) -> str:
    lines = ["key_mgmt=IEEE8021X", f'identity="{user}"', f'password="{password}"']
    if method == "peap":
        lines += ["eap=PEAP", 'phase1="peapver=0"', 'phase2="auth=MSCHAPV2"']
    elif method == "ttls":
        lines += ["eap=TTLS", 'phase2="auth=PAP"']
    elif method == "ttls-mschapv2":
        lines += ["eap=TTLS", 'phase2="auth=MSCHAPV2"']
    else:
        lines += ["eap=MSCHAPV2"]
    if method != "mschapv2":
        lines += ['anonymous_identity="anonymous"', f'ca_cert="{ca}"']
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("method", ["peap", "mschapv2", "ttls", "ttls-mschapv2"])
def test_eapol_test_against_the_dc(server: EapkitServe, method: str, tmp_path: Path) -> None:
    block = _network(method, "alice", PASSWORDS["alice"], server.pki / "ca.pem")
    result = eapol_test(block, server.port, tmp_path / "ok")
    assert result.success and result.mppe_ok, result.output[-3000:]
    accepted = server.decisions[-1]
    assert accepted["reason"] == "ok" and accepted["user"] == "alice", accepted
    assert accepted["policy"] == "vpn-admins", accepted  # named in the decision log
    bad = eapol_test(
        block.replace(PASSWORDS["alice"], "Wrong-pass-12"), server.port, tmp_path / "bad"
    )
    assert not bad.success
    refused = server.decisions[-1]
    assert refused["reason"] == "bad_password", refused


def test_nested_group_policy_in_the_accept(server: EapkitServe) -> None:
    out = _pap(server.port, "alice", PASSWORDS["alice"])
    assert "Received Access-Accept" in out, out
    reply = out.split("Received", 1)[1]
    assert "Session-Timeout = 3600" in reply
    assert "Class = 0x61646d696e73" in reply  # "admins", from vpn-admins through vpn-staff
    assert server.decisions[-1]["policy"] == "vpn-admins"  # the decision log names it
    # erin is in no listed group: no policy attributes, no policy named
    plain = _pap(server.port, "erin", PASSWORDS["erin"])
    assert "Received Access-Accept" in plain and "Session-Timeout" not in plain, plain
    assert server.decisions[-1]["user"] == "erin" and "policy" not in server.decisions[-1]


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        ("bob", "account_disabled"),
        ("carol", "account_expired"),
        ("dave", "password_must_change"),
        ("frank", "account_locked"),
    ],
)
def test_refused_accounts(server: EapkitServe, user: str, reason: str, tmp_path: Path) -> None:
    out = _pap(server.port, user, PASSWORDS[user])
    assert "Received Access-Reject" in out, out
    assert server.decisions[-1]["reason"] == reason
    wrong = _pap(server.port, "alice", "Wrong-pass-12")  # the same Reject on the wire
    assert _reject_attributes(out) == _reject_attributes(wrong)
    block = _network("peap", user, PASSWORDS[user], server.pki / "ca.pem")
    result = eapol_test(block, server.port, tmp_path / "peap")
    assert not result.success
    assert server.decisions[-1]["reason"] == reason


@pytest.mark.parametrize(
    ("user", "password", "code"),
    [("alice", "Alice-pass-12", 2), ("alice", "Wrong-pass-12", 3), ("bob", "Bob-pass-12", 3)],
)
def test_mschapv2_over_plain_radius(
    server: EapkitServe, user: str, password: str, code: int
) -> None:
    """RFC 2548 MS-CHAP2-Response without EAP (pyrad as the NAS): the DC checks it; the
    S= response verifies and the MPPE keys are those of the user's real password."""
    challenge, peer_challenge = os.urandom(16), os.urandom(16)
    nt_response = generate_nt_response(challenge, peer_challenge, user, password)
    request = _pyrad_request(server, user)
    request["MS-CHAP-Challenge"] = challenge
    request["MS-CHAP2-Response"] = b"\x05\x00" + peer_challenge + bytes(8) + nt_response
    reply = _pyrad_send(server, request)
    assert reply.code == code, server.decisions[-1]
    if code == 3:
        assert server.decisions[-1]["reason"] == (
            "account_disabled" if user == "bob" else "bad_password"
        )
        return
    nt_hash = nt_password_hash(password)
    success = reply["MS-CHAP2-Success"][0]
    assert check_authenticator_response(
        nt_hash, nt_response, peer_challenge, challenge, user, success[1:]
    )
    keys = recover_mppe_keys(
        decode(bytes(reply.raw_packet)), server.secret.encode(), request.authenticator
    )
    master = get_master_key(hash_nt_password_hash(nt_hash), nt_response)
    assert keys == mppe_keys_from_msk(mschapv2_msk(master), 16)


def _pyrad_request(server: EapkitServe, user: str) -> Any:
    """An Access-Request from pyrad (a NAS that is not eapkit) naming ``user``."""
    pyrad_packet = pytest.importorskip("pyrad.packet")
    pyrad_dictionary = pytest.importorskip("pyrad.dictionary")
    dictionary = pyrad_dictionary.Dictionary(
        str(Path(__file__).parents[1] / "radius" / "dictionary.pyrad")
    )
    request = pyrad_packet.AuthPacket(code=1, secret=server.secret.encode(), dict=dictionary)
    request["User-Name"] = user
    return request


def _pyrad_send(server: EapkitServe, request: Any) -> Any:
    """Send ``request`` (with a Message-Authenticator) and return the verified reply."""
    request.add_message_authenticator()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(request.RequestPacket(), ("127.0.0.1", server.port))
        data = s.recv(4096)
    reply = request.CreateReply(packet=data)
    assert request.VerifyReply(reply, data, enforce_ma=True)
    return reply


@pytest.mark.parametrize(
    "user",
    ["*", "al*", ")(sAMAccountName=*", "alice)(|(x=*", "alice\\", "al\\69ce", "alice\x00", "\x00"],
)
def test_filter_metacharacters_find_nobody(server: EapkitServe, user: str) -> None:
    """RFC 4515 §3: ``*``, ``(``, ``)`` and ``\\`` in the name reach the DC escaped, so no
    name widens or ends the filter (``al\\69ce`` would be ``alice`` were its backslash
    taken as an escape); a name with a NUL (which a C client could cut to ``alice``) is
    nobody before any search.  alice's own password gets the Reject of an unknown user.
    pyrad sends the names as they are (radclient's text input cannot carry a NUL)."""
    request = _pyrad_request(server, user)
    request["User-Password"] = request.PwCrypt(PASSWORDS["alice"])
    reply = _pyrad_send(server, request)
    assert reply.code == 3, server.decisions[-1]  # Access-Reject
    decision = server.decisions[-1]
    assert decision["reason"] == "unknown_user" and decision["user"] == user, decision


def _reject_attributes(out: str) -> list[str]:
    reply = out.split("Received", 1)[1]
    return sorted(
        line.split("=")[0].strip()
        for line in reply.splitlines()[1:]
        if "=" in line and "Message-Authenticator" not in line
    )


def _enroll(server: EapkitServe, user: str) -> subprocess.CompletedProcess[str]:
    """``eapkit enroll totp USER`` with the server's configuration (another process)."""
    work = server.workdir
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "eapkit",
            "enroll",
            "totp",
            user,
            "--no-terminal",
            "--config",
            str(work / "serve.toml"),
        ],
        capture_output=True,
        text=True,
        cwd=work,
    )


def _enrolled_secret(server: EapkitServe, user: str) -> str:
    """Enroll ``user`` for TOTP; the base32 secret of the otpauth URI printed."""
    enrolled = _enroll(server, user)
    assert enrolled.returncode == 0, enrolled.stderr
    found = re.search(r"secret=([A-Z2-7]+)", enrolled.stdout)
    assert found is not None, enrolled.stdout
    return found.group(1)


def _code_asked(out: str) -> str:
    """The State of the Access-Challenge in radclient's ``out`` (a code is asked for)."""
    assert "Received Access-Challenge" in out, out
    state = re.search(r"State = (0x[0-9a-f]+)", out)
    assert state is not None, out
    return state.group(1)


def test_pap_and_totp_for_an_ad_user(server: EapkitServe) -> None:
    secret = _enrolled_secret(server, "erin")
    password = PASSWORDS["erin"]
    state = _code_asked(_pap(server.port, "erin", password))  # the password alone
    answered = _pap(server.port, "erin", code(secret), state=state)
    assert "Received Access-Accept" in answered, answered
    assert "Received Access-Reject" in _pap(server.port, "erin", "Wrong-pass-12" + code(secret, 1))
    # enrolling someone AD does not know is refused
    nobody = _enroll(server, "nobody")
    assert nobody.returncode != 0 and "Traceback" not in nobody.stderr


def test_renamed_user_keeps_their_totp_and_a_new_namesake_gets_none(
    server: EapkitServe, dc: SambaDc
) -> None:
    """As tests/directory/test_ldap_state.py's test of the same name, through serve and
    the DC: the TOTP enrollment is stored under the objectGUID ([MS-ADA3] §2.44), so the
    account renamed (sAMAccountName and CN, by ``samba-tool user rename``) keeps it, and
    a new account given the old name (another objectGUID) has none.  The server reads
    the DC afresh for each login (``cache_ttl = 0``, as the LDAP test's fresh
    directories), so the rename shows at once."""
    dc.tool("user", "add", "ren", "Ren-pass-12")
    secret = _enrolled_secret(server, "ren")
    _code_asked(_pap(server.port, "ren", "Ren-pass-12"))  # enrolled: a code is asked for

    dc.tool(
        "user",
        "rename",
        "ren",
        "--samaccountname=rennie",
        "--force-new-cn=rennie",
        f"--upn=rennie@{REALM.lower()}",
    )
    gone = _pap(server.port, "ren", "Ren-pass-12")  # the old name is nobody now
    assert "Received Access-Reject" in gone, gone
    assert server.decisions[-1]["reason"] == "unknown_user", server.decisions[-1]
    state = _code_asked(_pap(server.port, "rennie", "Ren-pass-12"))
    answered = _pap(server.port, "rennie", code(secret), state=state)
    assert "Received Access-Accept" in answered, answered
    accepted = server.decisions[-1]
    assert accepted["reason"] == "ok" and accepted["user"] == "rennie", accepted

    dc.tool("user", "add", "ren", "Ren-new-pass-12")  # someone new gets the old name
    newcomer = _pap(server.port, "ren", "Ren-new-pass-12")
    # no TOTP under the newcomer's objectGUID: the password alone, no code asked for
    assert "Received Access-Accept" in newcomer, newcomer
    newcomer_decision = server.decisions[-1]
    assert newcomer_decision["reason"] == "ok" and newcomer_decision["user"] == "ren"


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [
        ("bob", "Bob-pass-12", "account_disabled"),
        ("carol", "Carol-pass-12", "account_expired"),
        ("dave", "Dave-pass-12", "password_must_change"),
        ("frank", "Frank-pass-12", "account_locked"),
        ("alice", "Wrong-pass-12", "bad_password"),
    ],
)
def test_bind_diagnostic_names_a_state_newer_than_the_entry(
    dc: SambaDc, user: str, password: str, reason: str
) -> None:
    """A record read before the account changed (no state on it) still gets the DC's
    reason: the refused bind's diagnostic carries AD's "data 533"-style code."""
    ldap = LdapSettings(
        servers=(dc.ldaps_url,),
        base=BASE,
        bind_dn=BIND_DN,
        bind_password=BIND_PASSWORD,
        user_filter="(sAMAccountName={user})",
        ca=dc.ca,
    )
    directory = AdDirectory(AdSettings(ldap, domain=DOMAIN))
    try:
        stale = User(user)  # as if read before the account was refused
        assert directory.verify_password(stale, user, password, 0).reason == reason
    finally:
        directory.close()


def test_ntlm_auth_that_hangs_fails_closed(dc: SambaDc, tmp_path: Path) -> None:
    """A helper that never answers is killed at ntlm_auth_timeout: directory_unavailable,
    and the server goes on answering (PAP, which needs no helper, right after)."""
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    with _serve(tmp_path / "serve-hang", dc, hang, timeout=1) as srv:
        block = _network("mschapv2", "alice", PASSWORDS["alice"], srv.pki / "ca.pem")
        started = time.monotonic()
        result = eapol_test(block, srv.port, tmp_path / "hang")
        assert not result.success
        assert srv.decisions[-1]["reason"] == "directory_unavailable"
        assert time.monotonic() - started < 30  # not the helper's 60 s
        assert "Received Access-Accept" in _pap(srv.port, "erin", PASSWORDS["erin"])


def test_dc_stopped_mid_run(server: EapkitServe, dc: SambaDc, tmp_path: Path) -> None:
    """Last in the module: the DC goes away, logins fail closed, the server answers."""
    assert "Received Access-Accept" in _pap(server.port, "alice", PASSWORDS["alice"])
    dc.stop()
    try:
        for _ in range(2):  # every request gets its Reject
            out = _pap(server.port, "alice", PASSWORDS["alice"])
            assert "Received Access-Reject" in out, out
            assert server.decisions[-1]["reason"] == "directory_unavailable"
        block = _network("mschapv2", "alice", PASSWORDS["alice"], server.pki / "ca.pem")
        result = eapol_test(block, server.port, tmp_path / "down")
        assert not result.success
        assert server.decisions[-1]["reason"] == "directory_unavailable"
        assert server.daemon is not None and server.daemon.proc.poll() is None
    finally:
        dc.start()
    # back: ldap3 keeps an address that failed out of use for 5 s, then it is tried again
    deadline = time.monotonic() + 30
    while "Received Access-Accept" not in _pap(server.port, "alice", PASSWORDS["alice"]):
        assert server.decisions[-1]["reason"] == "directory_unavailable"
        assert time.monotonic() < deadline, "the DC came back, eapkit serve did not use it"
        time.sleep(1)
