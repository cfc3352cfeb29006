"""RADIUS/DTLS (RFC 7360) between real software and ``eapkit serve``: ``eapol_test``
and ``radclient`` -> radsecproxy 1.9 (UDP in, ``type DTLS`` out) -> ``eapkit serve``
(``[radsec] dtls_listen``).  EAP methods with ``MPPE keys OK`` (eapkit hid the keys
with ``radius/dtls``, radsecproxy re-hid them with the UDP secret), plain PAP, and
each decision line saying it came over DTLS from the gateway's certificate."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_tcp_port, free_udp_port, require_tool
from tests.interop.radsec_tools import RadsecProxy, serve_output
from tests.interop.test_radsec_serve_interop import (
    ROWS,
    SERVER_NAME,
    HopPki,
    _eapol,
    hop,
    serve_config,
)
from tests.interop.tools import EapkitServe

__all__ = ["hop"]  # the fixture, imported for its name

pytestmark = pytest.mark.interop

DTLS_ROWS = ["mschapv2", "gtc", "ttls-pap-tls13", "peap-mschapv2-tls12", "tls-tls13"]


@pytest.fixture(scope="module")
def serve(hop: HopPki) -> Iterator[EapkitServe]:
    work = hop.work / "serve-dtls"
    work.mkdir()
    config = work / "eapkit.toml"
    dtls_port = free_udp_port()
    text = serve_config(hop, free_tcp_port())
    config.write_text(
        text.replace("[radsec]\n", f'[radsec]\ndtls_listen = ["127.0.0.1:{dtls_port}"]\n')
    )
    config.chmod(0o600)
    with EapkitServe(work, extra=["--config", str(config)]) as server:
        assert server.daemon is not None
        server.daemon.wait_for(r"radius/dtls listening on 127\.0\.0\.1:(\d+)")
        server.dtls_port = dtls_port  # type: ignore[attr-defined]
        yield server


@pytest.fixture(scope="module")
def bridge(hop: HopPki, serve: EapkitServe) -> Iterator[RadsecProxy]:
    with RadsecProxy(
        hop.work / "radsecproxy-dtls",
        serve.dtls_port,  # type: ignore[attr-defined]
        ca=hop.path("ca.pem"),
        cert=hop.path("gateway.pem"),
        key=hop.path("gateway.key"),
        server_name=SERVER_NAME,
        transport="dtls",
    ) as proxy:
        yield proxy


def _explain(result_output: str, bridge: RadsecProxy, serve: EapkitServe) -> str:
    return (
        result_output[-2500:]
        + "\n--- radsecproxy ---\n"
        + bridge.output()[-2500:]
        + "\n--- eapkit serve ---\n"
        + serve_output(serve)[-2000:]
    )


@pytest.mark.parametrize("row", DTLS_ROWS)
def test_eapol_test_through_radsecproxy_over_dtls(
    bridge: RadsecProxy, serve: EapkitServe, tmp_path: Path, row: str
) -> None:
    network, no_mppe, _ = ROWS[row]
    before = len(serve.decisions)
    result = _eapol(serve, bridge.port, tmp_path, network, no_mppe=no_mppe)
    explain = _explain(result.output, bridge, serve)
    assert result.success, explain
    assert no_mppe or result.mppe_ok, explain
    [decision] = [d for d in serve.decisions[before:] if d.get("result") == "accept"]
    assert decision["transport"] == "dtls" and decision["client"] == "gateway", decision


@pytest.mark.parametrize(
    ("password", "answer"), [("wonderland", "Access-Accept"), ("x", "Access-Reject")]
)
def test_radclient_pap_through_radsecproxy_over_dtls(
    bridge: RadsecProxy, serve: EapkitServe, password: str, answer: str
) -> None:
    exe = require_tool("radclient")["radclient"]
    before = len(serve.decisions)
    done = subprocess.run(
        [exe, "-x", "-r", "1", "-t", "10", f"127.0.0.1:{bridge.port}", "auth", bridge.secret],
        input=f'User-Name = "alice", User-Password = "{password}"\n',
        capture_output=True,
        text=True,
        timeout=30,
    )
    explain = _explain(done.stdout + done.stderr, bridge, serve)
    assert f"Received {answer}" in done.stdout, explain
    [decision] = [d for d in serve.decisions[before:] if "result" in d]
    assert decision["method"] == "pap" and decision["transport"] == "dtls", decision


@pytest.mark.parametrize("method", ["mschapv2", "peap-mschapv2"])
def test_eapkit_probe_over_dtls(hop: HopPki, serve: EapkitServe, method: str) -> None:
    """``eapkit probe --radsec --dtls``: the probe's own RADIUS/DTLS client."""
    before = len(serve.decisions)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eapkit",
            "probe",
            "--server",
            f"127.0.0.1:{serve.dtls_port}",  # type: ignore[attr-defined]
            "--radsec",
            "--dtls",
            "--radsec-cert",
            str(hop.path("gateway.pem")),
            "--radsec-key",
            str(hop.path("gateway.key")),
            "--radsec-ca",
            str(hop.path("ca.pem")),
            "--radsec-server-name",
            SERVER_NAME,
            "--method",
            method,
            "--identity",
            "alice",
            "--password",
            "wonderland",
            "--ca",
            str(serve.pki / "ca.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr + serve_output(serve)[-2000:]
    [decision] = [d for d in serve.decisions[before:] if "result" in d]
    assert decision["result"] == "accept" and decision["transport"] == "dtls", decision
