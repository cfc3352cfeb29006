"""The Directory contract (eapkit.directory.base), run against the local SQLite
directory and the Store-backed one on memory, SQLite and a real Redis store; each also
behind RequestScoped, as the server uses them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.crypto.mschap import nt_password_hash
from eapkit.directory import (
    Directory,
    LocalDirectory,
    RequestScoped,
    StoredDirectory,
    open_directory,
    request_scope,
)
from eapkit.errors import ConfigError
from eapkit.policy import UserPolicy
from eapkit.store import MemoryStore, SqliteStore

KINDS = [
    "local",
    "memory-store",
    "sqlite-store",
    pytest.param("redis-store", marks=pytest.mark.interop),
    "scoped-local",
    "scoped-memory-store",
]


def make(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Directory:
    if kind.startswith("scoped-"):
        return RequestScoped(make(kind.removeprefix("scoped-"), tmp_path, request))
    if kind == "local":
        return LocalDirectory(tmp_path / "eapkit.db")
    if kind == "memory-store":
        return StoredDirectory(MemoryStore(), owns_store=True)
    if kind == "sqlite-store":
        return StoredDirectory(SqliteStore(tmp_path / "store.db"), owns_store=True)
    from eapkit.store.redis_store import RedisStore

    url = request.getfixturevalue("redis_url")
    return StoredDirectory(RedisStore(url, prefix=f"t{uuid.uuid4().hex}:"), owns_store=True)


@pytest.fixture(params=KINDS)
def directory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Directory]:
    d = make(request.param, tmp_path, request)
    yield d
    d.close()


def test_users_round_trip(directory: Directory) -> None:
    policy = UserPolicy(session_timeout=3600, framed_ip="10.0.0.7", klass=b"\x01vpn")
    directory.add("alice", "wonderland", policy=policy, iterations=1000)
    directory.add("bob", "builder", nt_hash=False, second_factor="totp", iterations=1000)
    assert directory.check_password("alice", "wonderland", 0).ok
    assert directory.check_password("alice", "wrong", 0).reason == "bad_password"
    assert directory.check_password("carol", "x", 0).reason == "unknown_user"
    assert directory.nt_hash("alice") == nt_password_hash("wonderland")
    assert directory.nt_hash("bob") is None and directory.nt_hash("carol") is None
    assert directory.policy("alice") == policy and directory.policy("bob") is None
    assert [u.name for u in directory.list()] == ["alice", "bob"]
    bob = directory.get("bob")
    assert bob is not None and bob.second_factor == "totp"
    assert "wonderland" not in repr(directory.get("alice"))
    assert directory.delete("bob") and not directory.delete("bob")
    assert [u.name for u in directory.list()] == ["alice"]


def test_verify_password_takes_the_record_read(directory: Directory) -> None:
    directory.add("alice", "wonderland", iterations=1000)
    record = directory.get("alice")
    assert directory.verify_password(record, "alice", "wonderland", 0).ok
    assert directory.verify_password(record, "alice", "nope", 0).reason == "bad_password"
    assert directory.verify_password(None, "alice", "wonderland", 0).reason == "unknown_user"


def test_updates(directory: Directory) -> None:
    directory.add("alice", "wonderland", iterations=1000)
    assert directory.set_second_factor("alice", "webauthn")
    assert directory.set_policy("alice", UserPolicy(framed_pool="staff"))
    alice = directory.get("alice")
    assert alice is not None and alice.second_factor == "webauthn"
    assert alice.policy == UserPolicy(framed_pool="staff")
    assert directory.check_password("alice", "wonderland", 0).ok  # the password kept
    assert not directory.set_second_factor("nobody", "totp")
    assert not directory.set_policy("nobody", UserPolicy())
    # replacing a user keeps one entry
    directory.add("alice", "new", iterations=1000)
    assert [u.name for u in directory.list()] == ["alice"]
    assert directory.check_password("alice", "new", 0).ok


def test_bad_input_is_refused(directory: Directory) -> None:
    with pytest.raises(ValueError):
        directory.add("", "x", iterations=1000)
    with pytest.raises(ValueError):
        directory.add("a", "x", second_factor="sms", iterations=1000)
    directory.add("a", "x", iterations=1000)
    with pytest.raises(ValueError):
        directory.set_second_factor("a", "sms")


def test_a_request_reads_once_and_sees_its_own_writes(directory: Directory) -> None:
    scoped = RequestScoped.around(directory)
    scoped.add("alice", "wonderland", iterations=1000)
    with request_scope():
        assert scoped.check_password("alice", "wonderland", 0).ok
        assert scoped.set_second_factor("alice", "totp")
        alice = scoped.get("alice")
        assert alice is not None and alice.second_factor == "totp"


def test_two_handles_share_the_users(tmp_path: Path) -> None:
    """The server and ``eapkit user ...`` open the same directory from the config."""
    store_url = f"sqlite:{tmp_path / 'store.db'}"
    admin = open_directory("store", tmp_path / "eapkit.db", store_url)
    admin.add("alice", "wonderland", iterations=1000)
    server = open_directory("store", tmp_path / "eapkit.db", store_url)
    assert server.check_password("alice", "wonderland", 0).ok
    assert not open_directory("local", tmp_path / "eapkit.db").list()  # a different place
    with pytest.raises(ConfigError):
        open_directory("ldap", tmp_path / "eapkit.db")
    admin.close()
    server.close()
