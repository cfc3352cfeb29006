"""Stored password verifiers for PAP and EAP-GTC.

A password is stored as ``pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`` (PBKDF2,
RFC 8018 §5.2, through OpenSSL's ``hashlib.pbkdf2_hmac``).  Checking one costs the
iterations on purpose; :class:`VerifiedCache` remembers, for a short time and only in
this process's memory, that a (user, password) pair was right, keyed by an HMAC under a
random per-process key, so a burst of logins from one user does not pay the cost each
time and nothing in the cache can be reversed into a password.

MS-CHAPv2 cannot use these: it needs the NT hash (MD4 of the UTF-16LE password), which
is password-equivalent; deployments that do not need MS-CHAPv2 leave it out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections import OrderedDict

__all__ = ["DEFAULT_ITERATIONS", "VerifiedCache", "hash_password", "verify_password"]

DEFAULT_ITERATIONS = 100_000
_SCHEME = "pbkdf2-sha256"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """The stored form of ``password``."""
    if iterations < 1000:
        raise ValueError("fewer than 1,000 PBKDF2 iterations is no protection")
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{_SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


# A stored value that matches no password, checked when the user is unknown so that
# unknown users cost the same as known ones.
_DUMMY = hash_password("\x00no such user", salt=b"\x00" * 16)


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``; constant time in the comparison, and
    the same cost for an unknown user (``stored`` None) as for a known one."""
    target = stored if stored is not None else _DUMMY
    try:
        scheme, iterations_text, salt_text, hash_text = target.split("$")
        iterations = int(iterations_text)
        salt, expected = _unb64(salt_text), _unb64(hash_text)
    except ValueError:
        return False
    if scheme != _SCHEME or not 1000 <= iterations <= 10_000_000:
        return False
    given = hashlib.pbkdf2_hmac(
        "sha256", password.encode("utf-8", "surrogatepass"), salt, iterations
    )
    return hmac.compare_digest(given, expected) and stored is not None


class VerifiedCache:
    """Remembers recent successful password checks, in memory, for ``ttl`` seconds.

    Entries are HMAC-SHA256(process key, user || 0 || password || 0 || stored hash): a
    password change (new stored hash) invalidates them, and a memory dump reveals no
    password.  Only successes are cached, so a wrong password always pays full cost.
    """

    def __init__(self, ttl: float = 300.0, size: int = 10_000) -> None:
        self._key = os.urandom(32)
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def _tag(self, user: str, password: str, stored: str) -> bytes:
        msg = b"\x00".join(s.encode("utf-8", "surrogatepass") for s in (user, password, stored))
        return hmac.digest(self._key, msg, "sha256")

    def check(self, user: str, password: str, stored: str | None, now: float) -> bool:
        """``verify_password`` with the cache in front of it."""
        if stored is None or self._ttl <= 0:
            return verify_password(password, stored)
        tag = self._tag(user, password, stored)
        expires = self._entries.get(tag)
        if expires is not None and expires > now:
            return True
        if not verify_password(password, stored):
            return False
        self._entries[tag] = now + self._ttl
        self._entries.move_to_end(tag)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return True
