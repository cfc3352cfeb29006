"""The narrow interfaces through which methods reach credentials (DESIGN.md).

A method never looks a user up by itself: the deployment injects an object that answers
one question (is this password right? what is this user's NT hash? is this code
valid?).  Every answer is a :class:`Verdict` with a reason code, so an Access-Reject can
say why without saying anything secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["InMemoryPasswords", "ResponseCheck", "Verdict"]


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
