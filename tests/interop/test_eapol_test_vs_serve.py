"""Interop matrix, row 1: wpa_supplicant's ``eapol_test`` (Debian ``eapoltest`` 2.10) as the
peer against ``eapkit serve`` started as a real process.

Each success must come with eapol_test's own verdicts on the keys: ``MPPE keys OK`` (the
MS-MPPE keys eapkit sent equal the MSK eapol_test derived) and, where the method has a
Session-Id, ``Session-Id matches EAP-Key-Name``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit import pki
from tests.interop.tools import EapkitServe, eapol_test

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EapkitServe]:
    with EapkitServe(tmp_path_factory.mktemp("serve")) as srv:
        yield srv


def _tls_block(
    srv: EapkitServe, tls13: bool, cert: Path | None = None, key: Path | None = None
) -> str:
    return f"""
key_mgmt=IEEE8021X
eap=TLS
identity="alice"
ca_cert="{srv.pki / "ca.pem"}"
client_cert="{cert or srv.pki / "alice.pem"}"
private_key="{key or srv.pki / "alice.key"}"
phase1="tls_disable_tlsv1_3={0 if tls13 else 1}"
"""


def _password_block(method: str, password: str = "wonderland", identity: str = "alice") -> str:
    return f'key_mgmt=IEEE8021X\neap={method}\nidentity="{identity}"\npassword="{password}"\n'


CASES = {
    "tls12": lambda srv: _tls_block(srv, tls13=False),
    "tls13": lambda srv: _tls_block(srv, tls13=True),
    "mschapv2": lambda srv: _password_block("MSCHAPV2"),
    "gtc": lambda srv: _password_block("GTC"),
}


@pytest.mark.parametrize("fragment_size", [None, 100])
@pytest.mark.parametrize("case", sorted(CASES))
def test_success_with_keys(
    server: EapkitServe, tmp_path: Path, case: str, fragment_size: int | None
) -> None:
    network = CASES[case](server)
    if fragment_size:
        network += f"fragment_size={fragment_size}\n"
    result = eapol_test(network, server.port, tmp_path, no_mppe=case == "gtc")
    assert result.success, result.output[-3000:]
    if case != "gtc":  # EAP-GTC derives no MSK (RFC 3748 §5.6): run with -n
        assert result.mppe_ok, result.output[-3000:]
    if case.startswith("tls"):
        assert result.session_id_matches, result.output[-3000:]
        version = "TLSv1.3" if case == "tls13" else "TLSv1.2"
        assert version in result.output
    decision = server.decisions[-1]
    assert decision["result"] == "accept" and decision["user"] == "alice"


@pytest.mark.parametrize(
    ("network", "reason"),
    [
        (_password_block("MSCHAPV2", password="guess"), "bad_password"),
        (_password_block("GTC", password="guess"), "bad_password"),
        (_password_block("MSCHAPV2", identity="mallory"), "unknown_user"),
    ],
)
def test_wrong_credentials_are_rejected(
    server: EapkitServe, tmp_path: Path, network: str, reason: str
) -> None:
    result = eapol_test(network, server.port, tmp_path, no_mppe=True)
    assert not result.success
    assert "Access-Reject" in result.output
    assert server.decisions[-1]["reason"] in (reason, "authentication_failed")


def test_untrusted_client_certificate_is_rejected(server: EapkitServe, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    rogue_ca = pki.make_ca("rogue CA", now=now)
    rogue = pki.make_client(rogue_ca, "alice", now=now)
    (tmp_path / "rogue.pem").write_bytes(rogue.chain_pem)
    (tmp_path / "rogue.key").write_bytes(rogue.key_pem)
    network = _tls_block(server, True, tmp_path / "rogue.pem", tmp_path / "rogue.key")
    result = eapol_test(network, server.port, tmp_path, no_mppe=True)
    assert not result.success
    assert "Access-Reject" in result.output
    decision = server.decisions[-1]
    assert decision["result"] == "reject" and decision["method"] == "TLS"
