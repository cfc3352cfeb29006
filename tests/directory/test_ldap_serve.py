"""LDAP users log in through a running ``eapkit serve`` (PAP by ``radclient``; TTLS/PAP,
EAP-GTC and TTLS/EAP-GTC by ``eapol_test``) against a private slapd: group policy
attributes in the Accept, through nested groups too (cleo is a contractor through
contractors-eu; lola's groups are a cycle), refusals with their reasons in the decision
log, and a Reject ``directory_unavailable`` when no directory server answers."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.radius.clients import Client
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import Code, decode, encode_request, new_request_authenticator
from eapkit.serve import ServeConfig, build_core, open_directory
from tests.conftest import free_tcp_port
from tests.interop.ldap_server import (
    DISABLED_FILTER,
    GROUPS,
    PEOPLE,
    READER,
    READER_PASSWORD,
    Slapd,
    running_slapd,
)
from tests.interop.test_radclient import radclient
from tests.interop.tools import EapkitServe, eapol_test
from tests.radius.helpers import datagram

SECRET = b"ldap-secret"

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(Path(tmp_path_factory.mktemp("slapd"))) as server:
        server.wait_expired()
        yield server


def _serve(work: Path, slapd: Slapd, servers: list[str]) -> EapkitServe:
    work.mkdir(parents=True, exist_ok=True)
    (work / "bind.pw").write_text(READER_PASSWORD + "\n")
    urls = ", ".join(f'"{u}"' for u in servers)
    (work / "serve.toml").write_text(
        f"""
[directory]
kind = "ldap"
servers = [{urls}]
base = "{PEOPLE}"
bind_dn = "{READER}"
bind_password_file = "bind.pw"
ca = "{slapd.ca}"
timeout = 2
disabled_filter = "{DISABLED_FILTER}"

[[policy.groups]]
group = "cn=contractors,{GROUPS}"
name = "contractors-8h"
session_timeout = 28800
framed_pool = "pool-b"
class = "contractors"

[[policy.groups]]
group = "loop-b"
name = "looped"
session_timeout = 600
"""
    )
    extra = ["--config", str(work / "serve.toml"), "--methods", "ttls,gtc"]
    return EapkitServe(work, users=(), extra=extra)


@pytest.fixture(scope="module")
def server(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EapkitServe]:
    # the first server is down: every login below also exercises the failover
    down = f"ldaps://localhost:{free_tcp_port()}"
    with _serve(Path(tmp_path_factory.mktemp("serve-ldap")), slapd, [down, slapd.ldaps_url]) as srv:
        yield srv


def pap(port: int, user: str, password: str) -> str:
    attrs = f'User-Name = "{user}"\nUser-Password = "{password}"\nMessage-Authenticator = 0x00\n'
    return radclient(port, attrs).stdout


def test_pap_accept_carries_the_group_policy(server: EapkitServe) -> None:
    out = pap(server.port, "carl", "carl-pw")
    assert "Received Access-Accept" in out, out
    reply = out.split("Received", 1)[1]
    assert "Session-Timeout = 28800" in reply
    assert 'Framed-Pool = "pool-b"' in reply
    assert "Class = 0x636f6e74726163746f7273" in reply  # "contractors"
    line = server.decisions[-1]
    assert (line["user"], line["result"], line["policy"]) == ("carl", "accept", "contractors-8h")


@pytest.mark.parametrize(
    ("user", "policy", "timeout"),
    [("cleo", "contractors-8h", 28800), ("lola", "looped", 600)],
)
def test_pap_accept_carries_the_nested_group_policy(
    server: EapkitServe, user: str, policy: str, timeout: int
) -> None:
    """cleo is in contractors-eu only, which is in contractors: the contractors policy
    applies; lola is in loop-a, which is in loop-b, which is in loop-a."""
    out = pap(server.port, user, f"{user}-pw")
    assert "Received Access-Accept" in out, out
    assert f"Session-Timeout = {timeout}" in out.split("Received", 1)[1]
    line = server.decisions[-1]
    assert (line["user"], line["result"], line["policy"]) == (user, "accept", policy)


def test_pap_accept_of_a_user_in_no_policy_group_names_none(server: EapkitServe) -> None:
    out = pap(server.port, "dave", "dave-pw")
    assert "Received Access-Accept" in out, out
    line = server.decisions[-1]
    assert (line["user"], line["result"]) == ("dave", "accept") and "policy" not in line


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [
        ("carl", "wrong", "bad_password"),
        ("nobody", "carl-pw", "unknown_user"),
        ("*", "carl-pw", "unknown_user"),
        (")(uid=*", "carl-pw", "unknown_user"),
        ("c*", "carl-pw", "unknown_user"),
    ],
)
def test_pap_refused(server: EapkitServe, user: str, password: str, reason: str) -> None:
    out = pap(server.port, user, password)
    assert "Received Access-Reject" in out, out
    assert server.decisions[-1]["reason"] == reason


def _reject_attributes(out: str) -> list[str]:
    """The Reject's attributes as radclient prints them (not its id, its length or its
    Message-Authenticator, which differ per packet)."""
    assert "Received Access-Reject" in out, out
    lines = out.split("Received", 1)[1].splitlines()[1:]
    return [x.strip() for x in lines if x.strip() and "Message-Authenticator" not in x]


def test_account_state_reasons_in_the_log_same_reject_on_the_wire(server: EapkitServe) -> None:
    wrong = _reject_attributes(pap(server.port, "dave", "wrong"))
    assert server.decisions[-1]["reason"] == "bad_password"
    for user, reason in (
        ("lou", "account_locked"),
        ("rita", "password_must_change"),
        ("eve", "password_expired"),
        ("dora", "account_disabled"),
    ):
        assert _reject_attributes(pap(server.port, user, f"{user}-pw")) == wrong, user
        assert server.decisions[-1]["reason"] == reason


def _pap_reason(slapd: Slapd, tmp_path: Path, user: bytes, password: bytes) -> str:
    """The decision log's reason for one PAP request through the server's RADIUS core
    (radclient cannot send an empty User-Password or these octets)."""
    cfg = ServeConfig.from_toml(_serve(tmp_path, slapd, [slapd.ldaps_url]).workdir / "serve.toml")
    cfg.db, cfg.methods = tmp_path / "eapkit.db", ["gtc"]
    cfg.clients = [Client.of("127.0.0.1/32", SECRET.decode())]
    log = io.StringIO()
    core = build_core(cfg, open_directory(cfg), log_stream=log)
    authenticator = new_request_authenticator()
    attrs = [
        (Attr.USER_NAME, user),
        (Attr.USER_PASSWORD, hide_password(password, SECRET, authenticator)),
    ]
    data = encode_request(
        Code.ACCESS_REQUEST,
        1,
        attrs,
        SECRET,
        authenticator=authenticator,
        message_authenticator=True,
    )
    reply = datagram(core, data, ("127.0.0.1", 4000), time.time())
    assert decode(reply or b"").code == Code.ACCESS_REJECT
    return str(json.loads(log.getvalue().splitlines()[-1])["reason"])


def test_empty_password_refused(slapd: Slapd, tmp_path: Path) -> None:
    assert _pap_reason(slapd, tmp_path, b"carl", b"") == "empty_password"


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [
        # SASLprep maps a zero-width space to nothing: an unauthenticated bind
        (b"carl", "\u200b".encode(), "empty_password"),
        # SASLprep prohibits controls: nobody's password, not a dead directory
        (b"carl", b"\x07carl-pw", "bad_password"),
        (b"carl", b"carl\x00pw", "bad_password"),
        (b"carl\xff", b"carl-pw", "unknown_user"),  # not UTF-8
        (b"*", b"carl-pw", "unknown_user"),
        (b"x" * 253, b"carl-pw", "unknown_user"),
    ],
)
def test_hostile_pap_requests(
    slapd: Slapd, tmp_path: Path, user: bytes, password: bytes, reason: str
) -> None:
    assert _pap_reason(slapd, tmp_path, user, password) == reason


def _ttls(server: EapkitServe, user: str, password: str, phase2: str) -> str:
    """eapol_test's network block for TTLS with the inner method ``phase2``."""
    return f"""
key_mgmt=IEEE8021X
eap=TTLS
identity="{user}"
anonymous_identity="anonymous"
password="{password}"
ca_cert="{server.pki / "ca.pem"}"
phase2="{phase2}"
"""


def test_ttls_pap(server: EapkitServe) -> None:
    block = _ttls(server, "dave", "dave-pw", "auth=PAP")
    result = eapol_test(block, server.port, server.workdir / "eapol")
    assert result.success and result.mppe_ok, result.output[-2000:]
    line = server.decisions[-1]
    assert (line["user"], line["result"]) == ("dave", "accept") and "policy" not in line
    carl = block.replace('"dave"', '"carl"').replace("dave-pw", "carl-pw")
    assert eapol_test(carl, server.port, server.workdir / "eapol-carl").success
    line = server.decisions[-1]
    assert (line["user"], line["result"], line["policy"]) == ("carl", "accept", "contractors-8h")
    bad = eapol_test(block.replace("dave-pw", "carl-pw"), server.port, server.workdir / "eapol2")
    assert not bad.success


def test_all_directory_servers_down(slapd: Slapd, tmp_path: Path) -> None:
    downs = [f"ldaps://localhost:{free_tcp_port()}" for _ in range(2)]
    with _serve(tmp_path / "serve-down", slapd, downs) as srv:
        out = pap(srv.port, "carl", "carl-pw")
        assert "Received Access-Reject" in out, out
        assert srv.decisions[-1]["reason"] == "directory_unavailable"


def test_certificate_not_verified(slapd: Slapd, tmp_path: Path) -> None:
    # the certificate names localhost; by address its name does not match
    with _serve(tmp_path / "serve-name", slapd, [f"ldaps://127.0.0.1:{slapd.ldaps_port}"]) as srv:
        out = pap(srv.port, "carl", "carl-pw")
        assert "Received Access-Reject" in out, out
        assert srv.decisions[-1]["reason"] == "directory_unavailable"


GTC = 'key_mgmt=IEEE8021X\neap=GTC\nidentity="{user}"\npassword="{password}"\n'


@pytest.mark.parametrize("user", ["dave", "cleo"])
def test_eap_gtc_checks_the_password_by_a_bind(server: EapkitServe, user: str) -> None:
    """Bare EAP-GTC (RFC 3748 §5.6): the response is the password, checked by a bind
    as the user's entry; cleo's Accept names the policy of her nested group."""
    work = server.workdir / f"eapol-gtc-{user}"
    ok = eapol_test(GTC.format(user=user, password=f"{user}-pw"), server.port, work, no_mppe=True)
    assert ok.success, ok.output[-2000:]
    line = server.decisions[-1]
    assert (line["user"], line["method"], line["result"]) == (user, "GTC", "accept")
    assert line.get("policy") == ("contractors-8h" if user == "cleo" else None)
    bad = eapol_test(GTC.format(user=user, password="carl-pw"), server.port, work, no_mppe=True)
    assert not bad.success
    line = server.decisions[-1]
    assert (line["user"], line["result"], line["reason"]) == (user, "reject", "bad_password")


def test_ttls_eap_gtc(server: EapkitServe) -> None:
    """EAP-GTC inside TTLS (RFC 5281 §11.2.2): the same bind, and the tunnel's keys."""
    block = _ttls(server, "carl", "carl-pw", "autheap=GTC")
    ok = eapol_test(block, server.port, server.workdir / "eapol-ttls-gtc")
    assert ok.success and ok.mppe_ok, ok.output[-2000:]
    line = server.decisions[-1]
    assert (line["user"], line["result"], line["policy"]) == ("carl", "accept", "contractors-8h")
    wrong = _ttls(server, "carl", "dave-pw", "autheap=GTC")
    bad = eapol_test(wrong, server.port, server.workdir / "eapol-ttls-gtc-bad")
    assert not bad.success
    line = server.decisions[-1]
    assert (line["user"], line["result"], line["reason"]) == ("carl", "reject", "bad_password")
