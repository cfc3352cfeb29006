"""The server's view of the user directory: records reused for a second, and never
stale for changes made through the same object."""

from __future__ import annotations

import time
from pathlib import Path

from eapkit.serve import ServedUsers
from eapkit.users import UserDirectory


def test_records_are_reused_then_reread(tmp_path: Path) -> None:
    db = tmp_path / "eapkit.db"
    served = ServedUsers(db, record_ttl=0.2)
    admin = UserDirectory(db)  # another process: `eapkit user ...`
    admin.add("alice", "wonderland", iterations=1000)
    first = served.get("alice")
    assert first is not None
    admin.delete("alice")
    assert served.get("alice") == first  # within the TTL: the record read before
    time.sleep(0.25)
    assert served.get("alice") is None
    assert served.check_password("alice", "wonderland", time.time()).reason == "unknown_user"


def test_own_changes_are_seen_at_once(tmp_path: Path) -> None:
    served = ServedUsers(tmp_path / "eapkit.db", record_ttl=60)
    assert served.get("bob") is None
    served.add("bob", "pw-one", iterations=1000, second_factor="totp")
    assert served.check_password("bob", "pw-one", 0).ok
    assert served.set_second_factor("bob", "none")
    user = served.get("bob")
    assert user is not None and user.second_factor == "none"
    assert served.delete("bob")
    assert served.get("bob") is None
