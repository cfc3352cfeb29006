"""``eapkit user add|set``, enrollment audit lines and the QR file (issue 22)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from eapkit.cli import main
from eapkit.directory import open_directory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def db_args(tmp_path: Path) -> list[str]:
    return ["--db", str(tmp_path / "eapkit.db")]


def test_user_add_refuses_an_existing_user_and_keeps_its_factor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_args(tmp_path)
    assert run(capsys, "user", "add", "tom", "--password", "pw-1", *db)[0] == 0
    assert run(capsys, "enroll", "recovery", "tom", "--count", "1", *db)[0] == 0
    users = open_directory("local", tmp_path / "eapkit.db")
    assert users.set_second_factor("tom", "totp")
    code, _, err = run(
        capsys, "user", "add", "tom", "--password", "pw-2", "--framed-ip", "10.0.0.9", *db
    )
    assert code == 2 and "exists" in err and "--replace" in err and "Traceback" not in err
    user = open_directory("local", tmp_path / "eapkit.db").get("tom")
    assert user is not None and user.second_factor == "totp"
    assert (
        open_directory("local", tmp_path / "eapkit.db")
        .check_password("tom", "pw-1", time.time())
        .ok
    )


def test_user_add_replace_says_what_is_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_args(tmp_path)
    run(capsys, "user", "add", "tom", "--password", "pw-1", "--session-timeout", "600", *db)
    open_directory("local", tmp_path / "eapkit.db").set_second_factor("tom", "totp")
    code, out, _ = run(capsys, "user", "add", "tom", "--password", "pw-2", "--replace", *db)
    assert code == 0
    assert "second factor totp -> none" in out and "session_timeout" in out


def test_user_set_changes_attributes_never_factors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_args(tmp_path)
    path = tmp_path / "eapkit.db"
    run(capsys, "user", "add", "tom", "--password", "pw-1", "--framed-pool", "p1", *db)
    open_directory("local", path).set_second_factor("tom", "totp")
    code, out, _ = run(
        capsys,
        "user",
        "set",
        "tom",
        "--session-timeout",
        "3600",
        "--framed-ip",
        "10.1.2.3",
        "--class",
        "vpn",
        *db,
    )
    assert code == 0 and "policy changed" in out
    user = open_directory("local", path).get("tom")
    assert user is not None and user.second_factor == "totp"
    assert user.policy.session_timeout == 3600 and user.policy.framed_ip == "10.1.2.3"
    assert user.policy.framed_pool == "p1" and user.policy.klass == b"vpn"  # kept / set
    pw = tmp_path / "pw"
    pw.write_text("pw-2\n")
    code, out, _ = run(capsys, "user", "set", "tom", "--password-file", str(pw), *db)
    assert code == 0 and "password" in out
    users = open_directory("local", path)
    user = users.get("tom")
    assert user is not None and user.second_factor == "totp" and user.policy.session_timeout == 3600
    assert user.nt_hash is not None
    assert users.check_password("tom", "pw-2", time.time()).ok
    assert not users.check_password("tom", "pw-1", time.time()).ok


def test_user_set_unknown_user_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "user", "set", "nobody", "--session-timeout", "5", *db_args(tmp_path)
    )
    assert code == 2 and err.startswith("eapkit: no user nobody")


def test_user_add_into_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "var" / "lib" / "eapkit" / "eapkit.db"
    code, _, err = run(capsys, "user", "add", "tom", "--password", "pw", "--db", str(db))
    assert code == 0, err
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_admin_actions_go_to_the_decision_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log" / "decisions.log"
    config = tmp_path / "eapkit.toml"
    config.write_text(f'db = "eapkit.db"\nlog = "{log}"\n')
    cfg = ["--config", str(config)]
    assert run(capsys, "user", "add", "tom", "--password", "pw", *cfg)[0] == 0
    code, out, err = run(
        capsys, "enroll", "totp", "tom", "--no-terminal", "--png", str(tmp_path / "q.png"), *cfg
    )
    assert code == 0 and out.startswith("otpauth://")
    assert "otp_enrolled" not in err and "user_added" not in err  # not on stderr unless asked
    assert run(capsys, "user", "del", "tom", *cfg)[0] == 0
    events = [json.loads(x) for x in log.read_text().splitlines()]
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700  # made by the first command
    names = [e.get("action") or e.get("event") for e in events]
    assert names == ["user_added", "otp_enrolled", "user_deleted", "factors_removed"]
    assert all("secret" not in json.dumps(e) for e in events)
    assert stat.S_IMODE((tmp_path / "q.png").stat().st_mode) == 0o600
    code, _, err = run(capsys, "user", "add", "ann", "--password", "pw", "--audit-stderr", *cfg)
    assert code == 0 and "user_added" in err


def test_password_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EAPKIT_PASSWORD", "from-env")
    assert run(capsys, "user", "add", "tom", *db_args(tmp_path))[0] == 0
    assert (
        open_directory("local", tmp_path / "eapkit.db")
        .check_password("tom", "from-env", time.time())
        .ok
    )
