"""A password table in memory, for tests and examples: a
:class:`~eapkit.credentials.ResponseCheck` (EAP-GTC, RFC 3748 §5.6; PAP, RFC 2865 §5.2)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from eapkit.credentials import PASSWORD, Verdict

__all__ = ["InMemoryPasswords"]


class InMemoryPasswords:
    """user -> password, checked in constant time (a :class:`~eapkit.credentials.ResponseCheck`).

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
        if not match:
            return Verdict.reject("bad_password")
        return Verdict(True, "ok", user, factors=frozenset({PASSWORD}))
