"""EAP-TTLS interop rows, with software no one here wrote started by the tests:

1. ``eapol_test`` 2.10 (wpa_supplicant) as the peer against ``eapkit serve`` (TLS 1.2:
   eapol_test 2.10 keeps TLS 1.3 off for TTLS), for every inner method serve offers, at
   the default fragment size and at 100; success must come with eapol_test's own
   ``MPPE keys OK`` and ``Session-Id matches EAP-Key-Name``; a wrong password and an
   unknown inner user end in Access-Reject.
2. eapkit's peer (``eapkit probe``'s code) against hostapd 2.10's RADIUS/EAP server over
   TLS 1.2 and TLS 1.3 (RFC 9427): the MPPE keys hostapd sends equal the peer's MSK
   (also TTLS/CHAP, which is not a probe method).
3. eapkit's peer against ``eapkit serve``, both TLS versions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eapkit import pki
from eapkit.methods.ttls import InnerChap, ttls_peer
from eapkit.probe import ProbeOptions, ok, probe, tls_config
from eapkit.radius.nas import ProbeResult, RadiusClient, authenticate
from eapkit.session import PeerSession
from tests.interop.tools import EapkitServe, HostapdRadius, eapol_test

pytestmark = pytest.mark.interop

SERVER_NAME = "radius.eapkit.test"  # the demo PKI's server name (eapkit.serve)
INNER = {  # eapol_test phase2 for each inner method
    "pap": 'phase2="auth=PAP"',
    "mschapv2": 'phase2="auth=MSCHAPV2"',
    "eap-gtc": 'phase2="autheap=GTC"',
    "eap-mschapv2": 'phase2="autheap=MSCHAPV2"',
}
PROBE_METHODS = ["ttls-pap", "ttls-mschapv2", "ttls-gtc", "ttls-eap-mschapv2"]
PROBE_INNER = {
    "ttls-pap": "pap",
    "ttls-mschapv2": "mschapv2",
    "ttls-gtc": "eap-gtc",
    "ttls-eap-mschapv2": "eap-mschapv2",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EapkitServe]:
    with EapkitServe(tmp_path_factory.mktemp("serve-ttls")) as srv:
        yield srv


def _ttls_block(
    srv: EapkitServe,
    inner: str,
    *,
    identity: str = "alice",
    password: str = "wonderland",
    fragment_size: int | None = None,
) -> str:
    block = f"""
key_mgmt=IEEE8021X
eap=TTLS
identity="{identity}"
anonymous_identity="anonymous"
password="{password}"
ca_cert="{srv.pki / "ca.pem"}"
domain_match="{SERVER_NAME}"
{INNER[inner]}
"""
    if fragment_size:
        block += f"fragment_size={fragment_size}\n"
    return block


# -- row 1: eapol_test against eapkit serve -----------------------------------------------


@pytest.mark.parametrize("fragment_size", [None, 100])
@pytest.mark.parametrize("inner", sorted(INNER))
def test_eapol_test_against_serve(
    server: EapkitServe, tmp_path: Path, inner: str, fragment_size: int | None
) -> None:
    result = eapol_test(
        _ttls_block(server, inner, fragment_size=fragment_size), server.port, tmp_path
    )
    assert result.success, result.output[-3000:]
    assert result.mppe_ok, result.output[-3000:]
    assert result.session_id_matches, result.output[-3000:]
    assert "TLSv1.2" in result.output
    msk = result.hexdump("EAP-TTLS: Derived key")
    assert msk is not None and len(msk) == 64
    decision = server.decisions[-1]
    assert decision["result"] == "accept"
    assert decision["user"] == "alice"  # the inner identity, not "anonymous"
    assert decision["outer_identity"] == "anonymous"
    assert decision["inner_method"] == inner


@pytest.mark.parametrize("inner", sorted(INNER))
@pytest.mark.parametrize(
    ("identity", "password", "reason"),
    [("alice", "guess", "bad_password"), ("mallory", "wonderland", "unknown_user")],
)
def test_eapol_test_rejections(
    server: EapkitServe, tmp_path: Path, inner: str, identity: str, password: str, reason: str
) -> None:
    network = _ttls_block(server, inner, identity=identity, password=password)
    result = eapol_test(network, server.port, tmp_path, no_mppe=True)
    assert not result.success
    assert "Access-Reject" in result.output, result.output[-3000:]
    decision = server.decisions[-1]
    assert decision["result"] == "reject"
    # a missing inner method ends a Nak chain for inner EAP, never a success
    assert decision["reason"] in (reason, "authentication_failed"), decision


# -- rows 2 and 3: eapkit's peer against hostapd and against eapkit serve ------------------


def _probe(opts: ProbeOptions) -> tuple[bool, ProbeResult]:
    result = asyncio.run(probe(opts))
    return ok(result), result


def _opts(port: int, secret: str, method: str, **kw: Any) -> ProbeOptions:
    base: dict[str, Any] = {
        "identity": "alice",
        "anonymous_identity": "anonymous@example.org",
        "password": "wonderland",
    }
    base.update(kw)
    return ProbeOptions(server=("127.0.0.1", port), secret=secret.encode(), method=method, **base)


def _check_keys(result: ProbeResult, version: str) -> None:
    assert result.keys_match is True, result
    assert result.peer is not None and result.peer.keys is not None
    session_id = result.peer.keys.session_id
    assert session_id[0] == 0x15  # RFC 9427 / RFC 5281 Type-Code
    assert len(session_id) == 65
    assert result.eap_key_name == session_id
    assert result.peer.outcome is not None
    assert result.peer.outcome.attributes["tls_version"] == f"TLSv{version}"


HOSTAPD_SECRET = "hostapd-secret"


@pytest.fixture(scope="module")
def hostapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostapdRadius, Path]]:
    work = tmp_path_factory.mktemp("hostapd-ttls")
    pki.write_pki(
        work,
        now=dt.datetime.now(dt.UTC),
        ca_name="hostapd TTLS test CA",
        server_names=["radius.hostapd.test"],
    )
    users = '* TTLS\n"alice" TTLS-PAP,TTLS-CHAP,TTLS-MSCHAPV2,MSCHAPV2,GTC "wonderland" [2]\n'
    with HostapdRadius(
        work,
        users,
        secret=HOSTAPD_SECRET,
        ca_cert=work / "ca.pem",
        server_cert=work / "server.pem",
        private_key=work / "server.key",
    ) as proc:
        yield proc, work


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("method", PROBE_METHODS)
def test_peer_against_hostapd(
    hostapd: tuple[HostapdRadius, Path], method: str, version: str
) -> None:
    proc, work = hostapd
    opts = _opts(
        proc.port,
        HOSTAPD_SECRET,
        method,
        ca=work / "ca.pem",
        server_name="radius.hostapd.test",
        tls=version,
    )
    good, result = _probe(opts)
    assert good, (result, proc.daemon.output()[-3000:] if proc.daemon else "")
    _check_keys(result, version)
    assert result.peer is not None and result.peer.outcome is not None
    assert result.peer.outcome.attributes["inner_method"] == PROBE_INNER[method]


@pytest.mark.parametrize("password", ["wonderland", "guess"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_chap_peer_against_hostapd(
    hostapd: tuple[HostapdRadius, Path], version: str, password: str
) -> None:
    """TTLS/CHAP (RFC 5281 §11.2.2) is not a probe method; run the peer directly."""
    proc, work = hostapd
    opts = _opts(proc.port, HOSTAPD_SECRET, "ttls-pap", ca=work / "ca.pem", tls=version)
    factory = ttls_peer(tls_config(opts), InnerChap(password), identity="alice")

    async def go() -> ProbeResult:
        peer = PeerSession([factory], "anonymous@example.org")
        async with RadiusClient(("127.0.0.1", proc.port), HOSTAPD_SECRET.encode()) as client:
            return await authenticate(client, peer)

    result = asyncio.run(go())
    if password == "guess":
        assert not result.accepted
        return
    assert ok(result), result
    _check_keys(result, version)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("method", ["ttls-pap", "ttls-mschapv2", "ttls-gtc"])
def test_peer_against_hostapd_wrong_password(
    hostapd: tuple[HostapdRadius, Path], method: str, version: str
) -> None:
    proc, work = hostapd
    opts = _opts(
        proc.port, HOSTAPD_SECRET, method, ca=work / "ca.pem", tls=version, password="guess"
    )
    good, result = _probe(opts)
    assert not good
    assert result.peer is not None and not result.peer.success


@pytest.mark.parametrize("fragment_size", [None, 200])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("method", PROBE_METHODS)
def test_peer_against_serve(
    server: EapkitServe, method: str, version: str, fragment_size: int | None
) -> None:
    opts = _opts(
        server.port,
        server.secret,
        method,
        ca=server.pki / "ca.pem",
        server_name=SERVER_NAME,
        tls=version,
        fragment_size=fragment_size,
    )
    good, result = _probe(opts)
    assert good, (result, server.daemon.output()[-3000:] if server.daemon else "")
    _check_keys(result, version)
    decision = server.decisions[-1]
    assert decision["result"] == "accept" and decision["user"] == "alice"
    assert decision["inner_method"] == PROBE_INNER[method]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_peer_against_serve_wrong_password(server: EapkitServe, version: str) -> None:
    opts = _opts(
        server.port,
        server.secret,
        "ttls-mschapv2",
        ca=server.pki / "ca.pem",
        tls=version,
        password="guess",
    )
    good, result = _probe(opts)
    assert not good
    assert result.peer is not None and not result.peer.success
    assert server.decisions[-1]["reason"] in ("bad_password", "authentication_failed")
