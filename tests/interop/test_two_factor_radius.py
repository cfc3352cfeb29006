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


ROUND_USERS = tuple(f"{m}{v}" for m in ("peap", "ttls", "gtc") for v in ("12", "13"))
TOTP_USERS = ("tom", "tim", "tess", "tia", *ROUND_USERS)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EapkitServe, dict[str, str]]]:
    """eapkit serve with TOTP users (one per test, so each test's codes stand alone:
    an accepted step makes every earlier step of that user a replay) and a YubiKey user."""
    work = tmp_path_factory.mktemp("serve2fa")
    users = (*tuple((name, "pencil") for name in TOTP_USERS), ("yuki", "paper"))
    srv = EapkitServe(work, users=users, extra=["--methods", "gtc,ttls,peap"])
    secrets: dict[str, str] = {}
    with srv:
        for name in TOTP_USERS:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "eapkit",
                    "enroll",
                    "totp",
                    name,
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
            found = re.search(r"secret=([A-Z2-7]+)", uri)
            assert found is not None and uri.startswith(f"otpauth://totp/eapkit:{name}?")
            assert '"event": "otp_enrolled"' in out.stderr
            secrets[name] = found.group(1)
        yield srv, secrets


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


def test_password_and_code_then_replay_then_challenge(
    server: tuple[EapkitServe, dict[str, str]],
) -> None:
    srv, secrets = server
    secret = secrets["tom"]
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


def test_gtc_one_round_and_two_rounds(
    server: tuple[EapkitServe, dict[str, str]], tmp_path: Path
) -> None:
    """eapol_test's GTC answers once (wpa_supplicant ends the method after its first
    response), so it sends the password followed by the code; eapkit probe reads the
    prompts and answers the code in a second GTC round."""
    srv, secrets = server
    secret = secrets["tim"]
    network = 'key_mgmt=IEEE8021X\neap=GTC\nidentity="tim"\npassword="pencil{}"\n'
    first = code(secret)
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
        identity="tim",
        password="pencil",
        otp=code(secret, 1),
    )
    result = asyncio.run(probe(opts))
    assert ok_result(result), result
    two_rounds = srv.decisions[-1]
    assert two_rounds["method"] == "GTC" and two_rounds["rounds"] == 2


@pytest.mark.parametrize(
    ("method", "network"),
    [
        ("TTLS", 'eap=TTLS\nphase2="auth=PAP"\nanonymous_identity="anonymous"'),
        ("PEAP", 'eap=PEAP\nphase1="peapver=0"\nphase2="auth=GTC"\nanonymous_identity="anonymous"'),
    ],
)
def test_tunnelled_password_and_totp(
    server: tuple[EapkitServe, dict[str, str]], tmp_path: Path, method: str, network: str
) -> None:
    """TTLS/PAP and PEAP/GTC carrying password + TOTP from eapol_test; the same code
    again is refused as a replay."""
    srv, secrets = server
    user = "tess" if method == "TTLS" else "tia"
    block = (
        f'key_mgmt=IEEE8021X\n{network}\nidentity="{user}"\n'
        f'password="pencil{code(secrets[user])}"\nca_cert="{srv.pki / "ca.pem"}"\n'
    )
    ok = eapol_test(block, srv.port, tmp_path / "ok")
    assert ok.success and ok.mppe_ok, ok.output[-2000:]
    decision = srv.decisions[-1]
    assert decision["user"] == user and decision["outer_identity"] == "anonymous"
    again = eapol_test(block, srv.port, tmp_path / "again")
    assert not again.success
    assert srv.decisions[-1]["reason"] == "replayed"


def test_gtc_with_a_yubikey_otp(server: tuple[EapkitServe, dict[str, str]], tmp_path: Path) -> None:
    """A YubiKey (Yubico OTP) enrolled with ``eapkit enroll yubikey``; EAP-GTC from
    eapol_test with the password followed by a 44-character OTP."""
    from eapkit.verify.yubico import YubikeyCredential, YubikeyToken, encode_otp

    srv, _ = server
    aes = bytes(range(100, 116))
    cred = YubikeyCredential("vvccccjjkkll", bytes.fromhex("a1a2a3a4a5a6"), aes)

    def otp(counter: int, session: int) -> str:
        return encode_otp(
            YubikeyToken(cred.private_id, counter, 1000, session), aes, cred.public_id
        )

    subprocess.run(
        [
            sys.executable,
            "-m",
            "eapkit",
            "enroll",
            "yubikey",
            "yuki",
            "--otp",
            otp(3, 0),
            "--aes-key",
            aes.hex(),
            "--db",
            str(srv.workdir / "eapkit.db"),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=srv.workdir,
    )
    network = 'key_mgmt=IEEE8021X\neap=GTC\nidentity="yuki"\npassword="paper{}"\n'
    fresh = otp(3, 1)
    ok = eapol_test(network.format(fresh), srv.port, tmp_path / "ok", no_mppe=True)
    assert ok.success, ok.output[-2000:]
    again = eapol_test(network.format(fresh), srv.port, tmp_path / "again", no_mppe=True)
    assert not again.success and srv.decisions[-1]["reason"] == "replayed"
    enrolment = otp(3, 0)  # the OTP typed at enrollment cannot be used afterwards
    old = eapol_test(network.format(enrolment), srv.port, tmp_path / "old", no_mppe=True)
    assert not old.success and srv.decisions[-1]["reason"] == "replayed"


@pytest.mark.parametrize("method", ["peap-gtc", "ttls-gtc", "gtc"])
@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_gtc_code_round_inside_tunnels(
    server: tuple[EapkitServe, dict[str, str]], tmp_path: Path, method: str, tls: str
) -> None:
    """The password in one inner GTC round and the TOTP code in a second, from eapkit's
    peer (which reads the prompts), for PEAP and TTLS over both TLS versions: success,
    then the same code again refused."""
    srv, secrets = server
    user = method.split("-")[0] + tls.replace(".", "")
    otp = code(secrets[user])
    opts = ProbeOptions(
        server=("127.0.0.1", srv.port),
        secret=b"testing123",
        method=method,
        identity=user,
        anonymous_identity="anonymous" if method != "gtc" else None,
        password="pencil",
        otp=otp,
        ca=srv.pki / "ca.pem",
        tls=tls,
    )
    result = asyncio.run(probe(opts))
    assert ok_result(result), result
    decision = srv.decisions[-1]
    assert decision["user"] == user and decision["result"] == "accept"
    again = asyncio.run(probe(opts))
    assert not ok_result(again)
    assert srv.decisions[-1]["reason"] == "replayed"
