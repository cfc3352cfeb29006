"""``eapkit directory test USER`` on the local directory: the record is all there is
(the LDAP rows are in test_ldap_state.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eapkit.cli import main


def test_local_user_shown_and_unknown_user_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", str(tmp_path / "eapkit.db")]
    assert main(["user", "add", "tom", "--password", "pw", "--framed-pool", "p1", *db]) == 0
    capsys.readouterr()
    assert main(["directory", "test", "tom", *db]) == 0
    out = capsys.readouterr().out
    assert "user:" in out and "tom" in out and "framed_pool=p1" in out and "usable" in out
    assert main(["user", "disable", "tom", *db]) == 0
    capsys.readouterr()
    assert main(["directory", "test", "tom", *db]) == 0
    assert "disabled" in capsys.readouterr().out
    assert main(["directory", "test", "nobody", *db]) == 1
    assert "no user nobody" in capsys.readouterr().err
