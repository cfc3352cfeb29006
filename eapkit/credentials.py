"""The narrow interfaces through which methods reach credentials (DESIGN.md).

A method never looks a user up by itself: the deployment injects an object that answers
one question (is this password right? what is this user's NT hash? is this code
valid?).  Every answer is a :class:`Verdict` with a reason code, so an Access-Reject can
say why without saying anything secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "CHALLENGE",
    "InMemoryPasswords",
    "PasswordAndCode",
    "PasswordThenCode",
    "ResponseCheck",
    "TwoRoundCheck",
    "Verdict",
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer of a credential check.

    ``reason`` is one of a small vocabulary: ``ok``, ``bad_password``, ``bad_code``,
    ``unknown_user``, ``replayed``, ``locked_out``, ``store_unavailable``, ``malformed``.
    ``user`` is the canonical user name the check authenticated, when it has one.
    """

    ok: bool
    reason: str
    user: str | None = None
    detail: str = ""
    factors: frozenset[str] = frozenset()

    @classmethod
    def accept(cls, user: str | None = None) -> Verdict:
        return cls(True, "ok", user)

    @classmethod
    def reject(cls, reason: str, detail: str = "") -> Verdict:
        return cls(False, reason, None, detail)


class ResponseCheck(Protocol):
    """Checks a cleartext response (EAP-GTC, PAP) for a user at a time."""

    def __call__(self, user: str, response: str, now: float, /) -> Verdict: ...


class InMemoryPasswords:
    """A test double and tiny deployments: user -> password, checked in constant time.

    An unknown user costs the same comparison as a known one, so timing does not tell
    which users exist.
    """

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self._digests = {u: hashlib.sha256(p.encode()).digest() for u, p in passwords.items()}
        self._dummy = hashlib.sha256(b"\x00unknown user").digest()

    def __call__(self, user: str, response: str, now: float) -> Verdict:
        expected = self._digests.get(user)
        given = hashlib.sha256(response.encode("utf-8", "surrogatepass")).digest()
        match = hmac.compare_digest(given, expected if expected is not None else self._dummy)
        if expected is None:
            return Verdict.reject("unknown_user")
        return Verdict.accept(user) if match else Verdict.reject("bad_password")


CHALLENGE = "challenge"
"""Verdict reason meaning "right so far: ask for the next factor" (``detail`` is the
prompt).  EAP-GTC answers it with another GTC round; plain RADIUS with Access-Challenge."""


@runtime_checkable
class TwoRoundCheck(Protocol):
    """A check that may answer :data:`CHALLENGE` to the first response and then checks
    the code of the second round with :meth:`second` (EAP-GTC, TTLS/PAP's Reply-Message
    challenge, RFC 2865 Access-Challenge)."""

    def __call__(self, user: str, response: str, now: float, /) -> Verdict: ...

    def second(self, user: str, code: str, now: float, /) -> Verdict: ...


class CodeLength(Protocol):
    def __call__(self, user: str, /) -> int | None: ...


@dataclass(frozen=True, slots=True)
class PasswordAndCode:
    """One response carrying the password followed by a one-time code (TTLS/PAP, plain
    PAP, GTC in a single round): ``code_length(user)`` says how many trailing characters
    are the code (6 or 8 for TOTP, 44 for a YubiKey OTP), or None when the user has no
    second factor and the whole response is the password.

    Both factors are always checked, so a wrong password and a wrong code are told apart
    only in the log, never by timing or on the wire.
    """

    password: ResponseCheck
    code: ResponseCheck
    code_length: CodeLength

    def __call__(self, user: str, response: str, now: float, /) -> Verdict:
        length = self.code_length(user)
        if length is None:
            return self.password(user, response, now)
        if len(response) <= length:
            self.password(user, response, now)  # same cost as a full check
            return Verdict.reject("malformed", "response shorter than a password and a code")
        first = self.password(user, response[:-length], now)
        second = self.code(user, response[-length:], now)
        if not first.ok:
            return first
        return second if not second.ok else Verdict.accept(first.user or user)


@dataclass(frozen=True, slots=True)
class PasswordThenCode:
    """The password first; when ``needs_code(user)``, a second round asks for the code
    (EAP-GTC inside TTLS or PEAP, or RFC 2865 Access-Challenge).  Call it for the first
    response; :meth:`second` checks the code."""

    password: ResponseCheck
    code: ResponseCheck
    needs_code: Callable[[str], bool]
    prompt: str = "One-time code: "

    def __call__(self, user: str, response: str, now: float, /) -> Verdict:
        verdict = self.password(user, response, now)
        if verdict.ok and self.needs_code(user):
            return Verdict(False, CHALLENGE, verdict.user or user, self.prompt)
        return verdict

    def second(self, user: str, code: str, now: float, /) -> Verdict:
        return self.code(user, code, now)
