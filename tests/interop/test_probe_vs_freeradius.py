"""Interop matrix, row 2 (FreeRADIUS half): ``eapkit probe``'s peer methods against
FreeRADIUS 3.2 (Debian ``freeradius``) on a private copy of its config directory, a
server no one here wrote.

The MPPE keys FreeRADIUS sends must equal the MSK eapkit's peer derived
(``ProbeResult.keys_match``).  FreeRADIUS keeps the Session-Id it derived in the internal
``EAP-Session-Id`` attribute and does not send it; the site copies it into EAP-Key-Name
(RFC 4072 §6.2) so that the Session-Id is compared too.

TTLS and PEAP peers come from ``eapkit.methods.ttls`` / ``eapkit.methods.peap`` through
``eapkit.probe``'s builder hooks.  Until those modules exist their tests skip; once a
module exists, "not available" is a failure like any other.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import eapkit.methods
from eapkit import pki
from eapkit.errors import ConfigError
from eapkit.packet import EapType, MethodId
from eapkit.probe import ProbeOptions, build_peer_methods, ok, probe
from eapkit.radius.nas import ProbeResult
from tests.interop.tools import FreeRadius

pytestmark = pytest.mark.interop

SECRET = "freeradius-secret"
SERVER_NAME = "radius.freeradius.test"
PASSWORD = "wonderland"
USERS = (
    f'alice Cleartext-Password := "{PASSWORD}"\n'
    f'gtc-user Cleartext-Password := "{PASSWORD}"\n'
    # Refused by policy even with the right password: a Reject after the Identity round.
    f'locked Auth-Type := Reject, Cleartext-Password := "{PASSWORD}"\n'
)
# FreeRADIUS derives the Session-Id but sends it only if told to.
KEY_NAME = (
    "if (&reply:EAP-Session-Id) {",
    "    update reply {",
    "        &EAP-Key-Name := &reply:EAP-Session-Id",
    "    }",
    "}",
)


@dataclass
class Pki:
    work: Path

    @property
    def ca(self) -> Path:
        return self.work / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.work / "alice.pem"

    @property
    def key(self) -> Path:
        return self.work / "alice.key"

    @property
    def rogue_cert(self) -> Path:
        return self.work / "rogue.pem"

    @property
    def rogue_key(self) -> Path:
        return self.work / "rogue.key"

    @property
    def other_ca(self) -> Path:
        """A CA that did not sign FreeRADIUS's certificate."""
        return self.work / "other-ca.pem"


def _make_pki(work: Path) -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("freeradius test CA", now=now)
    server = pki.make_server(ca, [SERVER_NAME], now=now)
    client = pki.make_client(ca, "alice", now=now)
    other_ca = pki.make_ca("untrusted CA", now=now)
    rogue = pki.make_client(other_ca, "alice", now=now)
    for name, data in (
        ("ca.pem", ca.cert_pem),
        ("server.pem", server.chain_pem),
        ("server.key", server.key_pem),
        ("alice.pem", client.chain_pem),
        ("alice.key", client.key_pem),
        ("rogue.pem", rogue.chain_pem),
        ("rogue.key", rogue.key_pem),
        ("other-ca.pem", other_ca.cert_pem),
    ):
        (work / name).write_bytes(data)
    return Pki(work)


def _server(work: Path, certs: Pki, **kw: Any) -> FreeRadius:
    return FreeRadius(
        work,
        USERS,
        secret=SECRET,
        ca_cert=certs.ca,
        server_cert=certs.work / "server.pem",
        private_key=certs.work / "server.key",
        tls_max_version="1.3",
        post_auth=KEY_NAME,
        **kw,
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _make_pki(tmp_path_factory.mktemp("freeradius-pki"))


@pytest.fixture(scope="module")
def freeradius(certs: Pki) -> Iterator[FreeRadius]:
    with _server(certs.work / "default", certs) as server:
        yield server


@pytest.fixture(scope="module")
def freeradius_small(certs: Pki) -> Iterator[FreeRadius]:
    """The same server sending TLS records in 200-byte fragments."""
    with _server(certs.work / "small", certs, fragment_size=200) as server:
        yield server


@pytest.fixture(scope="module")
def freeradius_cache(certs: Pki) -> Iterator[FreeRadius]:
    """The same server with its TLS session cache on: it sends NewSessionTickets."""
    with _server(certs.work / "cache", certs, tls_cache=True) as server:
        yield server


@pytest.fixture(scope="module")
def freeradius_send_error(certs: Pki) -> Iterator[FreeRadius]:
    """The same server sending an MS-CHAPv2 Failure request (RFC 2759 §6, "E=691 R=1 ...")
    before the EAP-Failure, as Windows servers do."""
    with _server(certs.work / "send-error", certs, mschapv2_send_error=True) as server:
        yield server


def _run(server: FreeRadius, method: str, identity: str, **kw: Any) -> ProbeResult:
    opts = ProbeOptions(
        server=("127.0.0.1", server.port),
        secret=SECRET.encode(),
        method=method,
        identity=identity,
        **kw,
    )
    return asyncio.run(probe(opts))


def _explain(server: FreeRadius, result: ProbeResult) -> str:
    return f"{result}\n--- FreeRADIUS -X (tail) ---\n{server.output()[-6000:]}"


def _assert_accepted_with_keys(server: FreeRadius, result: ProbeResult) -> None:
    assert ok(result), _explain(server, result)
    assert result.keys_match is True, _explain(server, result)
    # keys_match compares the Session-Id only when EAP-Key-Name came back: require it.
    assert result.peer is not None and result.peer.keys is not None
    if result.peer.keys.session_id:
        assert result.eap_key_name == result.peer.keys.session_id, _explain(server, result)


def _assert_rejected(server: FreeRadius, result: ProbeResult) -> None:
    assert not ok(result), _explain(server, result)
    assert result.reply is not None and result.reply.code == 3, _explain(server, result)  # Reject


# -- bare methods -------------------------------------------------------------------------


def test_gtc(freeradius: FreeRadius) -> None:
    result = _run(freeradius, "gtc", "gtc-user", password=PASSWORD)
    assert ok(result), _explain(freeradius, result)
    assert result.peer is not None and result.peer.method == MethodId(0, EapType.GTC)
    assert result.keys_match is None  # EAP-GTC derives no MSK
    assert result.reply_attributes.get("USER_NAME") == "gtc-user"


def test_gtc_wrong_password(freeradius: FreeRadius) -> None:
    _assert_rejected(freeradius, _run(freeradius, "gtc", "gtc-user", password="guess"))


def test_mschapv2(freeradius: FreeRadius) -> None:
    result = _run(freeradius, "mschapv2", "alice", password=PASSWORD)
    _assert_accepted_with_keys(freeradius, result)
    assert result.mppe is not None and len(result.mppe.recv) == 16  # [MS-CHAP] §3.1.5.1


def test_mschapv2_wrong_password(freeradius: FreeRadius) -> None:
    result = _run(freeradius, "mschapv2", "alice", password="guess")
    _assert_rejected(freeradius, result)
    assert result.peer is None or not result.peer.success


@pytest.mark.parametrize("method", ["mschapv2", "peap-mschapv2", "ttls-eap-mschapv2"])
def test_mschapv2_failure_request(
    freeradius_send_error: FreeRadius, certs: Pki, method: str
) -> None:
    server = freeradius_send_error
    sent = "eap_mschapv2: ERROR: MSCHAP Failure"  # logged as the Failure request goes out
    before = server.output().count(sent)
    if method == "mschapv2":
        result = _run(server, "mschapv2", "alice", password="guess")
    else:
        opts = _tunnel_opts(server, certs, method, password="guess", tls="1.3")
        _require_peer(opts)
        result = asyncio.run(probe(opts))
    _assert_rejected(server, result)
    assert server.output().count(sent) == before + 1, _explain(server, result)
    assert result.peer is not None and not result.peer.success, _explain(server, result)
    good = _run(server, "mschapv2", "alice", password=PASSWORD)
    _assert_accepted_with_keys(server, good)


def test_mschapv2_unknown_user(freeradius: FreeRadius) -> None:
    _assert_rejected(freeradius, _run(freeradius, "mschapv2", "mallory", password=PASSWORD))


def test_server_policy_reject(freeradius: FreeRadius) -> None:
    _assert_rejected(freeradius, _run(freeradius, "gtc", "locked", password=PASSWORD))


# -- EAP-TLS ------------------------------------------------------------------------------


@pytest.mark.parametrize("fragment_size", [None, 100])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls(freeradius: FreeRadius, certs: Pki, version: str, fragment_size: int | None) -> None:
    result = _run(
        freeradius,
        "tls",
        "alice",
        cert=certs.cert,
        key=certs.key,
        ca=certs.ca,
        tls=version,
        fragment_size=fragment_size,
        server_name=SERVER_NAME,
    )
    _assert_accepted_with_keys(freeradius, result)
    assert result.peer is not None and result.peer.keys is not None
    session_id = result.peer.keys.session_id
    assert session_id[0] == 13 and len(session_id) == 65  # RFC 5216 §2.3 / RFC 9190 §2.3


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_small_server_fragments(freeradius_small: FreeRadius, certs: Pki, version: str) -> None:
    result = _run(
        freeradius_small,
        "tls",
        "alice",
        cert=certs.cert,
        key=certs.key,
        ca=certs.ca,
        tls=version,
        fragment_size=200,
        server_name=SERVER_NAME,
    )
    _assert_accepted_with_keys(freeradius_small, result)
    assert result.rounds > 8  # the server's flight really came in many pieces


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_untrusted_client_certificate(freeradius: FreeRadius, certs: Pki, version: str) -> None:
    result = _run(
        freeradius,
        "tls",
        "alice",
        cert=certs.rogue_cert,
        key=certs.rogue_key,
        ca=certs.ca,
        tls=version,
        server_name=SERVER_NAME,
    )
    _assert_rejected(freeradius, result)


def test_tls_wrong_server_name(freeradius: FreeRadius, certs: Pki) -> None:
    result = _run(
        freeradius,
        "tls",
        "alice",
        cert=certs.cert,
        key=certs.key,
        ca=certs.ca,
        server_name="other.example.org",
    )
    assert not ok(result)
    assert result.peer is not None and not result.peer.success


# -- TTLS and PEAP (peers written in eapkit.methods.ttls / .peap) -------------------------

TUNNELLED = [
    "ttls-pap",
    "ttls-mschapv2",
    "ttls-gtc",
    "ttls-eap-mschapv2",
    "peap-mschapv2",
    "peap-gtc",
]


def _tunnel_opts(server: FreeRadius, certs: Pki, method: str, **kw: Any) -> ProbeOptions:
    return ProbeOptions(
        server=("127.0.0.1", server.port),
        secret=SECRET.encode(),
        method=method,
        identity="alice",
        anonymous_identity="anonymous",
        ca=certs.ca,
        server_name=SERVER_NAME,
        **kw,
    )


def _require_peer(opts: ProbeOptions) -> None:
    """Skip while the method's module is not written yet; never once it exists."""
    module = opts.method.split("-", 1)[0]
    path = Path(eapkit.methods.__file__).parent / f"{module}.py"
    try:
        build_peer_methods(opts)
    except ConfigError as exc:
        if "not available" in str(exc) and not path.exists():
            pytest.skip(f"{exc} (eapkit/methods/{module}.py does not exist yet)")
        raise


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("method", TUNNELLED)
def test_tunnelled(freeradius: FreeRadius, certs: Pki, method: str, version: str) -> None:
    opts = _tunnel_opts(freeradius, certs, method, password=PASSWORD, tls=version)
    _require_peer(opts)
    result = asyncio.run(probe(opts))
    _assert_accepted_with_keys(freeradius, result)
    assert result.peer is not None and result.peer.keys is not None
    assert len(result.peer.keys.msk) == 64
    assert result.mppe is not None and len(result.mppe.recv) == 32


@pytest.mark.parametrize("method", TUNNELLED)
def test_tunnelled_small_fragments(freeradius_small: FreeRadius, certs: Pki, method: str) -> None:
    opts = _tunnel_opts(
        freeradius_small, certs, method, password=PASSWORD, tls="1.3", fragment_size=100
    )
    _require_peer(opts)
    _assert_accepted_with_keys(freeradius_small, asyncio.run(probe(opts)))


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("method", TUNNELLED)
def test_tunnelled_wrong_password(
    freeradius: FreeRadius, certs: Pki, method: str, version: str
) -> None:
    opts = _tunnel_opts(freeradius, certs, method, password="guess", tls=version)
    _require_peer(opts)
    _assert_rejected(freeradius, asyncio.run(probe(opts)))


@pytest.mark.parametrize("method", ["ttls-pap", "peap-mschapv2"])
def test_tunnelled_unknown_user(freeradius: FreeRadius, certs: Pki, method: str) -> None:
    opts = _tunnel_opts(freeradius, certs, method, password=PASSWORD, tls="1.3")
    opts.identity = "mallory"
    _require_peer(opts)
    _assert_rejected(freeradius, asyncio.run(probe(opts)))


@pytest.mark.parametrize("method", ["ttls-pap", "peap-mschapv2"])
def test_tunnelled_untrusted_server(freeradius: FreeRadius, certs: Pki, method: str) -> None:
    """The peer must refuse a server certificate its CA did not sign."""
    opts = _tunnel_opts(freeradius, certs, method, password=PASSWORD, tls="1.3")
    opts.ca = certs.other_ca
    _require_peer(opts)
    result = asyncio.run(probe(opts))
    assert not ok(result), _explain(freeradius, result)
    assert result.peer is not None and not result.peer.success


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("method", ["tls", "ttls-pap", "peap-mschapv2"])
def test_server_with_session_cache(
    freeradius_cache: FreeRadius, certs: Pki, method: str, version: str
) -> None:
    """A server that issues tickets (RFC 9190 §2.1.2): the peer does not resume, but must
    take the NewSessionTicket messages in its stride."""
    server = freeradius_cache
    if method == "tls":
        opts = ProbeOptions(
            server=("127.0.0.1", server.port),
            secret=SECRET.encode(),
            method="tls",
            identity="alice",
            cert=certs.cert,
            key=certs.key,
            ca=certs.ca,
            tls=version,
            server_name=SERVER_NAME,
        )
    else:
        opts = _tunnel_opts(server, certs, method, password=PASSWORD, tls=version)
        _require_peer(opts)
    _assert_accepted_with_keys(server, asyncio.run(probe(opts)))
    if version == "1.3":
        assert "NewSessionTicket" in server.output()


# -- the command line, as a user runs it -----------------------------------------------------


def _cli(server: FreeRadius, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "eapkit", "probe", "--server", f"127.0.0.1:{server.port}"]
    return subprocess.run(
        [*argv, "--secret", SECRET, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_probe_exit_codes(freeradius: FreeRadius, certs: Pki) -> None:
    """``eapkit probe`` exits 0 only on an Accept with matching keys (issue 6)."""
    tls = ["--method", "tls", "--identity", "alice", "--cert", str(certs.cert)]
    tls += ["--key", str(certs.key), "--ca", str(certs.ca), "--server-name", SERVER_NAME]
    good = _cli(freeradius, *tls, "--tls", "1.3", "--fragment-size", "300")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "MPPE keys OK" in good.stdout and "ACCEPT" in good.stdout
    bad = _cli(freeradius, "--method", "mschapv2", "--identity", "alice", "--password", "guess")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Access-Reject" in bad.stdout
