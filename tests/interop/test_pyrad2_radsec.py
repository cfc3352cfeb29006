"""pyrad2 3.2 (PyPI), an independent RadSec client, against ``eapkit serve``'s RadSec
listener (issue 17): RADIUS/1.0 over TLS (RFC 6614) and RADIUS/1.1 (RFC 9765, ALPN).

pyrad2 needs Python >= 3.12 and eapkit runs on Debian 12's 3.11, so pyrad2 lives in a
virtualenv of its own, ``.venv-pyrad2`` (built by scripts/setup from a pyenv 3.12, or
named by ``EAPKIT_PYRAD2_PYTHON``), and drives ``RadSecClient`` from
tests/interop/pyrad2_radsec_client.py as a subprocess.

What pyrad2 does here, found by running it (and reading its source):
- PAP, Status-Server and its EAP-MSCHAPv2 and EAP-GTC drivers work over 1.0 and 1.1;
  over 1.1 the MS-MPPE keys arrive unobfuscated and pyrad2 reads them as such;
- its EAP drivers need a User-Password on the packet and leave it there beside
  EAP-Message: RFC 3579 §3.3 forbids that pair, and eapkit (like FreeRADIUS) answers
  Access-Reject, reason ``eap_with_password``.  The client script drops the
  User-Password after pyrad2 built the EAP-Response/Identity; the "as shipped" case
  asserts the Reject.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eapkit import pki
from eapkit.crypto.mschap import (
    get_master_key,
    hash_nt_password_hash,
    mschapv2_msk,
    nt_password_hash,
)
from eapkit.private_files import write_private
from eapkit.radius.mppe import recover_mppe_keys
from eapkit.radius.packet import decode
from tests.conftest import IN_CI, free_tcp_port
from tests.interop.radsec_tools import serve_output, wait_for_tcp
from tests.interop.tools import EapkitServe

pytestmark = pytest.mark.interop

ROOT = Path(__file__).parents[2]
SCRIPT = Path(__file__).with_name("pyrad2_radsec_client.py")
DICTIONARY = ROOT / "tests" / "radius" / "dictionary.pyrad"
PASSWORD = "wonderland"
ACCEPT, REJECT = 2, 3
CASES = ["pap", "pap-wrong", "status", "eap-mschapv2", "eap-gtc", "eap-mschapv2-as-shipped"]


def pyrad2_python() -> str:
    """The interpreter of pyrad2's virtualenv: skip without it (fail under CI)."""
    named = os.environ.get("EAPKIT_PYRAD2_PYTHON")
    python = Path(named) if named else ROOT / ".venv-pyrad2" / "bin" / "python"
    probe = (
        subprocess.run([python, "-c", "import pyrad2.radsec.client"], capture_output=True)
        if python.exists()
        else None
    )
    if probe is None or probe.returncode != 0:
        message = f"pyrad2 is not installed in {python} (scripts/setup builds it)"
        if IN_CI:
            pytest.fail(f"interop tool missing under CI: {message}")
        pytest.skip(message)
    return str(python)


@pytest.fixture(scope="module", params=["allow"])
def serve(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[EapkitServe, int, Path]]:
    """eapkit serve with a RadSec listener whose ``radius_1_1`` is the param."""
    work = tmp_path_factory.mktemp("pyrad2-radsec")
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("pyrad2 RadSec CA", now=now)
    for name, issued in {
        "server": pki.make_server(ca, ["localhost"], now=now),
        "nas": pki.make_client(ca, "pyrad2-nas", now=now),
    }.items():
        (work / f"{name}.pem").write_bytes(issued.chain_pem)
        write_private(work / f"{name}.key", issued.key_pem)
    (work / "ca.pem").write_bytes(ca.cert_pem)
    port = free_tcp_port()
    config = work / "eapkit.toml"
    config.write_text(
        "[radsec]\n"
        f'listen = ["127.0.0.1:{port}"]\n'
        f'cert = "{work / "server.pem"}"\n'
        f'key = "{work / "server.key"}"\n'
        f'radius_1_1 = "{request.param}"\n'
        "\n[[radsec.clients]]\n"
        'name = "pyrad2"\n'
        f'ca = "{work / "ca.pem"}"\n'
        'subject = "pyrad2-nas"\n'
    )
    config.chmod(0o600)
    with EapkitServe(work / "serve", extra=["--config", str(config)]) as server:
        wait_for_tcp(port, server)
        yield server, port, work


def _run(python: str, port: int, work: Path, alpn: str, cases: list[str]) -> dict[str, Any]:
    args = {
        "server": "localhost",  # the name in serve's certificate: pyrad2 checks it
        "port": port,
        "ca": str(work / "ca.pem"),
        "cert": str(work / "nas.pem"),
        "key": str(work / "nas.key"),
        "dictionary": str(DICTIONARY),
        "alpn": alpn,
        "user": "alice",
        "password": PASSWORD,
        "cases": cases,
    }
    done = subprocess.run(
        [python, str(SCRIPT)], input=json.dumps(args), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _mppe_keys(nt_response: str) -> tuple[str, str]:
    """MS-MPPE-Recv-Key and -Send-Key of an EAP-MSCHAPv2 login, as eapkit sends them
    (the MSK's first two 16-octet halves, RFC 3079 §3.3, [MS-CHAP] §3.1.5.1)."""
    master = get_master_key(
        hash_nt_password_hash(nt_password_hash(PASSWORD)), bytes.fromhex(nt_response)
    )
    msk = mschapv2_msk(master)
    return msk[:16].hex(), msk[16:32].hex()


@pytest.mark.parametrize("alpn", ["radius/1.0", "radius/1.1"])
def test_pyrad2_radsec_client(serve: tuple[EapkitServe, int, Path], alpn: str) -> None:
    python = pyrad2_python()
    server, port, work = serve
    before = len(server.decisions)
    out = _run(python, port, work, alpn, CASES)
    explain = json.dumps(out, indent=1) + "\n--- eapkit serve ---\n" + serve_output(server)[-3000:]
    version = alpn.removeprefix("radius/")
    assert {r["version"] for r in out.values()} == {version}, explain
    codes = {case: r["code"] for case, r in out.items()}
    assert codes == {
        "pap": ACCEPT,
        "pap-wrong": REJECT,
        "status": ACCEPT,
        "eap-mschapv2": ACCEPT,
        "eap-gtc": ACCEPT,
        "eap-mschapv2-as-shipped": REJECT,
    }, explain
    mschap = out["eap-mschapv2"]
    expected = list(_mppe_keys(mschap["nt_response"]))
    if version == "1.1":  # RFC 9765 §5.1.3: the keys travel in clear; pyrad2 reads them
        assert mschap["mppe"] == expected, explain
    else:
        # RFC 2548 §2.4.2: the salt key is MD5(secret + Request Authenticator + salt).
        # eapkit's NAS side recovers the right keys from the reply pyrad2 received ...
        raw = decode(bytes.fromhex(mschap["raw_reply"]))
        keys = recover_mppe_keys(raw, b"radsec", bytes.fromhex(mschap["request_authenticator"]))
        assert keys is not None and [keys.recv.hex(), keys.send.hex()] == expected, explain
        # ... pyrad2 3.2 decrypts them with the reply's own Authenticator: wrong keys
        assert mschap["mppe"] is not None and mschap["mppe"] != expected, explain
    # RFC 9765 §5.2: no Message-Authenticator over 1.1; over 1.0 an EAP reply has one
    assert mschap["message_authenticator"] is (version == "1.0"), explain
    # pyrad2's EAP-GTC driver puts the password in the EAP-Response/Identity
    assert out["eap-gtc"]["identity"] == PASSWORD, explain
    assert out["eap-mschapv2"]["identity"] == "alice", explain
    decisions = [d for d in server.decisions[before:] if "result" in d]
    assert {(d["transport"], d["radius_version"], d["client"]) for d in decisions} == {
        ("radsec", version, "pyrad2")
    }, explain
    reasons = [(d["result"], d["reason"]) for d in decisions]
    assert reasons.count(("accept", "ok")) == 3, explain  # PAP, EAP-MSCHAPv2, EAP-GTC
    assert ("reject", "bad_password") in reasons, explain
    assert ("reject", "eap_with_password") in reasons, explain  # RFC 3579 §3.3


@pytest.mark.parametrize("serve", ["forbid"], indirect=True)
def test_pyrad2_insisting_on_1_1_gets_no_fallback(serve: tuple[EapkitServe, int, Path]) -> None:
    """RFC 9765 §3.3: a client offering only radius/1.1 to a server that forbids it
    does not fall back.  Python's ``ssl`` (eapkit's listener) answers an ALPN list
    with no overlap by selecting none rather than with RFC 7301 §3.2's
    no_application_protocol alert, so the handshake ends without ALPN and pyrad2
    closes the connection itself: no request is sent, no decision is made."""
    python = pyrad2_python()
    server, port, work = serve
    before = len(server.decisions)
    out = _run(python, port, work, "radius/1.1-only", ["pap"])
    assert out["pap"]["code"] is None, out
    assert "did not offer ALPN" in str(out["pap"]["error"]), out
    assert server.decisions[before:] == []
