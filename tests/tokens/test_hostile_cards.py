"""Drivers fed arbitrary card answers raise only TokenError subclasses, never IndexError etc."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from tokens.errors import TokenError
from tokens.oath import OathSession
from tokens.pcsc import ApduTransport
from tokens.piv import PivSession
from tokens.yubikey import YubiOtpSession


class HostileLink:
    """Answers SELECT with a plausible reply, everything else with the given bytes + SW."""

    def __init__(self, select_answer: bytes, answers: list[bytes]) -> None:
        self.select_answer = select_answer
        self.answers = answers

    atr = b"\x3b\x00"

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[1] == 0xA4:
            return self.select_answer + b"\x90\x00"
        return self.answers.pop(0) if self.answers else b"\x90\x00"

    def begin_transaction(self) -> None:
        pass

    def end_transaction(self) -> None:
        pass

    def close(self) -> None:
        pass


answers = st.lists(
    st.binary(max_size=80).map(lambda b: b + b"\x90\x00") | st.binary(max_size=40),
    max_size=4,
)


def only_token_errors(fn: Callable[[], object]) -> None:
    with contextlib.suppress(TokenError):
        fn()


@settings(max_examples=150)
@given(st.binary(max_size=30), answers)
def test_oath_driver(select_answer: bytes, replies: list[bytes]) -> None:
    def run() -> None:
        s = OathSession(ApduTransport(HostileLink(select_answer, replies)))
        s.list_credentials()
        s.calculate_all(0)

    only_token_errors(run)


@settings(max_examples=150)
@given(answers)
def test_piv_driver(replies: list[bytes]) -> None:
    def run() -> None:
        s = PivSession(ApduTransport(HostileLink(b"", replies)))
        s.certificate(0x9A)
        s.pin_retries()
        s.general_authenticate(0x9A, 0x11, bytes(32))

    only_token_errors(run)


@settings(max_examples=100)
@given(st.binary(max_size=10), answers)
def test_yubikey_driver(select_answer: bytes, replies: list[bytes]) -> None:
    def run() -> None:
        s = YubiOtpSession(ApduTransport(HostileLink(select_answer, replies)))
        s.serial()
        s.challenge_response(2, b"x")

    only_token_errors(run)
