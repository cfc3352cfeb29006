"""RFC 4226 Appendix D and RFC 6238 Appendix B through the generators and the verifier."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.store import MemoryStore
from eapkit.verify.otp import (
    OtpCredential,
    OtpVerifier,
    _KeyedHmac,
    hotp,
    totp,
    totp_step,
)
from tests.vectorlib import Case, hexbytes, ids, load

HOTP = load("otp_rfc4226")
TOTP = load("otp_rfc6238")


@pytest.mark.parametrize("case", HOTP, ids=ids(HOTP))
def test_rfc4226_generator(case: Case) -> None:
    secret = hexbytes(case["secret"])
    message = case["counter"].to_bytes(8, "big")
    assert hmac.digest(secret, message, "sha1").hex() == case["hmac_sha1"]
    assert _KeyedHmac(secret, "sha1").digest(message).hex() == case["hmac_sha1"]
    assert hotp(secret, case["counter"]) == case["hotp"]
    # ten digits keep the whole 31-bit truncated value
    assert hotp(secret, case["counter"], digits=10) == f"{case['truncated']:010d}"


def test_rfc4226_through_the_verifier_in_sequence() -> None:
    v = OtpVerifier(MemoryStore())
    v.enroll("u", OtpCredential(hexbytes(HOTP[0]["secret"]), kind="hotp"), 0.0)
    for case in HOTP:
        verdict = v.verify("u", case["hotp"], 0.0)
        assert (verdict.ok, verdict.reason, verdict.step) == (True, "ok", case["counter"])
        assert v.verify("u", case["hotp"], 0.0).reason == "replayed"


@pytest.mark.parametrize("case", TOTP, ids=ids(TOTP))
def test_rfc6238_generator(case: Case) -> None:
    secret = hexbytes(case["secret"])
    assert totp_step(case["time"]) == case["step"]
    assert totp(secret, case["time"], 8, case["algorithm"]) == case["totp"]


@pytest.mark.parametrize("case", TOTP, ids=ids(TOTP))
def test_rfc6238_through_the_verifier(case: Case) -> None:
    v = OtpVerifier(MemoryStore())
    cred = OtpCredential(
        hexbytes(case["secret"]),
        algorithm=case["algorithm"],
        digits=case["digits"],
        period=case["period"],
        t0=case["t0"],
    )
    v.enroll("u", cred, 0.0)
    verdict = v.verify("u", case["totp"], float(case["time"]))
    assert (verdict.ok, verdict.step, verdict.drift) == (True, case["step"], 0)
    assert v.verify("u", case["totp"], float(case["time"])).reason == "replayed"
    # the same code one step later is still inside the look-back window, still replayed
    assert v.verify("u", case["totp"], case["time"] + 30.0).reason == "replayed"


@given(
    key=st.binary(max_size=200),
    message=st.binary(max_size=100),
    algorithm=st.sampled_from(["sha1", "sha256", "sha512"]),
)
def test_precomputed_pads_equal_hmac(key: bytes, message: bytes, algorithm: str) -> None:
    assert _KeyedHmac(key, algorithm).digest(message) == hmac.digest(key, message, algorithm)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"digits": 5}, "digits"),
        ({"digits": 11}, "digits"),
        ({"algorithm": "md5"}, "algorithm"),
    ],
)
def test_generator_parameters_are_checked(kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        hotp(b"k" * 20, 0, **kwargs)  # type: ignore[arg-type]
