"""An NT-hash table in memory, for tests and benchmarks: an
:class:`~eapkit.methods.mschapv2.NtHashLookup` and
:class:`~eapkit.methods.mschapv2.PasswordChange` (RFC 2759 §8.2, RFC 2433 change
password)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from eapkit.crypto.mschap import nt_password_hash

__all__ = ["StaticNtHashes"]


class StaticNtHashes:
    """A table of users for tests and small deployments: user -> NT hash, with the
    set of users whose password has expired.  Implements :class:`NtHashLookup` and
    :class:`PasswordChange`."""

    def __init__(
        self, hashes: Mapping[str, bytes] | None = None, expired: Iterable[str] = ()
    ) -> None:
        self.hashes = dict(hashes or {})
        self.expired_users = set(expired)

    @classmethod
    def from_passwords(
        cls, passwords: Mapping[str, str], expired: Iterable[str] = ()
    ) -> StaticNtHashes:
        return cls({u: nt_password_hash(p) for u, p in passwords.items()}, expired)

    def __call__(self, user: str) -> bytes | None:
        return self.hashes.get(user)

    def expired(self, user: str) -> bool:
        return user in self.expired_users

    def change(self, user: str, new_nt_hash: bytes) -> bool:
        if user not in self.hashes or new_nt_hash == self.hashes[user]:
            return False
        self.hashes[user] = new_nt_hash
        self.expired_users.discard(user)
        return True
