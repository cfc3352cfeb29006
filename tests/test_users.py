from __future__ import annotations

from pathlib import Path

import pytest

from eapkit.crypto.mschap import nt_password_hash
from eapkit.directory import LocalDirectory
from eapkit.policy import UserPolicy


def test_add_check_list_delete(tmp_path: Path) -> None:
    users = LocalDirectory(tmp_path / "eapkit.db")
    policy = UserPolicy(session_timeout=3600, framed_ip="10.9.0.7")
    users.add("alice", "wonderland", policy=policy, iterations=1000)
    users.add("bob", "builder", nt_hash=False, second_factor="totp", iterations=1000)
    assert users.check_password("alice", "wonderland", 0).ok
    assert users.check_password("alice", "wrong", 0).reason == "bad_password"
    assert users.check_password("carol", "x", 0).reason == "unknown_user"
    assert users.nt_hash("alice") == nt_password_hash("wonderland")
    assert users.nt_hash("bob") is None and users.nt_hash("carol") is None
    assert users.policy("alice") == policy and users.policy("bob") is None
    assert [u.name for u in users.list()] == ["alice", "bob"]
    assert users.get("bob") is not None and users.get("bob").second_factor == "totp"  # type: ignore[union-attr]
    # a second handle on the same file sees the same users (the CLI and the server)
    assert LocalDirectory(tmp_path / "eapkit.db").check_password("alice", "wonderland", 0).ok
    assert users.delete("bob") and not users.delete("bob")
    assert "wonderland" not in repr(users.get("alice"))


def test_bad_input_is_refused(tmp_path: Path) -> None:
    users = LocalDirectory(":memory:")
    with pytest.raises(ValueError):
        users.add("", "x", iterations=1000)
    with pytest.raises(ValueError):
        users.add("a", "x", second_factor="sms", iterations=1000)
    with pytest.raises(ValueError):
        UserPolicy(framed_ip="not an address")
