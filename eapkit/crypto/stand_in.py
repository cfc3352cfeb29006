"""Stand-in secrets: what an unknown user's password or NT hash is checked against.

A server that answers an unknown user faster, or differently, than a wrong password tells
who exists.  Every challenge-response check (MS-CHAPv2, RFC 2759 §8; CHAP, RFC 1994 §4.1)
therefore checks an unknown user against a stand-in that costs the same work: stable per
name (so it caches like a real user's secret) and unpredictable (keyed by a process
secret, so nobody can compute a response that matches it).
"""

from __future__ import annotations

import hmac
import os

__all__ = ["stand_in_secret"]

# One process secret for every check: a fresh one each start is enough, since a stand-in
# is never stored.
_STAND_IN_KEY = os.urandom(32)


def stand_in_secret(user: str, size: int) -> bytes:
    """``size`` (at most 32) bytes that stand in for ``user``'s secret."""
    digest = hmac.new(_STAND_IN_KEY, user.encode("utf-8", "surrogatepass"), "sha256").digest()
    return digest[:size]
