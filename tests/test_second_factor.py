"""Per-user second factors: TOTP, YubiKey OTP, recovery codes, and the PAP/GTC checks
built on them."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from eapkit.credentials import CHALLENGE
from eapkit.directory import LocalDirectory
from eapkit.second_factor import RECOVERY_PATTERN, SecondFactors
from eapkit.store.memory import MemoryStore
from eapkit.store.sealing import Sealer
from eapkit.verify.otp import OtpCredential, b32_secret, otpauth_uri, totp
from eapkit.verify.yubico import YubikeyCredential, YubikeyToken, encode_otp

NOW = 1_800_000_000.0
SECRET = bytes(range(20))
AES = bytes(range(16, 32))


@pytest.fixture
def second(tmp_path: Path) -> SecondFactors:
    users = LocalDirectory(tmp_path / "u.db")
    for name, factor in (("tom", "totp"), ("yuki", "yubikey"), ("nora", "none")):
        users.add(name, "pw-" + name, second_factor=factor, iterations=1000)
    sf = SecondFactors(users, MemoryStore(), Sealer({"k": os.urandom(32)}))
    sf.totp.enroll("tom", OtpCredential(SECRET), NOW - 100)
    return sf


def yubikey_otp(counter: int, session: int = 0) -> tuple[YubikeyCredential, str]:
    cred = YubikeyCredential("cccccccccccb", b"\x01\x02\x03\x04\x05\x06", AES)
    token = YubikeyToken(cred.private_id, counter, 0, session)
    return cred, encode_otp(token, AES, cred.public_id)


def test_totp_password_and_code(second: SecondFactors) -> None:
    pap = second.pap(second.users.check_password)
    code = totp(SECRET, NOW)
    assert pap("tom", "pw-tom" + code, NOW).ok
    assert pap("tom", "pw-tom" + code, NOW).reason == "replayed"
    assert pap("tom", "pw-tom" + "000000", NOW + 30).reason in ("bad_code", "locked_out")
    assert pap("tom", "wrong" + totp(SECRET, NOW + 60), NOW + 60).reason == "bad_password"
    challenge = pap("tom", "pw-tom", NOW)
    assert challenge.reason == CHALLENGE and challenge.detail == "One-time code: "
    assert pap("nora", "pw-nora", NOW).ok  # no second factor


def test_yubikey_otp(second: SecondFactors) -> None:
    cred, first = yubikey_otp(5)
    second.yubikey.enroll("yuki", cred, NOW, seen=None)
    pap = second.pap(second.users.check_password)
    assert pap("yuki", "pw-yuki" + first, NOW).ok
    assert pap("yuki", "pw-yuki" + first, NOW).reason == "replayed"
    _, later = yubikey_otp(5, session=1)
    assert second.check_code("yuki", later, NOW).ok
    assert not second.check_code("tom", later, NOW).ok  # not tom's key


def test_recovery_codes_are_single_use(second: SecondFactors) -> None:
    codes = second.recovery.issue("tom", NOW, count=3)
    assert len(codes) == 3 and all(RECOVERY_PATTERN.fullmatch(c) for c in codes)
    assert second.recovery.remaining("tom", NOW) == 3
    pap = second.pap(second.users.check_password)
    assert pap("tom", "pw-tom" + codes[0], NOW).ok
    assert not pap("tom", "pw-tom" + codes[0], NOW).ok
    assert second.check_code("tom", codes[1].upper(), NOW).ok
    assert second.recovery.remaining("tom", NOW) == 1
    fresh = second.recovery.issue("tom", NOW)
    assert not second.check_code("tom", codes[2], NOW).ok  # replaced
    assert second.check_code("tom", fresh[0], NOW).ok


def test_gtc_check_asks_for_the_code_after_the_password(second: SecondFactors) -> None:
    gtc = second.gtc(second.users.check_password)
    first = gtc("tom", "pw-tom", NOW)
    assert first.reason == CHALLENGE
    assert gtc.second("tom", totp(SECRET, NOW), NOW).ok
    assert gtc("nora", "pw-nora", NOW).ok


def test_otpauth_uri_carries_the_parameters() -> None:
    cred = OtpCredential(SECRET, algorithm="sha256", digits=8, period=60)
    uri = urlparse(otpauth_uri("alice@example.org", cred, issuer="ACME VPN"))
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert uri.path == "/ACME%20VPN:alice@example.org"
    query = {k: v[0] for k, v in parse_qs(uri.query).items()}
    assert b32_secret(query["secret"]) == SECRET
    assert query == {
        **query,
        "issuer": "ACME VPN",
        "algorithm": "SHA256",
        "digits": "8",
        "period": "60",
    }
