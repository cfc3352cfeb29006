"""Interop matrix, row 3 (the methods without a tunnel; TTLS and PEAP have their own
files): ``eapkit probe`` as a real command against ``eapkit serve`` as a real process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.interop.tools import EapkitServe

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EapkitServe]:
    with EapkitServe(tmp_path_factory.mktemp("serve"), users=(("alice", "wonderland"),)) as srv:
        yield srv


def probe(srv: EapkitServe, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eapkit", "probe", "--server", f"127.0.0.1:{srv.port}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("fragment", [None, "100"])
@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_tls(server: EapkitServe, tls: str, fragment: str | None) -> None:
    pki = server.pki
    args = [
        "--method",
        "tls",
        "--identity",
        "alice",
        "--tls",
        tls,
        "--cert",
        str(pki / "alice.pem"),
        "--key",
        str(pki / "alice.key"),
        "--ca",
        str(pki / "ca.pem"),
        "--server-name",
        "radius.eapkit.test",
    ]
    if fragment:
        args += ["--fragment-size", fragment]
    out = probe(server, *args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "MPPE keys OK" in out.stdout and "EAP-Key-Name: 0d" in out.stdout
    assert server.decisions[-1]["method"] == "TLS"


@pytest.mark.parametrize("method", ["mschapv2", "gtc"])
def test_password_methods(server: EapkitServe, method: str) -> None:
    out = probe(server, "--method", method, "--identity", "alice", "--password", "wonderland")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("ACCEPT")
    bad = probe(server, "--method", method, "--identity", "alice", "--password", "guess")
    assert bad.returncode == 1 and bad.stdout.rstrip().endswith("REJECT")
    assert server.decisions[-1]["reason"] == "bad_password"
