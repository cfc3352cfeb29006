"""Secrets at rest (issue 15), against a real ``eapkit serve`` process.

- every file a fresh ``eapkit serve --demo-user`` creates that holds a secret is 0600,
  every directory it makes 0700, the database's -wal/-shm included;
- ``eapkit serve`` warns about a secret-holding file others can read;
- a plain OTP record planted in the store is refused while sealing keys exist, and
  ``eapkit store seal`` (the documented migration) makes it usable again;
- a server started with its secrets in files or the environment shows none in ``ps``.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.store import SqliteStore
from eapkit.verify.otp import totp
from tests.conftest import free_udp_port
from tests.interop.tools import Daemon

PASSWORD = "wonderland-at-rest"
SECRET = "a-loopback-secret-for-ps"


def eapkit(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eapkit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


class Served:
    def __init__(self, workdir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.state = workdir / "var" / "lib" / "eapkit"  # missing: serve makes it
        self.db = self.state / "eapkit.db"
        self.log = workdir / "decisions.log"
        self.port = free_udp_port()
        (workdir / "demo-user").write_text(f"alice:{PASSWORD}\n")
        (workdir / "secret").write_text(SECRET + "\n")
        argv = [
            sys.executable,
            "-m",
            "eapkit",
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--db",
            str(self.db),
            "--log",
            str(self.log),
            "--methods",
            "gtc",
            *extra,
        ]
        self.daemon = Daemon(
            argv, workdir / "serve.log", ready="listening on", env=env, cwd=workdir
        )

    def probe(self, password: str) -> subprocess.CompletedProcess[str]:
        (self.workdir / "pw").write_text(password + "\n")
        return eapkit(
            "probe",
            "--server",
            f"127.0.0.1:{self.port}",
            "--secret-file",
            str(self.workdir / "secret"),
            "--method",
            "gtc",
            "--identity",
            "alice",
            "--password-file",
            str(self.workdir / "pw"),
            cwd=self.workdir,
        )

    def decisions(self) -> list[dict[str, object]]:
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.startswith("{")]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    srv = Served(
        tmp_path,
        "--secret-file",
        str(tmp_path / "secret"),
        "--demo-user-file",
        str(tmp_path / "demo-user"),
    )
    try:
        yield srv
    finally:
        srv.daemon.stop()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_serve_creates_every_secret_file_0600(served: Served) -> None:
    out = served.probe(PASSWORD)
    assert out.returncode == 0, out.stdout + out.stderr  # the db is in use: -wal exists
    files = {p.name: p for p in served.state.rglob("*")}
    for name in ("eapkit.db", "eapkit.db-wal", "eapkit.db-shm", "eapkit-store.key"):
        assert name in files, sorted(files)
    for name in ("ca.key", "server.key", "alice.key"):
        assert name in files, sorted(files)
    for path in files.values():
        if path.is_dir():
            assert mode(path) == 0o700, path
        elif path.suffix != ".pem":  # certificates are public
            assert mode(path) == 0o600, f"{path} is {mode(path):04o}"
    assert mode(served.state) == mode(served.state.parent) == 0o700
    assert "readable by others" not in served.daemon.output()


def test_ps_shows_no_secret_of_a_server_started_from_files(served: Served) -> None:
    cmdline = Path(f"/proc/{served.daemon.pid}/cmdline").read_bytes().decode()
    assert "--secret-file" in cmdline  # the right process
    assert SECRET not in cmdline and PASSWORD not in cmdline
    out = served.probe(PASSWORD)  # and the secrets did reach the server
    assert out.returncode == 0, out.stdout + out.stderr


def test_secrets_from_the_environment(tmp_path: Path) -> None:
    srv = Served(tmp_path, env={"EAPKIT_SECRET": SECRET, "EAPKIT_DEMO_USER": f"alice:{PASSWORD}"})
    try:
        cmdline = Path(f"/proc/{srv.daemon.pid}/cmdline").read_bytes().decode()
        assert SECRET not in cmdline and PASSWORD not in cmdline
        assert srv.probe(PASSWORD).returncode == 0
        assert srv.probe("guess").returncode == 1
    finally:
        srv.daemon.stop()


def test_serve_warns_about_a_world_readable_database(tmp_path: Path) -> None:
    db = tmp_path / "var" / "lib" / "eapkit" / "eapkit.db"
    db.parent.mkdir(parents=True)
    SqliteStore(db).close()
    db.chmod(0o644)
    srv = Served(tmp_path, "--secret-file", str(tmp_path / "secret"))
    try:
        out = srv.daemon.output()
        assert f"chmod 600 {db}" in out and "readable by others" in out
        warned = [x for x in out.splitlines() if "readable by others" in x]
        # one line per loose file; SQLite gave the -wal/-shm the db's loose mode
        assert len(warned) == len({x.split()[3] for x in warned}) >= 1
        assert any(f"chmod 600 {db}-wal" in x for x in warned) or not Path(f"{db}-wal").exists()
    finally:
        srv.daemon.stop()


def _plant_plain(db: Path, user: str) -> bytes:
    """Replace ``user``'s sealed OTP record with a plain one carrying a known seed, as
    someone who can write the store but has no key would."""
    store = SqliteStore(db)
    key = f"otp:cred:{user}"
    raw = store.get(key)
    assert raw is not None
    record = json.loads(raw)
    seed = b"planted-seed-0123456"
    del record["sealed"]
    record["plain"] = base64.b64encode(seed).decode()
    store.put(key, json.dumps(record, sort_keys=True).encode())
    store.close()
    return seed


def test_planted_plain_record_refused_until_sealed(served: Served) -> None:
    enrolled = eapkit(
        "enroll", "totp", "alice", "--db", str(served.db), "--no-terminal", cwd=served.workdir
    )
    assert enrolled.returncode == 0, enrolled.stderr
    seed = _plant_plain(served.db, "alice")
    code = totp(seed, time.time())
    out = served.probe(PASSWORD + code)
    assert out.returncode == 1, out.stdout + out.stderr
    last = served.decisions()[-1]
    assert last["result"] == "reject" and last["reason"] == "record_not_sealed", last

    migrated = eapkit("store", "seal", "--db", str(served.db), cwd=served.workdir)
    assert migrated.returncode == 0, migrated.stderr
    assert "1 plain record(s) sealed" in migrated.stdout
    raw = SqliteStore(served.db).get("otp:cred:alice")
    assert raw is not None and b"plain" not in raw
    audit = [d for d in served.decisions() if d.get("action") == "records_sealed"]
    assert audit == [] or audit[-1]["count"] == 1
    out = served.probe(PASSWORD + totp(seed, time.time()))
    assert out.returncode == 0, out.stdout + out.stderr
