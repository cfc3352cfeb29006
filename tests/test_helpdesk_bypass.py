"""Helpdesk bypass codes (eapkit.bypass): issued with a reason and an issuer, stored
hashed and sealed, accepted only within their scope (time, uses, methods, NAS), after
the password, never in its place; one use cannot be spent twice under concurrency."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.authz import nas_scope
from eapkit.bypass import BYPASS_PATTERN, BypassCodes, BypassRefused, in_method, method_scope
from eapkit.credentials import CHALLENGE, TwoRoundCheck
from eapkit.directory import LocalDirectory
from eapkit.loopback import converse
from eapkit.methods.gtc import gtc_peer
from eapkit.rand import DeterministicRandom
from eapkit.second_factor import RECOVERY_PATTERN, SecondFactors
from eapkit.serve import ServeConfig, build_core, open_second_factors
from eapkit.session import AuthenticatorSession, PeerSession
from eapkit.store.memory import MemoryStore
from eapkit.store.sealing import Sealer
from eapkit.store.sqlite import SqliteStore
from eapkit.verify.otp import OtpCredential
from tests.store.redis_server import running_redis

NOW = 1_800_000_000.0


@dataclass(frozen=True)
class FakeNas:
    name: str
    second_factor: str = "enforce"


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def second(tmp_path: Path, events: list[dict[str, Any]]) -> SecondFactors:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("tom", "pw-tom", second_factor="totp", iterations=1000)
    users.add("bob", "pw-bob", second_factor="totp", iterations=1000)
    sf = SecondFactors(users, MemoryStore(), Sealer({"k": os.urandom(32)}), audit=events.append)
    sf.totp.enroll("tom", OtpCredential(bytes(range(20))), NOW - 100)
    return sf


def issue(second: SecondFactors, **kw: Any) -> tuple[str, str]:
    args: dict[str, Any] = {"by": "ada", "reason": "lost phone #4711", "ttl": 3600.0, "uses": 1}
    args.update(kw)
    bypass, code = second.bypass.issue(kw.pop("user", "tom"), now=NOW, **args)
    return bypass.id, code


def test_code_stands_in_for_the_second_factor_after_the_password(
    second: SecondFactors, events: list[dict[str, Any]]
) -> None:
    bid, code = issue(second)
    assert BYPASS_PATTERN.fullmatch(code) and not RECOVERY_PATTERN.fullmatch(code[-14:])
    pap = second.pap(second.users.check_password)
    # never in place of the password: a wrong password with the code is refused
    assert pap("tom", "wrong" + code, NOW).reason == "bad_password"
    assert pap("tom", code, NOW).reason != "ok"
    verdict = pap("tom", "pw-tom" + code, NOW + 1)
    assert verdict.ok and "otp_device" in verdict.factors
    used = [e for e in events if e["event"] == "bypass_used"]
    assert used == [
        {
            "event": "bypass_used",
            "user": "tom",
            "by": "ada",
            "reason": "lost phone #4711",
            "id": bid,
            "scope": {"expires": NOW + 3600, "uses": 1, "methods": [], "client": ""},
            "used": 1,
            "method": "",
            "client": "",
        }
    ]
    assert all(code not in json.dumps(e) for e in events)
    # used up: the second use is refused and logged
    assert pap("tom", "pw-tom" + code, NOW + 2).reason == "bypass_used_up"
    assert events[-1]["event"] == "bypass_refused"


def test_challenge_round_accepts_the_code(second: SecondFactors) -> None:
    _, code = issue(second)
    pap = second.pap(second.users.check_password)
    assert isinstance(pap, TwoRoundCheck)
    assert pap("tom", "pw-tom", NOW).reason == CHALLENGE
    assert pap.second("tom", code, NOW).ok


def test_stored_hashed_and_sealed(second: SecondFactors) -> None:
    bid, code = issue(second)
    assert isinstance(second.store, MemoryStore)
    dump = b"".join(second.store.get(k) or b"" for k in second.store.record_keys())
    assert code.encode() not in dump
    record = json.loads(second.store.get(f"bypass:code:{bid}") or b"{}")
    assert "sealed" in record and "plain" not in record


def test_scope_time_methods_and_nas(second: SecondFactors) -> None:
    _, late = issue(second, ttl=60.0)
    assert second.check_code("tom", late, NOW + 60).reason == "bypass_expired"
    _, code = issue(second, methods=("pap",), client="vpn-1", uses=5)
    assert second.check_code("tom", code, NOW).reason == "bypass_wrong_method"
    with method_scope("ttls"), nas_scope(FakeNas("vpn-1"), NOW):
        assert second.check_code("tom", code, NOW).reason == "bypass_wrong_method"
    with method_scope("pap"), nas_scope(FakeNas("vpn-2"), NOW):
        assert second.check_code("tom", code, NOW).reason == "bypass_wrong_client"
    with method_scope("pap"):  # no NAS named: refused too
        assert second.check_code("tom", code, NOW).reason == "bypass_wrong_client"
    check = in_method("pap", second.check_code)
    assert check is not None
    with nas_scope(FakeNas("vpn-1"), NOW):
        assert check("tom", code, NOW).ok


def test_another_users_code_and_revoked_code(second: SecondFactors) -> None:
    bid, code = issue(second, uses=3)
    assert second.check_code("bob", code, NOW).reason == "bad_code"
    assert [b.id for b in second.bypass.all("tom")] == [bid]
    second.bypass.revoke(bid, by="grace", reason="call ended", now=NOW)
    assert second.check_code("tom", code, NOW).reason == "bad_code"
    assert second.bypass.all() == []


def test_revoke_log_line(second: SecondFactors, events: list[dict[str, Any]]) -> None:
    bid, _ = issue(second)
    second.bypass.revoke(bid, by="grace", reason="call ended", now=NOW)
    line = events[-1]
    assert line["event"] == "bypass_revoked" and line["id"] == bid
    assert (line["by"], line["reason"], line["issued_by"]) == ("grace", "call ended", "ada")
    with pytest.raises(BypassRefused, match="no bypass"):
        second.bypass.revoke(bid, by="grace", reason="again", now=NOW)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"reason": "  "}, "reason"),
        ({"by": ""}, "administrator"),
        ({"ttl": 0.0}, "ttl"),
        ({"ttl": 30 * 86400.0}, "ttl"),
        ({"uses": 0}, "uses"),
        ({"methods": ("telnet",)}, "unknown method"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    second: SecondFactors, kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(BypassRefused, match=message):
        issue(second, **kw)
    assert isinstance(second.store, MemoryStore) and second.store.record_keys() == ["otp:cred:tom"]


def test_wrong_codes_lock_out(second: SecondFactors) -> None:
    _, code = issue(second)
    guess = "aaaaa-aaaaa-aaaaa-aaaaa"
    for _ in range(second.bypass.max_failures):
        assert second.check_code("tom", guess, NOW).reason == "bad_code"
    # the right code is refused too while locked out: guessing gains nothing
    assert second.check_code("tom", code, NOW).reason == "locked_out"
    assert second.check_code("tom", code, NOW + second.bypass.window + 1).ok


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_one_use_is_spent_once_under_concurrency(tmp_path: Path, backend: str) -> None:
    store = MemoryStore() if backend == "memory" else SqliteStore(tmp_path / "s.db")
    codes = BypassCodes(store, Sealer({"k": os.urandom(32)}))
    _, code = codes.issue("tom", by="ada", reason="r", ttl=60.0, uses=3, now=NOW)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        for _ in range(3):
            results.append(codes.use("tom", code, NOW).reason)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 3
    assert results.count("bypass_used_up") == 21


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for this module (as tests/store does)."""
    with running_redis(Path(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.mark.interop
def test_the_last_use_is_spent_once_across_redis_nodes(redis_url: str) -> None:
    """Two RADIUS nodes sharing one Redis race for a code's single use: each node has
    its own connection and its own BypassCodes, so only Redis's atomic counter (the
    compare-and-set of ``_spend``) stands between them and a replayed code."""
    from eapkit.store.redis_store import RedisStore

    prefix = f"bp{uuid.uuid4().hex}:"
    sealer = Sealer({"k": os.urandom(32)})
    nodes = [RedisStore(redis_url, prefix=prefix) for _ in range(2)]
    try:
        issuer = BypassCodes(nodes[0], sealer)
        bypass, code = issuer.issue("tom", by="ada", reason="r", ttl=60.0, uses=1, now=NOW)
        verifiers = [BypassCodes(node, sealer) for node in nodes]
        results: list[tuple[int, str]] = []
        barrier = threading.Barrier(8)

        def attempt(node: int) -> None:
            barrier.wait()
            for _ in range(2):
                results.append((node, verifiers[node].use("tom", code, NOW).reason))

        threads = [threading.Thread(target=attempt, args=(i % 2,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [reason for _, reason in results].count("ok") == 1, results
        assert [reason for _, reason in results].count("bypass_used_up") == 15, results
        assert {node for node, _ in results} == {0, 1}  # both nodes really raced
        assert verifiers[1].used(bypass.id) == 1  # what both nodes now read
    finally:
        for node in nodes:
            node.close()


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_refused_without_a_traceback(text: str) -> None:
    codes = BypassCodes(MemoryStore(), Sealer({"k": bytes(32)}), random=DeterministicRandom(1))
    codes.issue("tom", by="ada", reason="r", ttl=60.0, uses=1, now=NOW)
    assert codes.use("tom", text, NOW).reason in ("bad_code", "locked_out")


def test_concurrent_issues_all_land_in_the_index(tmp_path: Path) -> None:
    """Two administrators issuing at once: the index is updated by compare-and-swap,
    so no code is left out of the index (where it could be neither used nor listed)."""
    store = SqliteStore(tmp_path / "s.db")
    codes = BypassCodes(store, Sealer({"k": os.urandom(32)}))
    codes.issue("tom", by="ada", reason="first", ttl=60.0, uses=1, now=NOW)
    issued: list[str] = []
    barrier = threading.Barrier(6)

    def issue_one() -> None:
        barrier.wait()
        issued.append(codes.issue("tom", by="ada", reason="r", ttl=60.0, uses=1, now=NOW)[1])

    threads = [threading.Thread(target=issue_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(codes.all("tom")) == 7
    assert all(codes.use("tom", code, NOW).ok for code in issued)


def test_long_expired_codes_are_pruned_on_the_next_issue(second: SecondFactors) -> None:
    old, _ = issue(second, ttl=60.0)
    assert [b.id for b in second.bypass.all()] == [old]  # expired, still listed a while
    later = NOW + 60 + 86400 + 1
    fresh, _ = second.bypass.issue("tom", by="ada", reason="r", ttl=60.0, uses=1, now=later)
    assert [b.id for b in second.bypass.all()] == [fresh.id]
    assert second.store.get(f"bypass:code:{old}") is None


def test_method_scope_through_served_eap_gtc(tmp_path: Path) -> None:
    """The server's EAP-GTC names its method: a bypass scoped to ``gtc`` works in the
    code round after the password; one scoped to ``pap`` is refused there."""
    cfg = ServeConfig(db=tmp_path / "eapkit.db", methods=["gtc"])
    users = LocalDirectory(cfg.db)
    users.add("tom", "pencil", second_factor="totp", iterations=1000)
    core = build_core(cfg, users, log_stream=io.StringIO())
    second = open_second_factors(cfg, users)
    assert core.eap is not None
    [factory] = core.eap.methods
    now = time.time()

    def login(code: str) -> bool:
        replies = iter(["pencil", code])
        conv = converse(
            AuthenticatorSession([factory], now=now),
            PeerSession([gtc_peer(lambda _p: next(replies))], "tom"),
        )
        assert conv.authenticator is not None
        return conv.authenticator.success

    _, for_gtc = second.bypass.issue(
        "tom", by="ada", reason="r", ttl=600.0, uses=1, methods=("gtc",), now=now
    )
    _, for_pap = second.bypass.issue(
        "tom", by="ada", reason="r", ttl=600.0, uses=1, methods=("pap",), now=now
    )
    assert not login(for_pap)
    assert login(for_gtc)
