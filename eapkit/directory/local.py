"""The local directory: users in one SQLite table of the server's database file.

The embedded default of ``eapkit serve`` (WAL, so ``eapkit user ...`` can change it
while the server runs; the next login sees the change).  The file format is the one
``eapkit.users`` wrote, so existing databases keep working.  The contract is
:mod:`eapkit.directory.base`.
"""

from __future__ import annotations

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
    policy TEXT NOT NULL DEFAULT '{}'
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
        row = self._db().execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row) if row else None

    def list(self) -> list[User]:
        rows = self._db().execute("SELECT * FROM users ORDER BY name").fetchall()
        return [_user(r) for r in rows]

    def _write(self, user: User) -> None:
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

    def delete(self, name: str) -> bool:
        return self._db().execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _user(row: tuple[str, str | None, bytes | None, str, str]) -> User:
    name, password_hash, nt, second, policy = row
    return User(name, password_hash, nt, second, UserPolicy.from_json(json.loads(policy)))
