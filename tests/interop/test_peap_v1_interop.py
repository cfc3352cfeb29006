"""PEAPv1 with eapkit as the peer (``eapkit probe --peap-version 1``) against hostapd
2.10 (which offers version 1) and against ``eapkit serve``.

hostapd 2.10 keys PEAPv1 with "client EAP encryption" whatever the peer's label, so the
peer with ``--peap-label 1`` succeeds but its MSK differs from the MPPE keys hostapd
sends (the same as ``eapol_test`` with ``peaplabel=1``: the ``peap1-label1`` row).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eapkit import pki
from eapkit.probe import ProbeOptions, ok, probe
from eapkit.radius.nas import ProbeResult
from tests.interop.tools import EapkitServe, HostapdRadius

pytestmark = pytest.mark.interop

SECRET = "hostapd-peap1-secret"
OUTER = "anonymous@example.org"
NAME = "radius.hostapd.test"


@pytest.fixture(scope="module")
def hostapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostapdRadius, Path]]:
    work = tmp_path_factory.mktemp("hostapd-peap1")
    pki.write_pki(work, now=dt.datetime.now(dt.UTC), ca_name="PEAPv1 CA", server_names=[NAME])
    users = '* PEAP\n"alice" MSCHAPV2,GTC "wonderland" [2]\n'
    with HostapdRadius(
        work,
        users,
        secret=SECRET,
        ca_cert=work / "ca.pem",
        server_cert=work / "server.pem",
        private_key=work / "server.key",
    ) as proc:
        yield proc, work


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EapkitServe]:
    with EapkitServe(tmp_path_factory.mktemp("serve-peap1")) as srv:
        yield srv


def _probe(port: int, secret: str, ca: Path, **kw: Any) -> tuple[bool, ProbeResult]:
    opts = ProbeOptions(
        server=("127.0.0.1", port),
        secret=secret.encode(),
        method=kw.pop("method", "peap-mschapv2"),
        identity="alice",
        anonymous_identity=OUTER,
        password=kw.pop("password", "wonderland"),
        ca=ca,
        tls="1.2",
        peap_version=1,
        **kw,
    )
    result = asyncio.run(probe(opts))
    return ok(result), result


@pytest.mark.parametrize("method", ["peap-mschapv2", "peap-gtc"])
def test_v1_probe_against_hostapd(hostapd: tuple[HostapdRadius, Path], method: str) -> None:
    server, work = hostapd
    good, result = _probe(server.port, SECRET, work / "ca.pem", method=method)
    assert good, result
    assert result.keys_match is True
    peer = result.peer
    assert peer is not None and peer.outcome is not None
    assert peer.outcome.attributes["peap_version"] == "1"
    assert peer.outcome.attributes["crypto_binding"] == "no"


def test_v1_new_label_against_hostapd_keys_differ(hostapd: tuple[HostapdRadius, Path]) -> None:
    server, work = hostapd
    good, result = _probe(server.port, SECRET, work / "ca.pem", peap_label=1)
    assert result.peer is not None and result.peer.success
    assert result.keys_match is False and not good


def test_v1_wrong_password_against_hostapd(hostapd: tuple[HostapdRadius, Path]) -> None:
    server, work = hostapd
    good, result = _probe(server.port, SECRET, work / "ca.pem", password="guess")
    assert not good
    assert result.peer is not None and not result.peer.success


def test_v1_probe_command_line(hostapd: tuple[HostapdRadius, Path]) -> None:
    server, work = hostapd
    argv = [sys.executable, "-m", "eapkit", "probe", "--server", f"127.0.0.1:{server.port}"]
    argv += ["--secret", SECRET, "--method", "peap-mschapv2", "--identity", "alice"]
    argv += ["--anonymous-identity", OUTER, "--password", "wonderland"]
    argv += ["--ca", str(work / "ca.pem"), "--tls", "1.2", "--peap-version", "1"]
    argv += ["--tls-profile", "legacy"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("method", ["peap-mschapv2", "peap-gtc"])
def test_v1_probe_against_serve(serve: EapkitServe, method: str) -> None:
    good, result = _probe(serve.port, serve.secret, serve.pki / "ca.pem", method=method)
    assert good, result
    assert result.keys_match is True
    decision = serve.decisions[-1]
    assert decision["result"] == "accept" and decision["user"] == "alice"
    assert decision["tls_version"] == "TLSv1.2" and decision["tls_cipher"]
