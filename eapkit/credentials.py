"""The narrow interfaces through which methods reach credentials (DESIGN.md).

A method never looks a user up by itself: the deployment injects an object that answers
one question (is this password right? what is this user's NT hash? is this code
valid?).  Every answer is a :class:`Verdict` with a reason code, so an Access-Reject can
say why without saying anything secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

__all__ = [
    "CHALLENGE",
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


PASSWORD = "password"  # noqa: S105 - the name of a factor, not a secret
"""The factor (:class:`eapkit.methods.base.Factor`) a password check proves; a plain str
here so that credentials need not import the methods."""

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
        if not second.ok:
            return second
        return Verdict(True, "ok", first.user or user, factors=first.factors | second.factors)


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
            # not done yet, but the password is proved: the code round adds to it
            return Verdict(False, CHALLENGE, verdict.user or user, self.prompt, verdict.factors)
        return verdict

    def second(self, user: str, code: str, now: float, /) -> Verdict:
        verdict = self.code(user, code, now)
        if not verdict.ok:
            return verdict
        return replace(verdict, factors=verdict.factors | {PASSWORD})
