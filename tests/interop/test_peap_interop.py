"""PEAPv0 interop rows, each against software no one here wrote (or against eapkit serve as
a real process):

1. ``eapol_test`` 2.10 (wpa_supplicant: ``eap=PEAP``, ``phase1="peapver=0"``,
   ``phase2="auth=MSCHAPV2"`` or ``auth=GTC``) against ``eapkit serve``, TLS 1.2 (eapol_test
   2.10 keeps TLS 1.3 off for PEAP), at the default fragment size and at 100 bytes.  A
   success needs eapol_test's own verdicts: ``MPPE keys OK`` and ``Session-Id matches
   EAP-Key-Name``.  wpa_supplicant answers eapkit's Crypto-Binding Request, so the MSK
   both sides use is the CSK of [MS-PEAP] §3.1.5.7: the key check covers that too.
2. ``eapkit probe`` (eapkit's peer) against hostapd 2.10's RADIUS/EAP server over TLS 1.2
   and TLS 1.3 (RFC 9427); hostapd offers crypto-binding and the peer answers it.
3. ``eapkit probe`` against ``eapkit serve``, both TLS versions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eapkit import pki
from eapkit.probe import ProbeOptions, ok, probe
from eapkit.radius.nas import ProbeResult
from tests.interop.tools import EapkitServe, HostapdRadius, eapol_test

pytestmark = pytest.mark.interop

HOSTAPD_SECRET = "hostapd-peap-secret"
OUTER = "anonymous@example.org"


# -- row 1: eapol_test against eapkit serve ---------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EapkitServe]:
    with EapkitServe(tmp_path_factory.mktemp("serve-peap")) as srv:
        yield srv


def _peap_block(
    srv: EapkitServe, inner: str, *, identity: str = "alice", password: str = "wonderland"
) -> str:
    return f"""
key_mgmt=IEEE8021X
eap=PEAP
identity="{identity}"
anonymous_identity="{OUTER}"
password="{password}"
ca_cert="{srv.pki / "ca.pem"}"
phase1="peapver=0"
phase2="auth={inner}"
"""


@pytest.mark.parametrize("fragment_size", [None, 100])
@pytest.mark.parametrize("inner", ["MSCHAPV2", "GTC"])
def test_eapol_test_against_serve(
    server: EapkitServe, tmp_path: Path, inner: str, fragment_size: int | None
) -> None:
    network = _peap_block(server, inner)
    if fragment_size:
        network += f"fragment_size={fragment_size}\n"
    result = eapol_test(network, server.port, tmp_path)
    assert result.success, result.output[-3000:]
    assert result.mppe_ok, result.output[-3000:]
    assert result.session_id_matches, result.output[-3000:]
    assert "TLSv1.2" in result.output
    assert "EAP-PEAP: Valid cryptobinding TLV received" in result.output
    decision = server.decisions[-1]
    assert decision["result"] == "accept", decision
    assert decision["user"] == "alice" and decision["outer_identity"] == OUTER
    assert decision["inner_method"] == f"eap-{inner.lower()}"


@pytest.mark.parametrize(
    ("inner", "identity", "password", "reasons"),
    [
        ("MSCHAPV2", "alice", "guess", {"bad_password", "authentication_failed"}),
        ("GTC", "alice", "guess", {"bad_password"}),
        ("MSCHAPV2", "mallory", "wonderland", {"unknown_user", "authentication_failed"}),
        ("GTC", "mallory", "wonderland", {"unknown_user"}),
    ],
)
def test_eapol_test_wrong_credentials_are_rejected(
    server: EapkitServe,
    tmp_path: Path,
    inner: str,
    identity: str,
    password: str,
    reasons: set[str],
) -> None:
    network = _peap_block(server, inner, identity=identity, password=password)
    result = eapol_test(network, server.port, tmp_path, no_mppe=True)
    assert not result.success
    assert "Access-Reject" in result.output
    # wpa_supplicant acknowledged the Result TLV failure inside the tunnel
    assert "EAP-TLV: TLV Result - Failure" in result.output
    decision = server.decisions[-1]
    assert decision["result"] == "reject" and decision["reason"] in reasons, decision
    assert decision["user"] == identity


# -- row 2: eapkit probe against hostapd -------------------------------------------------------


@pytest.fixture(scope="module")
def hostapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostapdRadius, Path]]:
    work = tmp_path_factory.mktemp("hostapd-peap")
    pki.write_pki(
        work,
        now=dt.datetime.now(dt.UTC),
        ca_name="hostapd PEAP test CA",
        server_names=["radius.hostapd.test"],
    )
    users = '* PEAP\n"alice" MSCHAPV2,GTC "wonderland" [2]\n"gtc-user" GTC "wonderland" [2]\n'
    with HostapdRadius(
        work,
        users,
        secret=HOSTAPD_SECRET,
        ca_cert=work / "ca.pem",
        server_cert=work / "server.pem",
        private_key=work / "server.key",
    ) as proc:
        yield proc, work


def _run(opts: ProbeOptions) -> tuple[bool, ProbeResult]:
    result = asyncio.run(probe(opts))
    return ok(result), result


def _opts(port: int, secret: str, method: str, identity: str, **kw: Any) -> ProbeOptions:
    return ProbeOptions(
        server=("127.0.0.1", port),
        secret=secret.encode(),
        method=method,
        identity=identity,
        anonymous_identity=OUTER,
        **kw,
    )


@pytest.mark.parametrize("fragment_size", [None, 200])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize(
    ("method", "identity"), [("peap-mschapv2", "alice"), ("peap-gtc", "gtc-user")]
)
def test_probe_against_hostapd(
    hostapd: tuple[HostapdRadius, Path],
    method: str,
    identity: str,
    version: str,
    fragment_size: int | None,
) -> None:
    server, work = hostapd
    good, result = _run(
        _opts(
            server.port,
            HOSTAPD_SECRET,
            method,
            identity,
            password="wonderland",
            ca=work / "ca.pem",
            tls=version,
            fragment_size=fragment_size,
            server_name="radius.hostapd.test",
        )
    )
    assert good, result
    assert result.keys_match is True
    peer = result.peer
    assert peer is not None and peer.keys is not None and peer.outcome is not None
    assert peer.outcome.attributes["tls_version"] == f"TLSv{version}"
    # hostapd sends a Crypto-Binding Request; answering it makes the MSK the CSK
    assert peer.outcome.attributes["crypto_binding"] == "yes"
    assert peer.keys.session_id[0] == 25 and len(peer.keys.session_id) == 65
    if version == "1.3":  # hostapd 2.10 derives its TLS 1.3 TK from a 64-byte export
        assert peer.outcome.attributes["tk_export_bytes"] == "64"
    assert server.daemon is not None
    assert "EAP-PEAP: Valid cryptobinding TLV received" in server.daemon.output()


def test_probe_against_hostapd_wrong_password(hostapd: tuple[HostapdRadius, Path]) -> None:
    server, work = hostapd
    for method in ("peap-mschapv2", "peap-gtc"):
        good, result = _run(
            _opts(
                server.port,
                HOSTAPD_SECRET,
                method,
                "alice",
                password="guess",
                ca=work / "ca.pem",
            )
        )
        assert not good
        assert result.peer is not None and not result.peer.success


# -- row 3: eapkit probe against eapkit serve ---------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("method", ["peap-mschapv2", "peap-gtc"])
def test_probe_against_serve(server: EapkitServe, method: str, version: str) -> None:
    good, result = _run(
        _opts(
            server.port,
            server.secret,
            method,
            "alice",
            password="wonderland",
            ca=server.pki / "ca.pem",
            tls=version,
        )
    )
    assert good, result
    assert result.keys_match is True
    assert result.peer is not None and result.peer.outcome is not None
    assert result.peer.outcome.attributes["tls_version"] == f"TLSv{version}"
    decision = server.decisions[-1]
    assert decision["result"] == "accept" and decision["user"] == "alice"
    assert decision["outer_identity"] == OUTER


def test_probe_against_serve_wrong_password(server: EapkitServe) -> None:
    good, result = _run(
        _opts(
            server.port,
            server.secret,
            "peap-mschapv2",
            "alice",
            password="guess",
            ca=server.pki / "ca.pem",
        )
    )
    assert not good
    assert result.peer is not None and not result.peer.success
    assert server.decisions[-1]["result"] == "reject"
