"""LocalDirectory's per-request read stays lean (issue 21): the policy column is parsed
once per distinct text, not on every read, and a changed policy is still seen at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eapkit.directory import local
from eapkit.directory.local import LocalDirectory
from eapkit.policy import UserPolicy


def test_policy_text_is_parsed_once_and_changes_are_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = LocalDirectory(tmp_path / "users.db")
    users.add("alice", "wonderland-pass", iterations=1000)
    users.add("bob", "wonderland-pass", iterations=1000)
    local._policy.cache_clear()
    parses: list[str] = []
    loads = json.loads

    def counting(text: str) -> object:
        parses.append(text)
        return loads(text)

    monkeypatch.setattr(json, "loads", counting)
    for _ in range(5):
        for name in ("alice", "bob"):
            record = users.get(name)
            assert record is not None and record.policy.empty
    assert len(parses) == 1  # both users share "{}"
    users.set_policy("alice", UserPolicy(session_timeout=600))
    record = users.get("alice")  # the next read sees the change
    assert record is not None and record.policy.session_timeout == 600
    bob = users.get("bob")
    assert bob is not None and bob.policy.empty
    assert len(parses) == 2
    users.close()
