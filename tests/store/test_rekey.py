"""Sealing-key rotation (eapkit.store.rekey) on SQLite, Redis and memory: every record
re-sealed under the newest key, resumable after an interruption, and safe while a
verifier runs (compare-and-swap: a record rewritten meanwhile is not overwritten, and
no counter update is lost)."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.bypass import BypassCodes
from eapkit.store.memory import MemoryStore
from eapkit.store.records import SealedRecords
from eapkit.store.rekey import CURSOR, SwapStore, key_census, rekey
from eapkit.store.sealing import Sealer
from eapkit.store.sqlite import SqliteStore
from eapkit.verify.otp import OtpCredential, OtpVerifier, totp

K1, K2 = os.urandom(32), os.urandom(32)
OLD = Sealer({"k1": K1})
NEW = Sealer({"k2": K2, "k1": K1})  # k2 first: current
NOW = 1_800_000_000.0


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SwapStore]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        s = SqliteStore(tmp_path / "s.db")
        yield s
        s.close()
    else:
        from eapkit.store.redis_store import RedisStore

        url = request.getfixturevalue("redis_url")
        r = RedisStore(url, prefix=f"rk{uuid.uuid4().hex}:")
        yield r
        r.close()


def fill(store: SwapStore, n: int) -> SealedRecords:
    records = SealedRecords(store, OLD)  # type: ignore[arg-type]
    for i in range(n):
        records.write(f"otp:cred:u{i:03}", {"v": 1, "n": i}, f"secret-{i}".encode())
    store.put("bypass:index", b"{}")  # a record without a secret
    return records


def test_reseals_everything_and_old_key_can_go(store: SwapStore) -> None:
    fill(store, 25)
    assert key_census(store) == {"k1": 25}
    report = rekey(store, NEW, batch=7)
    assert (report.resealed, report.current, report.other, report.failed) == (25, 0, 1, [])
    assert key_census(store) == {"k2": 25}
    assert store.get(CURSOR) is None
    # the old key can be dropped: every record opens with the new key alone
    only_new = SealedRecords(store, Sealer({"k2": K2}))  # type: ignore[arg-type]
    for i in range(25):
        key = f"otp:cred:u{i:03}"
        raw = only_new.read(key)
        assert raw is not None
        fields, secret = only_new.open(key, raw)
        assert secret == f"secret-{i}".encode() and fields["n"] == i
    again = rekey(store, NEW)
    assert (again.resealed, again.current) == (0, 25)


class Interrupted(Exception):
    pass


def test_interrupted_run_resumes_after_the_cursor(store: SwapStore) -> None:
    fill(store, 30)
    batches = 0

    def stop_after_two(_: object) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise Interrupted  # what Ctrl-C does between two batches

    with pytest.raises(Interrupted):
        rekey(store, NEW, batch=10, after_batch=stop_after_two)
    # two batches of ten keys in key order: bypass:index, u000 .. u018
    assert store.get(CURSOR) == b"otp:cred:u018"
    assert key_census(store) == {"k1": 11, "k2": 19}
    report = rekey(store, NEW, batch=10)
    assert report.resumed_after == "otp:cred:u018"
    assert report.resealed == 11 and report.current == 0  # the first 19 were not re-read
    assert key_census(store) == {"k2": 30}


KILLED_MID_BATCH = """
import os, signal, sys
from eapkit.store.rekey import rekey
from eapkit.store.sealing import Sealer
from eapkit.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
new = Sealer.from_config(sys.argv[2])
swap, seen = store.swap, [0]
def swap_then_die(key, old, new_value, *rest):
    done = swap(key, old, new_value, *rest)
    seen[0] += 1
    if seen[0] == 15:  # the middle of the second batch, no cursor written for it
        os.kill(os.getpid(), signal.SIGKILL)
    return done
store.swap = swap_then_die
rekey(store, new, batch=10)
"""


def test_killed_with_sigkill_mid_batch_then_run_again(tmp_path: Path) -> None:
    """kill -9 (no handler runs, no cursor written for the batch in flight): every
    record still opens, and the next run finishes the rotation."""
    import base64
    import signal
    import subprocess
    import sys

    path = tmp_path / "s.db"
    store = SqliteStore(path)
    fill(store, 30)
    spec = ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in (("k2", K2), ("k1", K1)))
    run = subprocess.run(
        [sys.executable, "-c", KILLED_MID_BATCH, str(path), spec],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert store.get(CURSOR) == b"otp:cred:u008"  # the first batch only
    census = key_census(store)
    assert census == {"k1": 15, "k2": 15}
    records = SealedRecords(store, NEW)
    for i in range(30):
        key = f"otp:cred:u{i:03}"
        raw = store.get(key)
        assert raw is not None and records.open(key, raw)[1] == f"secret-{i}".encode()
    report = rekey(store, NEW, batch=10)
    assert report.resumed_after == "otp:cred:u008"
    assert (report.resealed, report.failed) == (15, [])
    assert key_census(store) == {"k2": 30} and store.get(CURSOR) is None
    store.close()


TWO_AT_ONCE = """
import sys
from eapkit.store.rekey import rekey
from eapkit.store.sealing import Sealer
from eapkit.store.sqlite import SqliteStore
report = rekey(SqliteStore(sys.argv[1]), Sealer.from_config(sys.argv[2]), batch=5)
print(report.resealed, len(report.failed))
"""


def test_two_rekeys_at_once_on_one_database(tmp_path: Path) -> None:
    """Two operators run ``eapkit store rekey`` at once (two processes, one SQLite
    file): every record ends under the new key exactly once re-sealed, none fails."""
    import base64
    import subprocess
    import sys

    path = tmp_path / "s.db"
    store = SqliteStore(path)
    fill(store, 120)
    spec = ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in (("k2", K2), ("k1", K1)))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_AT_ONCE, str(path), spec],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outs]
    resealed, failed = zip(*(map(int, out.split()) for out, _ in outs), strict=True)
    assert failed == (0, 0)
    assert sum(resealed) == 120  # each record once: the loser of a swap finds it current
    assert key_census(store) == {"k2": 120}
    records = SealedRecords(store, NEW)
    for i in range(120):
        key = f"otp:cred:u{i:03}"
        raw = store.get(key)
        assert raw is not None and records.open(key, raw)[1] == f"secret-{i}".encode()
    store.close()


def test_a_record_rewritten_meanwhile_is_not_overwritten(store: SwapStore) -> None:
    """Between the read and the swap a re-enrollment writes a new secret: the swap
    fails, the record is read again, and the new secret survives re-sealed."""
    records = fill(store, 1)
    key = "otp:cred:u000"
    real_swap = store.swap
    raced = False

    def swap_after_a_write(k: str, old: bytes, new: bytes) -> bool:
        nonlocal raced
        if not raced:
            raced = True
            records.write(key, {"v": 1, "n": 99}, b"re-enrolled")
        return real_swap(k, old, new)

    store.swap = swap_after_a_write  # type: ignore[method-assign,assignment]
    report = rekey(store, NEW)
    assert report.raced == 1 and report.resealed == 1
    raw = store.get(key)
    assert raw is not None
    fields, secret = SealedRecords(store, NEW).open(key, raw)  # type: ignore[arg-type]
    assert (fields["n"], secret) == (99, b"re-enrolled")
    assert key_census(store) == {"k2": 1}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_verifier_running_in_another_thread_loses_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """TOTP logins (each advancing its user's replay counter) run while the rotation
    re-seals the same records: every login is accepted, every counter is where the
    logins left it, and every record ends under the new key."""
    if backend == "sqlite":
        store: SwapStore = SqliteStore(tmp_path / "s.db")
        other: SwapStore = SqliteStore(tmp_path / "s.db")  # another connection
    else:
        from eapkit.store.redis_store import RedisStore

        prefix = f"rk{uuid.uuid4().hex}:"
        url = request.getfixturevalue("redis_url")
        store, other = RedisStore(url, prefix=prefix), RedisStore(url, prefix=prefix)
    users = [f"u{i:02}" for i in range(40)]
    secrets = {u: os.urandom(20) for u in users}
    old_verifier = OtpVerifier(store, OLD)  # type: ignore[arg-type]
    for u in users:
        old_verifier.enroll(u, OtpCredential(secrets[u]), NOW - 1000)
    verifier = OtpVerifier(other, NEW)  # type: ignore[arg-type]
    steps = 6
    results: list[str] = []

    def logins() -> None:
        for k in range(steps):
            t = NOW + 30 * k
            for u in users:
                verifier.forget(u)  # read the record each time, mid-rotation
                results.append(verifier.verify(u, totp(secrets[u], t), t).reason)

    worker = threading.Thread(target=logins)
    worker.start()
    report = rekey(store, NEW, batch=3)
    worker.join()
    assert results == ["ok"] * (steps * len(users))
    assert report.resealed == len(users) and report.failed == []
    assert key_census(store) == {"k2": len(users)}
    for u in users:  # a replay of the last accepted step is still refused
        t = NOW + 30 * (steps - 1)
        assert verifier.verify(u, totp(secrets[u], t), t).reason == "replayed"


def test_bypass_records_are_resealed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    codes = BypassCodes(store, OLD)
    _, code = codes.issue("tom", by="ada", reason="r", ttl=60.0, uses=1, now=NOW)
    rekey(store, NEW)
    assert key_census(store) == {"k2": 1}
    assert BypassCodes(store, Sealer({"k2": K2})).use("tom", code, NOW).ok


def test_plain_and_unopenable_records_are_reported(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    fill(store, 2)
    store.put("otp:cred:plain", json.dumps({"v": 1, "plain": "c2VjcmV0"}).encode())
    SealedRecords(store, Sealer({"k9": os.urandom(32)})).write("otp:cred:foreign", {}, b"x")
    report = rekey(store, NEW)
    assert report.plain == 1 and report.failed == ["otp:cred:foreign"]
    assert "1 plain, 1 failed" in report.summary()


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.binary(max_size=40), max_size=12))
def test_any_records_rekey_without_error(records: dict[str, bytes]) -> None:
    store = MemoryStore()
    sealed = SealedRecords(store, OLD)
    for i, (name, secret) in enumerate(records.items()):
        if i % 2:
            sealed.write(name, {"i": i}, secret)
        else:
            store.put(name, secret)  # arbitrary bytes: not a record with a secret
    rekey(store, NEW, batch=4)
    assert set(key_census(store)) <= {"k2"}
    for i, (name, secret) in enumerate(records.items()):
        raw = store.get(name)
        assert raw is not None
        if i % 2:
            assert SealedRecords(store, NEW).open(name, raw)[1] == secret
        else:
            assert raw == secret


def test_store_rekey_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64

    from eapkit.cli import main

    db = str(tmp_path / "eapkit.db")
    k1 = "k1:" + base64.b64encode(K1).decode()
    k2 = "k2:" + base64.b64encode(K2).decode()
    monkeypatch.setenv("EAPKIT_STORE_KEYS", k1)
    monkeypatch.setenv("EAPKIT_PASSWORD", "pencil")
    assert main(["user", "add", "tom", "--db", db]) == 0
    assert main(["enroll", "totp", "tom", "--no-terminal", "--db", db]) == 0
    monkeypatch.setenv("EAPKIT_STORE_KEYS", f"{k2},{k1}")
    capsys.readouterr()
    assert main(["store", "rekey", "--verify", "--db", db]) == 1
    assert "old key(s) still needed: k1" in capsys.readouterr().out
    assert main(["store", "rekey", "--db", db, "--audit-stderr"]) == 0
    out, err = capsys.readouterr()
    assert "1 re-sealed" in out and "older keys can be dropped" in out
    assert '"event": "rekey"' in err
    monkeypatch.setenv("EAPKIT_STORE_KEYS", k2)  # k1 dropped: everything still opens
    assert main(["store", "rekey", "--verify", "--db", db]) == 0
    capsys.readouterr()
    assert main(["verify", "tom", "000000", "--db", db]) == 1
    assert "refused: bad_code" in capsys.readouterr().out  # the record opened with k2 alone


def _spec(*keys: tuple[str, bytes]) -> str:
    import base64

    return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in keys)


def test_rekey_while_serve_accepts_logins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/operating.md's rotation against a running ``eapkit serve``: with ``k2,k1``
    configured, ``eapkit store rekey`` re-seals the TOTP records while PAP logins
    (password + a fresh code, each user once) keep coming; none is refused, and after
    the run serve restarted with ``k2`` alone still accepts logins."""
    import subprocess
    import sys
    import time

    from eapkit.directory import LocalDirectory
    from eapkit.second_factor import SecondFactors
    from tests.security.serving import Serve

    work = tmp_path / "serve"
    work.mkdir()
    db = work / "eapkit.db"
    users = LocalDirectory(db)
    store = SqliteStore(db)
    second = SecondFactors(users, store, OLD)
    seeds: dict[str, bytes] = {}
    filler = SealedRecords(store, OLD)
    for i in range(60):
        name = f"u{i:03}"
        users.add(name, "pencil", second_factor="totp", iterations=1000)
        seeds[name] = os.urandom(20)
        second.totp.enroll(name, OtpCredential(seeds[name]), time.time())
        # sealed records sorting after each user's, so the run reaches the users'
        # records one by one over its whole length, not all at once
        for j in range(25):
            filler.write(f"otp:cred:{name}~{j:02}", {"v": 1}, b"filler")
    enrolled = key_census(store)
    assert enrolled == {"k1": 60 * 26}
    store.close()

    pending = list(seeds)
    replies: list[tuple[str, int]] = []

    def login(s: Serve) -> None:
        name = pending.pop(0)
        replies.append((name, s.pap(name, "pencil" + totp(seeds[name], time.time())).code))

    monkeypatch.setenv("EAPKIT_STORE_KEYS", _spec(("k2", K2), ("k1", K1)))
    with Serve(work) as s:
        login(s)  # serve works before the run
        run = subprocess.Popen(
            [sys.executable, "-m", "eapkit", "store", "rekey", "--db", str(db), "--batch", "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=work,
        )
        during = 0
        while run.poll() is None and len(pending) > 10:
            login(s)
            during += 1
        out, err = run.communicate(timeout=120)
        login(s)  # and after it
    assert run.returncode == 0, err
    assert f"{60 * 26} re-sealed" in out and "0 failed" in out, out
    assert during >= 5, f"only {during} logins overlapped the rekey: {out}"
    assert [name for name, code in replies if code != 2] == [], replies

    # k1 dropped: --verify agrees, and serve restarted with k2 alone accepts logins
    monkeypatch.setenv("EAPKIT_STORE_KEYS", _spec(("k2", K2)))
    verify = subprocess.run(
        [sys.executable, "-m", "eapkit", "store", "rekey", "--verify", "--db", str(db)],
        capture_output=True,
        text=True,
        cwd=work,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with Serve(work) as s:
        for _ in range(3):
            login(s)
    assert [code for _, code in replies[-3:]] == [2, 2, 2], replies
    results = [d["result"] for d in s.decisions() if "result" in d]
    assert results == ["accept"] * len(replies), results
