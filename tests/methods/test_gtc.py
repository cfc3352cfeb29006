"""EAP-GTC both roles, with the two-factor credential combinators."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from eapkit.credentials import (
    CHALLENGE,
    PasswordAndCode,
    PasswordThenCode,
    Verdict,
)
from eapkit.loopback import converse
from eapkit.methods.base import Done, MethodContext, Reply
from eapkit.methods.gtc import GtcAuthenticator, gtc_authenticator, gtc_peer
from eapkit.session import AuthenticatorSession, PeerSession
from eapkit.testing import InMemoryPasswords

PASSWORDS = InMemoryPasswords({"alice": "wonderland", "bob": "builder"})


class Codes:
    """A test double for a one-time-code verifier: each code is good once."""

    def __init__(self, good: str) -> None:
        self.good = good
        self.used: set[str] = set()
        self.calls = 0

    def __call__(self, user: str, code: str, now: float, /) -> Verdict:
        self.calls += 1
        if code != self.good:
            return Verdict.reject("bad_code")
        if code in self.used:
            return Verdict.reject("replayed")
        self.used.add(code)
        return Verdict.accept(user)


def needs_code(user: str) -> bool:
    return user == "alice"


def test_password_and_code_in_one_response() -> None:
    codes = Codes("123456")
    check = PasswordAndCode(PASSWORDS, codes, lambda u: 6 if needs_code(u) else None)
    assert check("alice", "wonderland123456", 0).ok
    assert check("alice", "wonderland123456", 0).reason == "replayed"
    assert check("alice", "wonderland654321", 0).reason == "bad_code"
    assert check("alice", "wrongpass123456", 0).reason == "bad_password"
    assert check("alice", "12345", 0).reason == "malformed"
    assert check("bob", "builder", 0).ok  # no second factor for bob
    assert codes.calls == 4  # the code is checked even when the password is wrong


def _pair(answers: list[str], check: object) -> tuple[AuthenticatorSession, PeerSession, list[str]]:
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return answers[len(prompts) - 1]

    auth = AuthenticatorSession([gtc_authenticator(check)])  # type: ignore[arg-type]
    peer = PeerSession([gtc_peer(answer)], "alice")
    return auth, peer, prompts


def test_gtc_second_round_asks_for_the_code() -> None:
    codes = Codes("777888")
    check = PasswordThenCode(PASSWORDS, codes, needs_code, prompt="Code: ")
    auth, peer, prompts = _pair(["wonderland", "777888"], check)
    conv = converse(auth, peer)
    assert conv.authenticator is not None and conv.authenticator.success
    assert conv.peer is not None and conv.peer.success
    assert prompts == ["Password: ", "Code: "]
    # the same code again is refused
    auth, peer, _ = _pair(["wonderland", "777888"], check)
    conv = converse(auth, peer)
    assert conv.authenticator is not None and conv.authenticator.reason == "replayed"
    assert conv.peer is not None and not conv.peer.success
    # a wrong password never reaches the code round
    auth, peer, prompts = _pair(["guess", "777888"], check)
    conv = converse(auth, peer)
    assert conv.authenticator is not None and conv.authenticator.reason == "bad_password"
    assert prompts == ["Password: "]


def test_challenge_without_code_check_is_a_failure() -> None:
    def always_challenge(user: str, response: str, now: float, /) -> Verdict:
        return Verdict(False, CHALLENGE, user, "more")

    auth = GtcAuthenticator(MethodContext(b"alice"), always_challenge)
    step = auth.receive(b"x")
    assert isinstance(step, Done) and not step.outcome.success


@given(st.lists(st.binary(max_size=40), max_size=4))
def test_gtc_authenticator_survives_arbitrary_responses(responses: list[bytes]) -> None:
    check = PasswordThenCode(PASSWORDS, Codes("1"), needs_code)
    auth = GtcAuthenticator(MethodContext(b"alice"), check)
    auth.start()
    for r in responses:
        step = auth.receive(r)
        assert isinstance(step, Reply | Done)
        if isinstance(step, Done):
            break


def test_gtc_rejects_bad_utf8_and_oversize() -> None:
    for data in (b"\xff\xfe", b"x" * 2000, b""):
        auth = GtcAuthenticator(MethodContext(b"alice"), PASSWORDS)
        step = auth.receive(data)
        assert isinstance(step, Done) and step.outcome.reason == "malformed"
