"""The stored directory: users as records in a :class:`~eapkit.store.base.Store`.

With ``store = "redis://..."`` and ``directory = "store"`` every node of a cluster reads
the same users, as it reads the same replay counters.  Layout (one key space with the
second factors' records, hence the prefix):

``directory:user:<name>``
    the user's record, JSON: ``{"name", "password_hash", "nt_hash" (hex or null),
    "second_factor", "policy", "disabled" (only when true)}``; the only key a login reads;
``directory:index``
    the sorted JSON list of names, for ``eapkit user list``.

Changing one field rewrites the whole record (last writer wins, as for every record in
a store).  The record under a user's key is the truth: a login never reads the index,
which is rewritten only when a name comes or goes, so two admins adding users at the
same instant may leave one name out of the listing, never out of the directory.
The contract is :mod:`eapkit.directory.base`.
"""

from __future__ import annotations

import json
from typing import Any

from eapkit.directory.base import RecordDirectory, User
from eapkit.policy import UserPolicy
from eapkit.store.base import Store

__all__ = ["StoredDirectory"]

_USER = "directory:user:"
_INDEX = "directory:index"


class StoredDirectory(RecordDirectory):
    """Users in ``store``; :meth:`close` closes the store only if ``owns_store``."""

    def __init__(self, store: Store, *, owns_store: bool = False, cache_ttl: float = 300.0) -> None:
        super().__init__(cache_ttl=cache_ttl)
        self.store = store
        self.owns_store = owns_store

    def close(self) -> None:
        if self.owns_store:
            self.store.close()

    def get(self, name: str) -> User | None:
        raw = self.store.get(_USER + name)
        return _decode(raw) if raw is not None else None

    def list(self) -> list[User]:
        users = (self.get(name) for name in _index(self.store))
        return [u for u in users if u is not None]

    def _write(self, user: User) -> None:
        self.store.put(_USER + user.name, _encode(user))
        names = _index(self.store)
        if user.name not in names:
            _set_index(self.store, [*names, user.name])

    def delete(self, name: str) -> bool:
        found = self.store.delete(_USER + name)
        names = _index(self.store)
        if name in names:
            _set_index(self.store, [n for n in names if n != name])
        return found


def _index(store: Store) -> list[str]:
    raw = store.get(_INDEX)
    return [str(n) for n in json.loads(raw)] if raw is not None else []


def _set_index(store: Store, names: list[str]) -> None:
    store.put(_INDEX, json.dumps(sorted(names)).encode())


def _encode(user: User) -> bytes:
    record: dict[str, Any] = {
        "name": user.name,
        "password_hash": user.password_hash,
        "nt_hash": user.nt_hash.hex() if user.nt_hash is not None else None,
        "second_factor": user.second_factor,
        "policy": user.policy.to_json(),
    }
    if user.disabled:
        record["disabled"] = True
    return json.dumps(record, separators=(",", ":")).encode()


def _decode(raw: bytes) -> User:
    data = json.loads(raw)
    nt = data.get("nt_hash")
    return User(
        str(data["name"]),
        data.get("password_hash"),
        bytes.fromhex(nt) if nt else None,
        str(data.get("second_factor", "none")),
        UserPolicy.from_json(data.get("policy") or {}),
        bool(data.get("disabled", False)),
    )
