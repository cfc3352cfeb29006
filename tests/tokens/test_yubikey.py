"""tokens.yubikey (OTP applet over CCID) against the virtual YubiKey."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tests.tokens.cards import oath_state, otp_state
from tests.tokens.conftest import READERS, CardFactory
from tokens.errors import StatusError
from tokens.pcsc import ApduTransport, connect
from tokens.sim import make_card
from tokens.sim.card import SimLink
from tokens.yubikey import YubiOtpSession, pad_challenge

SECRET = bytes.fromhex("303132333435363738393a3b3c3d3e3f40414243")


def session() -> YubiOtpSession:
    card = make_card("yubikey", {"otp": otp_state(SECRET), "oath": oath_state()})
    return YubiOtpSession(ApduTransport(SimLink(card)))


@pytest.mark.parametrize(
    "challenge", [b"", b"abc", b"ends in zero\x00", bytes(range(63)), b"\x01" * 10]
)
def test_hmac_sha1_challenge_response(challenge: bytes) -> None:
    s = session()
    assert s.challenge_response(2, challenge) == hmac.digest(SECRET, challenge, "sha1")


def test_a_full_64_byte_challenge_loses_its_trailing_repeats() -> None:
    # HMAC_LT64 semantics: what the card strips cannot be told from padding
    s = session()
    assert s.challenge_response(2, bytes(range(64))) == hmac.digest(
        SECRET, bytes(range(63)), "sha1"
    )


def test_rfc2202_hmac_sha1_case_2_through_the_card() -> None:
    # RFC 2202 section 3, test case 2: key "Jefe"
    card = make_card("yubikey", {"otp": {"slots": {"1": {"secret": b"Jefe".hex()}}}})
    s = YubiOtpSession(ApduTransport(SimLink(card)))
    mac = s.challenge_response(1, b"what do ya want for nothing?")
    assert mac.hex() == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"


def test_serial_status_and_unconfigured_slot() -> None:
    s = session()
    assert s.serial() == 4711
    assert s.status.version == (5, 4, 3)
    assert s.status.slot2_configured and not s.status.slot1_configured
    with pytest.raises(StatusError) as info:
        s.challenge_response(1, b"x")
    assert "not configured" in info.value.meaning


def test_padding_keeps_challenges_apart() -> None:
    assert pad_challenge(b"a")[-1] == 0 and pad_challenge(b"a\x00")[-1] == 1
    assert len(pad_challenge(b"")) == 64
    with pytest.raises(ValueError):
        pad_challenge(bytes(65))
    assert hashlib.sha1(b"").digest() != session().challenge_response(2, b"\x00")


@pytest.mark.interop
def test_challenge_response_through_pcscd(virtual_card: CardFactory) -> None:
    virtual_card("yubikey", {"otp": otp_state(SECRET, serial=99)})
    with connect(READERS[0]) as link:
        s = YubiOtpSession(ApduTransport(link))
        assert s.serial() == 99
        assert s.challenge_response(2, b"bench") == hmac.digest(SECRET, b"bench", "sha1")
