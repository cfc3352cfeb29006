"""LDAP users log in through a running ``eapkit serve`` (PAP by ``radclient``, TTLS/PAP
by ``eapol_test``) against a private slapd: group policy attributes in the Accept,
refusals with their reasons in the decision log, and a Reject
``directory_unavailable`` when no directory server answers."""

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
from tests.interop.ldap_server import GROUPS, PEOPLE, READER, READER_PASSWORD, Slapd, running_slapd
from tests.interop.test_radclient import radclient
from tests.interop.tools import EapkitServe, eapol_test
from tests.radius.helpers import datagram

SECRET = b"ldap-secret"

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(Path(tmp_path_factory.mktemp("slapd"))) as server:
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

[[policy.groups]]
group = "cn=contractors,{GROUPS}"
session_timeout = 28800
framed_pool = "pool-b"
class = "contractors"
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


def test_empty_password_refused(slapd: Slapd, tmp_path: Path) -> None:
    # radclient leaves an empty User-Password out; eapkit's own encoder sends one.
    cfg = ServeConfig.from_toml(_serve(tmp_path, slapd, [slapd.ldaps_url]).workdir / "serve.toml")
    cfg.db, cfg.methods = tmp_path / "eapkit.db", ["gtc"]
    cfg.clients = [Client.of("127.0.0.1/32", SECRET.decode())]
    log = io.StringIO()
    core = build_core(cfg, open_directory(cfg), log_stream=log)
    authenticator = new_request_authenticator()
    attrs = [
        (Attr.USER_NAME, b"carl"),
        (Attr.USER_PASSWORD, hide_password(b"", SECRET, authenticator)),
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
    assert json.loads(log.getvalue().splitlines()[-1])["reason"] == "empty_password"


def test_ttls_pap(server: EapkitServe) -> None:
    block = f"""
key_mgmt=IEEE8021X
eap=TTLS
identity="dave"
anonymous_identity="anonymous"
password="dave-pw"
ca_cert="{server.pki / "ca.pem"}"
phase2="auth=PAP"
"""
    result = eapol_test(block, server.port, server.workdir / "eapol")
    assert result.success and result.mppe_ok, result.output[-2000:]
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
