"""The MS-CHAPv2 authenticator's check, against RFC 2759 §9.2's worked example."""

from __future__ import annotations

import pytest

from eapkit.crypto.mschap import hash_nt_password_hash, nt_password_hash
from eapkit.errors import ConfigError
from eapkit.methods.mschapv2 import MsChapV2FailureRequest, MsChapV2SuccessRequest
from eapkit.methods.mschapv2_check import (
    authenticator_response,
    check_nt_response,
    failure_message,
    success_message,
)

# RFC 2759 §9.2
USER = "User"
NT_HASH = nt_password_hash("clientPass")
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
AUTH_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"


def _check(lookup: dict[str, bytes], user: str = USER, response: bytes = NT_RESPONSE) -> str:
    result = check_nt_response(
        lambda name: lookup.get(name), user, AUTH_CHALLENGE, PEER_CHALLENGE, user.encode(), response
    )
    assert result.ok == (result.reason == "ok")
    assert (result.nt_hash is not None) == result.ok
    return result.reason


def test_rfc2759_example_verifies() -> None:
    assert _check({USER: NT_HASH}) == "ok"
    digest = authenticator_response(
        hash_nt_password_hash(NT_HASH), NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, b"User"
    )
    assert success_message(digest) == AUTH_RESPONSE.encode()


def test_wrong_response_and_unknown_user() -> None:
    assert _check({USER: NT_HASH}, response=bytes(24)) == "bad_password"
    assert _check({}) == "unknown_user"
    assert _check({USER: nt_password_hash("other")}) == "bad_password"


def test_a_lookup_of_the_wrong_size_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError):
        _check({USER: b"short"})


def test_messages_are_rfc2759_text() -> None:
    digest = bytes(range(20))
    assert success_message(digest, "Welcome") == (
        b"S=000102030405060708090A0B0C0D0E0F10111213 M=Welcome"
    )
    challenge = bytes(range(16))
    assert failure_message(691, False, challenge, 3, "Authentication failed") == (
        b"E=691 R=0 C=000102030405060708090A0B0C0D0E0F V=3 M=Authentication failed"
    )
    assert failure_message(646, True, None, None) == b"E=646 R=1"


def test_eap_mschapv2_messages_carry_the_same_text() -> None:
    digest = bytes(range(20))
    success = MsChapV2SuccessRequest(7, digest, "hi").encode()
    assert success[4:] == success_message(digest, "hi")
    failure = MsChapV2FailureRequest(7, 691, True, bytes(16), 3, "no").encode()
    assert failure[4:] == failure_message(691, True, bytes(16), 3, "no")
