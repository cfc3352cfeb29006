"""``eapkit serve`` reloads its CRL files without a restart (issue 22): a certificate
revoked after start-up is refused at its next EAP-TLS login, with the reason
``certificate_revoked`` in the decision log (eapkit/crl_reload.py,
TlsConfig.crl_source)."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from eapkit import pki
from eapkit.crl_reload import CrlFiles
from eapkit.directory import LocalDirectory
from eapkit.methods.tls import tls_peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius.clients import Client
from eapkit.radius.core import RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import Code, decode, eap_message_attributes, encode_request
from eapkit.rand import DeterministicRandom
from eapkit.serve import CRL_SOURCES, ServeConfig, TlsFiles, build_core, reload_crls
from eapkit.session import Finished, PeerSession, Send
from tests.certs import IDENTITY, lab, peer_config
from tests.conftest import free_udp_port
from tests.interop.tools import Daemon
from tests.radius.helpers import datagram

SECRET = "crl reload secret 0123"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _write_crl(path: Path, revoked: list[int]) -> None:
    """As an administrator should: a temporary file renamed into place."""
    lb = lab("ec")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pki.crl_pem(pki.make_crl(lb.ca, revoked, now=lb.now)))
    os.replace(tmp, path)


def test_crl_files_notice_a_change_at_most_once_an_interval(tmp_path: Path) -> None:
    crl = tmp_path / "ca.crl"
    _write_crl(crl, [])
    clock, warnings = Clock(), list[str]()
    files = CrlFiles([crl], clock=clock, warn=warnings.append)
    _write_crl(crl, [lab("ec").revoked_client.serial])
    files.poll()
    assert files.generation == 0  # within the interval: no look at the files
    clock.now += 1.0
    files.poll()
    assert files.generation == 1 and files.crls == (crl.read_bytes(),)
    clock.now += 1.0
    files.poll()
    assert files.generation == 1  # unchanged
    # a broken file keeps the CRLs in force, reported once
    crl.write_bytes(b"not a crl")
    clock.now += 1.0
    files.poll()
    clock.now += 1.0
    files.poll()
    assert files.generation == 1 and b"BEGIN X509 CRL" in files.crls[0]
    assert len(warnings) == 1 and "previous one stays in force" in warnings[0]
    # SIGHUP: looked at on the next poll, whatever the interval
    _write_crl(crl, [])
    files.force()
    files.poll()
    assert files.generation == 2


@pytest.fixture
def served(tmp_path: Path) -> tuple[RadiusCore, io.StringIO, Path]:
    lb = lab("ec")
    files = {
        "cert": lb.server.chain_pem,
        "key": lb.server.key_pem,
        "ca": lb.ca.cert_pem,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    crl = tmp_path / "ca.crl"
    _write_crl(crl, [])
    cfg = ServeConfig(
        db=tmp_path / "eapkit.db",
        methods=["tls"],
        tls=TlsFiles(cert=tmp_path / "cert", key=tmp_path / "key", ca=tmp_path / "ca", crl=[crl]),
        clients=[Client.of("127.0.0.0/8", SECRET, "gw")],
    )
    users = LocalDirectory(cfg.db)
    users.add(IDENTITY, "unused", iterations=1000)
    users.add("mallory", "unused", iterations=1000)
    log = io.StringIO()
    return build_core(cfg, users, log_stream=log), log, crl


def _login(core: RadiusCore, client: pki.Issued, now: float, *, acknowledge: bool = True) -> int:
    """One EAP-TLS login relayed as a NAS would; without ``acknowledge`` the peer walks
    away on receiving the server's TLS alert, as strongSwan's client does (returns the
    Access-Challenge's code then)."""
    peer = PeerSession([tls_peer(peer_config(lab("ec"), client))], IDENTITY)
    action = peer.receive(Identity(EapCode.REQUEST, 0).encode())
    rand, state = DeterministicRandom(int(now * 1000)), None
    for ident in range(1, 31):
        assert isinstance(action, Send), action
        attrs = [(Attr.USER_NAME, IDENTITY.encode()), *eap_message_attributes(action.packet)]
        if state is not None:
            attrs.append((Attr.STATE, state))
        raw = encode_request(
            Code.ACCESS_REQUEST, ident, attrs, SECRET.encode(), authenticator=rand.random_bytes(16)
        )
        answer = datagram(core, raw, ("127.0.0.1", 5000), now)
        assert answer is not None
        reply = decode(answer)
        eap = reply.eap_message()
        assert eap is not None
        action = peer.receive(eap)
        if not acknowledge and reply.code == Code.ACCESS_CHALLENGE and core.stats.get("reject"):
            return reply.code  # the server has given up (its alert came); walk away
        if reply.code != Code.ACCESS_CHALLENGE:
            assert isinstance(action, Finished)
            return reply.code
        state = reply.get(Attr.STATE)
    raise AssertionError("no end")


def test_a_certificate_revoked_after_start_is_refused_without_restart(
    served: tuple[RadiusCore, io.StringIO, Path],
) -> None:
    core, log, crl = served
    lb = lab("ec")
    assert _login(core, lb.revoked_client, 1000.0) == Code.ACCESS_ACCEPT
    _write_crl(crl, [lb.revoked_client.serial])  # the CA revokes the laptop
    source = CRL_SOURCES[-1]
    source.clock = lambda: source._next + 1.0  # a second later
    assert _login(core, lb.revoked_client, 1002.0) == Code.ACCESS_REJECT
    last = json.loads(log.getvalue().splitlines()[-1])
    assert (last["result"], last["reason"]) == ("reject", "certificate_revoked")
    # another client of the same CA still gets in
    assert _login(core, lb.client, 1003.0) == Code.ACCESS_ACCEPT


def test_sighup_reloads_at_once(served: tuple[RadiusCore, io.StringIO, Path]) -> None:
    core, log, crl = served
    lb = lab("ec")
    assert _login(core, lb.revoked_client, 1000.0) == Code.ACCESS_ACCEPT
    _write_crl(crl, [lb.revoked_client.serial])
    reload_crls()  # what eapkit serve's SIGHUP handler calls
    assert _login(core, lb.revoked_client, 1000.5) == Code.ACCESS_REJECT
    assert json.loads(log.getvalue().splitlines()[-1])["reason"] == "certificate_revoked"


def test_the_revoked_line_is_written_with_the_alert(
    served: tuple[RadiusCore, io.StringIO, Path],
) -> None:
    """strongSwan's client never acknowledges the alert: the decision line must not wait
    for the conversation to expire (it used to end as ``abandoned`` 100 s later)."""
    core, log, crl = served
    lb = lab("ec")
    _write_crl(crl, [lb.revoked_client.serial])
    reload_crls()
    assert _login(core, lb.revoked_client, 2000.0, acknowledge=False) == Code.ACCESS_CHALLENGE
    [line] = [json.loads(x) for x in log.getvalue().splitlines()]
    assert (line["result"], line["reason"]) == ("reject", "certificate_revoked")
    assert core.eap is not None
    assert core.eap.expire(2000.0 + 3600) == 1
    assert len(log.getvalue().splitlines()) == 1  # no abandoned line after it


def test_sighup_does_not_stop_eapkit_serve(tmp_path: Path) -> None:
    """SIGHUP asks for a CRL reload; before, its default action ended the server."""
    lb = lab("ec")
    for name, data in (
        ("cert", lb.server.chain_pem),
        ("key", lb.server.key_pem),
        ("ca", lb.ca.cert_pem),
    ):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "key").chmod(0o600)
    _write_crl(tmp_path / "ca.crl", [])
    conf = tmp_path / "eapkit.toml"
    conf.write_text(
        f'listen = ["127.0.0.1:{free_udp_port()}"]\nmethods = ["tls"]\n'
        '[tls]\ncert = "cert"\nkey = "key"\nca = "ca"\ncrl = ["ca.crl"]\n'
    )
    serve = Daemon(
        [sys.executable, "-m", "eapkit", "serve", "--config", str(conf)],
        tmp_path / "serve.out",
        ready="listening on",
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        cwd=tmp_path,
    )
    try:
        os.kill(serve.pid, signal.SIGHUP)
        time.sleep(0.5)
        assert serve.proc.poll() is None, serve.output()
    finally:
        serve.stop()
