"""Eight processes offer the same valid code at the same moment: exactly one accepts.

DESIGN.md: a TOTP step or YubiKey counter that one node accepted is refused on every
node, even when two nodes receive the same code in the same millisecond.  Each process
here is a node with its own verifier and its own connection to the shared store
(one SQLite file, or a real redis-server started by the fixture); a barrier releases
them together.
"""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path
from typing import Any

import pytest

from eapkit.store import SqliteStore, Store
from eapkit.verify.otp import OtpCredential, OtpVerifier, totp
from eapkit.verify.yubico import YubicoVerifier, YubikeyCredential, YubikeyToken, encode_otp
from tests.verify.helpers import NOW, RFC_SECRET, sealer

NODES = 8
KEY = bytes(range(16))
UID = bytes.fromhex("0a0b0c0d0e0f")
PUBLIC = "ccccccbcgujh"


def open_store(kind: str, where: str, prefix: str) -> Store:
    if kind == "sqlite":
        return SqliteStore(where)
    from eapkit.store.redis_store import RedisStore

    return RedisStore(where, prefix=prefix)


def node(
    kind: str, where: str, prefix: str, factor: str, code: str, barrier: Any, out: Any
) -> None:
    store = open_store(kind, where, prefix)
    try:
        if factor == "totp":
            v: Any = OtpVerifier(store, sealer())
            v.verify("alice", "000000", NOW - 3600)  # warm the cache: the race is the verify
            barrier.wait()
            out.put(v.verify("alice", code, NOW).reason)
        else:
            v = YubicoVerifier(store, sealer())
            v.verify(None, PUBLIC + "c" * 32, NOW)
            barrier.wait()
            out.put(v.verify("alice", code, NOW).reason)
    except BaseException as exc:  # report instead of hanging the parent on the queue
        out.put(f"error {type(exc).__name__}: {exc}")
    finally:
        store.close()


@pytest.mark.parametrize("factor", ["totp", "yubikey"])
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.interop)])
def test_same_code_at_the_same_moment_on_eight_nodes(
    kind: str, factor: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    prefix = f"c{uuid.uuid4().hex}:"
    where = (
        str(tmp_path / "shared.db") if kind == "sqlite" else request.getfixturevalue("redis_url")
    )
    store = open_store(kind, where, prefix)
    if factor == "totp":
        OtpVerifier(store, sealer()).enroll("alice", OtpCredential(RFC_SECRET), 0.0)
        code = totp(RFC_SECRET, NOW)
    else:
        YubicoVerifier(store, sealer()).enroll("alice", YubikeyCredential(PUBLIC, UID, KEY), 0.0)
        code = encode_otp(YubikeyToken(UID, 3, 1000, 7, 42), KEY, PUBLIC)
    store.close()

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(NODES)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=node, args=(kind, where, prefix, factor, code, barrier, out))
        for _ in range(NODES)
    ]
    for p in procs:
        p.start()
    try:
        reasons = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.exitcode is None:
                p.kill()
                p.join()
    assert sorted(reasons) == ["ok"] + ["replayed"] * (NODES - 1)
