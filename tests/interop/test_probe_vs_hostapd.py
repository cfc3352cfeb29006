"""Interop matrix, row 2 (hostapd half): ``eapkit probe``'s peer methods against hostapd
2.10's integrated RADIUS/EAP server (``driver=none``, ``eap_server=1``,
``tls_flags=[ENABLE-TLSv1.3]``), a server no one here wrote.  The keys hostapd sends must
equal the MSK eapkit's peer derived."""

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
from tests.interop.tools import HostapdRadius

pytestmark = pytest.mark.interop

SECRET = "hostapd-secret"


@pytest.fixture(scope="module")
def hostapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostapdRadius, Path]]:
    work = tmp_path_factory.mktemp("hostapd")
    pki.write_pki(
        work,
        now=dt.datetime.now(dt.UTC),
        ca_name="hostapd test CA",
        server_names=["radius.hostapd.test"],
        client_name="alice",
    )
    users = (
        '"alice" MSCHAPV2 "wonderland"\n'
        '"gtc-user" GTC "wonderland"\n'
        '"tls-user" TLS\n'
        '"alice-tls" TLS\n'
    )
    with HostapdRadius(
        work,
        users,
        secret=SECRET,
        ca_cert=work / "ca.pem",
        server_cert=work / "server.pem",
        private_key=work / "server.key",
    ) as server_proc:
        yield server_proc, work


def _run(opts: ProbeOptions) -> tuple[bool, ProbeResult]:
    result = asyncio.run(probe(opts))
    return ok(result), result


def _opts(port: int, method: str, identity: str, **kw: Any) -> ProbeOptions:
    return ProbeOptions(
        server=("127.0.0.1", port), secret=SECRET.encode(), method=method, identity=identity, **kw
    )


def test_mschapv2(hostapd: tuple[HostapdRadius, Path]) -> None:
    server, _ = hostapd
    good, result = _run(_opts(server.port, "mschapv2", "alice", password="wonderland"))
    assert good, result
    assert result.keys_match is True
    bad, _ = _run(_opts(server.port, "mschapv2", "alice", password="guess"))
    assert not bad


def test_gtc(hostapd: tuple[HostapdRadius, Path]) -> None:
    server, _ = hostapd
    good, result = _run(_opts(server.port, "gtc", "gtc-user", password="wonderland"))
    assert good, result
    bad, _ = _run(_opts(server.port, "gtc", "gtc-user", password="guess"))
    assert not bad


@pytest.mark.parametrize("fragment_size", [None, 200])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls(hostapd: tuple[HostapdRadius, Path], version: str, fragment_size: int | None) -> None:
    server, work = hostapd
    good, result = _run(
        _opts(
            server.port,
            "tls",
            "tls-user",
            cert=work / "alice.pem",
            key=work / "alice.key",
            ca=work / "ca.pem",
            tls=version,
            fragment_size=fragment_size,
            server_name="radius.hostapd.test",
        )
    )
    assert good, result
    assert result.keys_match is True
    assert result.peer is not None and result.peer.keys is not None
    session_id = result.peer.keys.session_id
    assert session_id[0] == 13 and len(session_id) == 65  # RFC 5216 / RFC 9190 Session-Id


def test_tls_wrong_server_name_fails(hostapd: tuple[HostapdRadius, Path]) -> None:
    server, work = hostapd
    good, result = _run(
        _opts(
            server.port,
            "tls",
            "tls-user",
            cert=work / "alice.pem",
            key=work / "alice.key",
            ca=work / "ca.pem",
            server_name="other.example.org",
        )
    )
    assert not good
    assert result.peer is not None and not result.peer.success
