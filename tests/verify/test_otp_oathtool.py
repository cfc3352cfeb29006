"""Codes made by oathtool (OATH Toolkit, Debian package oathtool) verify in eapkit."""

from __future__ import annotations

import base64
import subprocess

import pytest

from eapkit.rand import DeterministicRandom
from eapkit.store import MemoryStore
from eapkit.verify.otp import OtpCredential, OtpVerifier, b32_secret, hotp, totp
from tests.conftest import require_tool

pytestmark = pytest.mark.interop

AT = 1_700_000_123


def oathtool(*args: str) -> str:
    exe = require_tool("oathtool")["oathtool"]
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("digits", [6, 8])
def test_oathtool_totp_codes_verify(algorithm: str, digits: int) -> None:
    secret = DeterministicRandom(f"{algorithm}{digits}").random_bytes(
        20 if algorithm == "sha1" else 32
    )
    code = oathtool(f"--totp={algorithm}", "-d", str(digits), "-N", f"@{AT}", secret.hex())
    assert len(code) == digits
    assert totp(secret, AT, digits, algorithm) == code
    v = OtpVerifier(MemoryStore())
    v.enroll("u", OtpCredential(secret, algorithm=algorithm, digits=digits), 0.0)
    verdict = v.verify("u", code, float(AT))
    assert (verdict.ok, verdict.step) == (True, AT // 30)
    assert v.verify("u", code, float(AT)).reason == "replayed"


def test_oathtool_totp_period_start_time_and_base32() -> None:
    secret = DeterministicRandom("b32").random_bytes(20)
    b32 = base64.b32encode(secret).decode()
    code = oathtool("--totp", "-b", "-s", "60", "-S", "@1000", "-N", f"@{AT}", b32)
    assert b32_secret(b32.lower()) == secret
    v = OtpVerifier(MemoryStore())
    v.enroll("u", OtpCredential(secret, period=60, t0=1000), 0.0)
    assert v.verify("u", code, float(AT)).step == (AT - 1000) // 60


def test_oathtool_hotp_codes_verify() -> None:
    secret = DeterministicRandom("hotp").random_bytes(20)
    codes = oathtool("-c", "0", "-w", "4", "-d", "8", secret.hex()).split()
    assert codes == [hotp(secret, c, 8) for c in range(5)]
    v = OtpVerifier(MemoryStore())
    v.enroll("u", OtpCredential(secret, kind="hotp", digits=8), 0.0)
    assert [v.verify("u", c, 0.0).step for c in codes] == [0, 1, 2, 3, 4]
