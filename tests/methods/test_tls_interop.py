"""eapkit's EAP-TLS peer against hostapd 2.10's RADIUS/EAP server, TLS 1.2 and 1.3:
the server accepts, and the MPPE keys and EAP-Key-Name it sends equal the MSK and
Session-Id the peer derived (RFC 5216 §2.3, RFC 9190 §2.3)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from eapkit.methods.tls import tls_peer
from eapkit.radius.nas import RadiusClient, authenticate
from eapkit.session import PeerSession, SessionConfig
from eapkit.tlsio import TlsVersion
from tests.certs import IDENTITY, SERVER_NAME, lab, peer_config
from tests.conftest import free_udp_port, require_tool

SECRET = b"interop-secret"


def _hostapd(tmp: Path, tool: str) -> tuple[subprocess.Popen[bytes], int]:
    lb = lab("rsa")
    (tmp / "ca.pem").write_bytes(lb.ca.cert_pem)
    (tmp / "server.pem").write_bytes(lb.server.chain_pem)
    (tmp / "server.key").write_bytes(lb.server.key_pem)
    (tmp / "users").write_text("* TLS\n")
    (tmp / "clients").write_text(f"127.0.0.1/32 {SECRET.decode()}\n")
    port = free_udp_port()
    conf = tmp / "hostapd.conf"
    conf.write_text(
        f"driver=none\ninterface=lo\neap_server=1\neap_user_file={tmp}/users\n"
        f"ca_cert={tmp}/ca.pem\nserver_cert={tmp}/server.pem\n"
        f"private_key={tmp}/server.key\nradius_server_clients={tmp}/clients\n"
        f"radius_server_auth_port={port}\nradius_server_acct_port=0\n"
        "radius_server_ipv6=0\ntls_flags=[ENABLE-TLSv1.3]\n"
    )
    log = (tmp / "hostapd.log").open("wb")
    proc = subprocess.Popen([tool, "-dd", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if b"AP-ENABLED" in (tmp / "hostapd.log").read_bytes() or proc.poll() is not None:
            break
        time.sleep(0.05)
    return proc, port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.interop
@pytest.mark.parametrize("version", [TlsVersion.TLS1_2, TlsVersion.TLS1_3], ids=lambda v: v.label)
def test_eapkit_peer_against_hostapd(tmp_path: Path, version: TlsVersion) -> None:
    tool = require_tool("hostapd")["hostapd"]
    lb = lab("rsa")
    proc, port = _hostapd(tmp_path, tool)
    try:
        assert proc.poll() is None, (tmp_path / "hostapd.log").read_text(errors="replace")
        factory = tls_peer(peer_config(lb, max_version=version, server_name=SERVER_NAME))

        async def go() -> tuple[bool, bool | None, str | None]:
            async with RadiusClient(("127.0.0.1", port), SECRET, timeout=2.0) as client:
                peer = PeerSession([factory], IDENTITY, config=SessionConfig(max_rounds=100))
                result = await authenticate(client, peer)
            assert result.peer is not None and result.peer.outcome is not None
            return (
                result.accepted,
                result.keys_match,
                result.peer.outcome.attributes.get("tls_version"),
            )

        accepted, keys_match, seen_version = asyncio.run(go())
        assert accepted
        assert keys_match is True
        assert seen_version == version.label
    finally:
        _stop(proc)
