"""Password + TOTP through ``eapkit serve`` with real clients: the user is enrolled with
``eapkit enroll totp``, codes come from ``oathtool`` (Debian ``oathtool``), requests from
``radclient`` (plain PAP, password followed by the code, and RFC 2865 challenge-response)
and from ``eapol_test`` (EAP-GTC: password, then the code in a second GTC round)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.probe import ProbeOptions, probe
from eapkit.probe import ok as ok_result
from tests.conftest import require_tool
from tests.interop.test_radclient import radclient
from tests.interop.tools import EapkitServe, eapol_test

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EapkitServe, str]]:
    work = tmp_path_factory.mktemp("serve2fa")
    srv = EapkitServe(work, users=(("tom", "pencil"),), extra=["--methods", "gtc"])
    with srv:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "eapkit",
                "enroll",
                "totp",
                "tom",
                "--no-terminal",
                "--db",
                str(work / "eapkit.db"),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=work,
        )
        uri = out.stdout.strip().splitlines()[0]
        secret = re.search(r"secret=([A-Z2-7]+)", uri)
        assert secret is not None and uri.startswith("otpauth://totp/eapkit:tom?")
        assert '"event": "otp_enrolled"' in out.stderr
        yield srv, secret.group(1)


def code(secret: str, offset_steps: int = 0) -> str:
    exe = require_tool("oathtool")["oathtool"]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + 30 * offset_steps))
    out = subprocess.run(
        [exe, "--totp", "-b", "--now", when, secret], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def pap(port: int, password: str, state: str | None = None) -> str:
    attrs = f'User-Name = "tom"\nUser-Password = "{password}"\nMessage-Authenticator = 0x00\n'
    if state:
        attrs += f"State = {state}\n"
    return radclient(port, attrs).stdout


def test_password_and_code_then_replay_then_challenge(server: tuple[EapkitServe, str]) -> None:
    srv, secret = server
    now_code = code(secret)
    assert "Received Access-Accept" in pap(srv.port, "pencil" + now_code)
    assert "Received Access-Reject" in pap(srv.port, "pencil" + now_code)
    assert srv.decisions[-1]["reason"] == "replayed"
    assert "Received Access-Reject" in pap(srv.port, "pencil" + "000000")
    # RFC 2865 challenge-response: the password alone, then the code with the State
    first = pap(srv.port, "pencil")
    assert "Received Access-Challenge" in first
    assert 'Reply-Message = "One-time code: "' in first
    state = re.search(r"State = (0x[0-9a-f]+)", first)
    assert state is not None
    second = pap(srv.port, code(secret, 1), state=state.group(1))
    assert "Received Access-Accept" in second, second
    assert srv.decisions[-1]["method"] == "pap+challenge"


def test_gtc_one_round_and_two_rounds(server: tuple[EapkitServe, str], tmp_path: Path) -> None:
    """eapol_test's GTC answers once (wpa_supplicant ends the method after its first
    response), so it sends the password followed by the code; eapkit probe reads the
    prompts and answers the code in a second GTC round."""
    srv, secret = server
    network = 'key_mgmt=IEEE8021X\neap=GTC\nidentity="tom"\npassword="pencil{}"\n'
    first = code(secret, 2)
    ok = eapol_test(network.format(first), srv.port, tmp_path / "ok", no_mppe=True)
    assert ok.success, ok.output[-2000:]
    one_round = srv.decisions[-1]
    assert one_round["rounds"] == 1
    again = eapol_test(network.format(first), srv.port, tmp_path / "again", no_mppe=True)
    assert not again.success and srv.decisions[-1]["reason"] == "replayed"
    opts = ProbeOptions(
        server=("127.0.0.1", srv.port),
        secret=b"testing123",
        method="gtc",
        identity="tom",
        password="pencil",
        otp=code(secret, 3),
    )
    result = asyncio.run(probe(opts))
    assert ok_result(result), result
    two_rounds = srv.decisions[-1]
    assert two_rounds["method"] == "GTC" and two_rounds["rounds"] == 2
