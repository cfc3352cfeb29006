"""The user directory of ``eapkit serve``: who may log in, with what, and their policy.

One SQLite table in the server's database file (the embedded default; WAL, so the
``eapkit user`` commands can change it while the server runs).  Each user has

- a salted PBKDF2 hash of the password (:mod:`eapkit.passwords`) for PAP and EAP-GTC;
- optionally the NT hash (MD4 of the UTF-16LE password, RFC 2759 §8.3) for MS-CHAPv2.
  The NT hash is password-equivalent for MS-CHAPv2: leave it out (``nt_hash=False``)
  for users who never use MS-CHAPv2;
- a second-factor requirement (``none``, ``totp``, ``yubikey``, ``webauthn``: approval
  with a security key through :mod:`eapkit.bridge`) enforced by the server;
- a :class:`~eapkit.policy.UserPolicy` for the Access-Accept.

The directory answers the narrow credential questions of :mod:`eapkit.credentials`:
``check_password`` (a :class:`~eapkit.credentials.ResponseCheck`) and ``nt_hash``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

from eapkit.credentials import Verdict
from eapkit.crypto.mschap import nt_password_hash
from eapkit.methods.base import Factor
from eapkit.passwords import DEFAULT_ITERATIONS, VerifiedCache, hash_password
from eapkit.policy import UserPolicy

__all__ = ["SECOND_FACTORS", "User", "UserDirectory"]

SECOND_FACTORS = ("none", "totp", "yubikey", "webauthn")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    nt_hash BLOB,
    second_factor TEXT NOT NULL DEFAULT 'none',
    policy TEXT NOT NULL DEFAULT '{}'
)
"""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str | None = field(default=None, repr=False)
    nt_hash: bytes | None = field(default=None, repr=False)
    second_factor: str = "none"
    policy: UserPolicy = field(default_factory=UserPolicy)


class UserDirectory:
    """Users in an SQLite file (or ``":memory:"``)."""

    def __init__(self, path: str | Path, *, cache_ttl: float = 300.0) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._cache = VerifiedCache(ttl=cache_ttl)
        with self._db() as db:
            db.execute(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    # -- administration -----------------------------------------------------------------

    def add(
        self,
        name: str,
        password: str,
        *,
        nt_hash: bool = True,
        second_factor: str = "none",
        policy: UserPolicy | None = None,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> User:
        """Create or replace a user."""
        if not name or len(name.encode()) > 253:
            raise ValueError("a user name is 1 to 253 bytes")
        if second_factor not in SECOND_FACTORS:
            raise ValueError(f"second factor is one of {', '.join(SECOND_FACTORS)}")
        user = User(
            name,
            hash_password(password, iterations=iterations),
            nt_password_hash(password) if nt_hash else None,
            second_factor,
            policy or UserPolicy(),
        )
        self._db().execute(
            "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?)",
            (
                user.name,
                user.password_hash,
                user.nt_hash,
                user.second_factor,
                json.dumps(user.policy.to_json()),
            ),
        )
        return user

    def set_policy(self, name: str, policy: UserPolicy) -> bool:
        cur = self._db().execute(
            "UPDATE users SET policy = ? WHERE name = ?", (json.dumps(policy.to_json()), name)
        )
        return cur.rowcount > 0

    def set_second_factor(self, name: str, second_factor: str) -> bool:
        if second_factor not in SECOND_FACTORS:
            raise ValueError(f"second factor is one of {', '.join(SECOND_FACTORS)}")
        cur = self._db().execute(
            "UPDATE users SET second_factor = ? WHERE name = ?", (second_factor, name)
        )
        return cur.rowcount > 0

    def delete(self, name: str) -> bool:
        return self._db().execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def list(self) -> list[User]:
        rows = self._db().execute("SELECT * FROM users ORDER BY name").fetchall()
        return [_user(r) for r in rows]

    def get(self, name: str) -> User | None:
        row = self._db().execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row) if row else None

    # -- credential interfaces -------------------------------------------------------------

    def check_password(self, user: str, password: str, now: float) -> Verdict:
        """PAP / EAP-GTC: the password alone.  Same cost for unknown users."""
        record = self.get(user)
        ok = self._cache.check(user, password, record.password_hash if record else None, now)
        if record is None:
            return Verdict.reject("unknown_user")
        if not ok:
            return Verdict.reject("bad_password")
        return Verdict(True, "ok", user, factors=frozenset({Factor.PASSWORD}))

    __call__ = check_password

    def nt_hash(self, user: str) -> bytes | None:
        """MS-CHAPv2: the user's NT hash, or None (unknown user, or none stored)."""
        record = self.get(user)
        return record.nt_hash if record else None

    def policy(self, user: str) -> UserPolicy | None:
        record = self.get(user)
        return record.policy if record and not record.policy.empty else None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _user(row: tuple[str, str | None, bytes | None, str, str]) -> User:
    name, password_hash, nt, second, policy = row
    return User(name, password_hash, nt, second, UserPolicy.from_json(json.loads(policy)))
