"""The local directory: users in one SQLite table of the server's database file.

The embedded default of ``eapkit serve`` (WAL, so ``eapkit user ...`` can change it
while the server runs; the next login sees the change).  The file format is the one
``eapkit.users`` wrote, so existing databases keep working.  The contract is
:mod:`eapkit.directory.base`.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from pathlib import Path

from eapkit.directory.base import RecordDirectory, User, check_second_factor
from eapkit.policy import UserPolicy
from eapkit.private_files import create_private

__all__ = ["LocalDirectory"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    nt_hash BLOB,
    second_factor TEXT NOT NULL DEFAULT 'none',
    policy TEXT NOT NULL DEFAULT '{}',
    disabled INTEGER NOT NULL DEFAULT 0
)
"""


class LocalDirectory(RecordDirectory):
    """Users in an SQLite file (or ``":memory:"``); one connection per thread."""

    def __init__(self, path: str | Path, *, cache_ttl: float = 300.0) -> None:
        super().__init__(cache_ttl=cache_ttl)
        self.path = str(path)
        self._local = threading.local()
        with self._db() as db:
            db.execute(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(users)")}
            if "disabled" not in columns:  # a database from before the flag
                db.execute("ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0")

    def _db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            create_private(self.path)  # 0600 before SQLite makes it; -wal/-shm follow
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def get(self, name: str) -> User | None:
        row = (
            self._db()
            .execute(
                "SELECT name, password_hash, nt_hash, second_factor, policy, disabled FROM users"
                " WHERE name = ?",
                (name,),
            )
            .fetchone()
        )
        return _user(row) if row else None

    def list(self) -> list[User]:
        rows = (
            self._db()
            .execute(
                "SELECT name, password_hash, nt_hash, second_factor, policy, disabled FROM users"
                " ORDER BY name"
            )
            .fetchall()
        )
        return [_user(r) for r in rows]

    def _write(self, user: User) -> None:
        self._db().execute(
            "INSERT OR REPLACE INTO users"
            " (name, password_hash, nt_hash, second_factor, policy, disabled)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                user.name,
                user.password_hash,
                user.nt_hash,
                user.second_factor,
                json.dumps(user.policy.to_json()),
                int(user.disabled),
            ),
        )

    # One UPDATE each, not read-modify-write: two admins changing different fields of
    # one user at once both win.
    def set_policy(self, name: str, policy: UserPolicy) -> bool:
        cur = self._db().execute(
            "UPDATE users SET policy = ? WHERE name = ?", (json.dumps(policy.to_json()), name)
        )
        return cur.rowcount > 0

    def set_second_factor(self, name: str, second_factor: str) -> bool:
        check_second_factor(second_factor)
        cur = self._db().execute(
            "UPDATE users SET second_factor = ? WHERE name = ?", (second_factor, name)
        )
        return cur.rowcount > 0

    def set_disabled(self, name: str, disabled: bool) -> bool:
        cur = self._db().execute(
            "UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name)
        )
        return cur.rowcount > 0

    def delete(self, name: str) -> bool:
        return self._db().execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


@functools.lru_cache(maxsize=256)
def _policy(text: str) -> UserPolicy:
    """The policy column parsed (UserPolicy is frozen, so one object serves every read of
    the same text: most users share ``{}``; issue 21, no JSON parse per request)."""
    return UserPolicy.from_json(json.loads(text))


def _user(row: tuple[str, str | None, bytes | None, str, str, int]) -> User:
    name, password_hash, nt, second, policy, disabled = row
    return User(name, password_hash, nt, second, _policy(policy), bool(disabled))
