"""The verifier's policy: windows, drift, resync, replay, throttling, input, failures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eapkit.credentials import Verdict
from eapkit.errors import ConfigError
from eapkit.rand import DeterministicRandom
from eapkit.store import MemoryStore, Sealer, SqliteStore
from eapkit.verify.otp import (
    OtpCredential,
    OtpPolicy,
    OtpVerifier,
    b32_secret,
    hotp,
    normalise_code,
    totp,
)
from tests.verify.helpers import NOW, RFC_SECRET, DownStore, sealer

STEP = int(NOW // 30)


def code_at(step: int, secret: bytes = RFC_SECRET, digits: int = 6) -> str:
    return hotp(secret, step, digits)


def totp_verifier(policy: OtpPolicy | None = None, **kw: Any) -> OtpVerifier:
    v = OtpVerifier(MemoryStore(), policy=policy, rand=DeterministicRandom(3), **kw)
    v.enroll("alice", OtpCredential(RFC_SECRET), 0.0)
    return v


def test_window_is_one_step_each_side_by_default() -> None:
    for offset, reason in [(-2, "bad_code"), (-1, "ok"), (0, "ok"), (1, "ok"), (2, "bad_code")]:
        v = totp_verifier()
        verdict = v.verify("alice", code_at(STEP + offset), NOW)
        assert verdict.reason == reason, offset
        if verdict.ok:
            assert verdict.step == STEP + offset
            assert verdict.drift == offset


def test_wider_windows() -> None:
    v = totp_verifier(OtpPolicy(look_back=3, look_ahead=2))
    assert v.verify("alice", code_at(STEP - 3), NOW).ok
    v = totp_verifier(OtpPolicy(look_back=3, look_ahead=2))
    assert v.verify("alice", code_at(STEP + 2), NOW).ok
    v = totp_verifier(OtpPolicy(look_back=3, look_ahead=2))
    assert v.verify("alice", code_at(STEP + 3), NOW).reason == "bad_code"


def test_replay_at_or_below_the_last_accepted_step() -> None:
    v = totp_verifier()
    assert v.verify("alice", code_at(STEP + 1), NOW).ok
    assert v.verify("alice", code_at(STEP + 1), NOW).reason == "replayed"
    # a genuine, fresh code of an earlier step is refused too (RFC 6238 §5.2)
    verdict = v.verify("alice", code_at(STEP), NOW)
    assert (verdict.reason, verdict.step) == ("replayed", STEP)
    assert v.verify("alice", code_at(STEP + 2), NOW + 30).ok


def test_a_token_that_runs_later_and_later_keeps_working() -> None:
    late = [-1, -2, -3, -4]  # how many steps behind the token is, one day after another
    tracked, fixed = totp_verifier(), totp_verifier(OtpPolicy(track_drift=False))
    for day, behind in enumerate(late):
        now = NOW + day * 86400
        step = int(now // 30)
        assert tracked.verify("alice", code_at(step + behind), now).ok
        ok = fixed.verify("alice", code_at(step + behind), now).ok
        assert ok is (behind >= -1)
    assert (
        tracked.verify("alice", code_at(int((NOW + 4 * 86400) // 30) - 4), NOW + 4 * 86400).drift
        == -4
    )


def test_drift_survives_a_new_verifier_on_the_same_store() -> None:
    v = totp_verifier()
    assert v.verify("alice", code_at(STEP - 1), NOW).drift == -1
    again = OtpVerifier(v.store)
    later = NOW + 3600
    step = int(later // 30)
    assert again.verify("alice", code_at(step - 2), later).ok  # centre step - 1, window -2..0


def test_resync_totp_from_two_consecutive_codes() -> None:
    v = totp_verifier()
    behind = -20  # far outside the window
    assert v.verify("alice", code_at(STEP + behind), NOW).reason == "bad_code"
    verdict = v.resync("alice", code_at(STEP + behind), code_at(STEP + behind + 1), NOW)
    assert (verdict.ok, verdict.step, verdict.drift) == (True, STEP + behind + 1, behind + 1)
    assert v.verify("alice", code_at(STEP + behind + 2), NOW + 30).ok
    # the same pair again is a replay, and non-consecutive codes do not resync
    assert (
        v.resync("alice", code_at(STEP + behind), code_at(STEP + behind + 1), NOW).reason
        == "replayed"
    )
    assert v.resync("alice", code_at(STEP + 5), code_at(STEP + 7), NOW).reason == "bad_code"


def test_resync_outside_the_wide_window_fails() -> None:
    v = totp_verifier(OtpPolicy(resync_window=10))
    assert v.resync("alice", code_at(STEP - 12), code_at(STEP - 11), NOW).reason == "bad_code"


def hotp_verifier(policy: OtpPolicy | None = None) -> OtpVerifier:
    v = OtpVerifier(MemoryStore(), policy=policy)
    v.enroll("bob", OtpCredential(RFC_SECRET, kind="hotp"), 0.0)
    return v


def test_hotp_look_ahead_and_replay() -> None:
    v = hotp_verifier()
    assert v.verify("bob", code_at(3), NOW).step == 3  # buttons pressed in between
    assert v.verify("bob", code_at(3), NOW).reason == "replayed"
    assert v.verify("bob", code_at(2), NOW).reason == "bad_code"  # older than look_back
    assert v.verify("bob", code_at(4 + 6), NOW).reason == "bad_code"  # beyond look-ahead 5
    assert v.verify("bob", code_at(4 + 5), NOW).ok


def test_hotp_resync_and_initial_counter() -> None:
    v = hotp_verifier()
    assert v.resync("bob", code_at(30), code_at(31), NOW).step == 31
    assert v.verify("bob", code_at(32), NOW).ok
    w = OtpVerifier(MemoryStore())
    w.enroll("carol", OtpCredential(RFC_SECRET, kind="hotp"), 0.0, counter=100)
    assert w.verify("carol", code_at(99), NOW).reason == "replayed"
    assert w.verify("carol", code_at(100), NOW).step == 100


def test_lockout_grows_expires_and_resets() -> None:
    events: list[dict[str, Any]] = []
    policy = OtpPolicy(max_failures=3, lockout_base=30, lockout_max=100, failure_ttl=1000)
    v = totp_verifier(policy, audit=events.append)
    bad = "918273"
    assert all(code_at(STEP + i) != bad for i in range(-1, 12))
    t = NOW
    assert v.verify("alice", bad, t).retry_after is None
    assert v.verify("alice", bad, t + 1).retry_after is None
    third = v.verify("alice", bad, t + 2)
    assert (third.reason, third.retry_after) == ("bad_code", 30)
    assert events[-1]["event"] == "otp_locked_out" and events[-1]["failures"] == 3
    assert bad not in json.dumps(events) and RFC_SECRET.decode() not in json.dumps(events)
    # locked: even the right code is refused, and the attempt is not counted
    locked = v.verify("alice", code_at(STEP), t + 10)
    assert locked.reason == "locked_out"
    assert locked.retry_after == pytest.approx(22)
    # after the delay one more failure locks again, twice as long, then capped
    assert v.verify("alice", bad, t + 32).retry_after == 60
    assert v.verify("alice", code_at(STEP + 3), t + 91).reason == "locked_out"
    assert v.verify("alice", bad, t + 93).retry_after == 100
    assert v.verify("alice", bad, t + 194).retry_after == 100
    # a success resets the tally
    t2 = t + 295
    assert v.verify("alice", code_at(int(t2 // 30)), t2).ok
    assert v.verify("alice", bad, t2 + 1).retry_after is None
    assert v.store.tally(v._cache["alice"].fail_key, t2 + 1)[0] == 1


class LegacyStore:
    """A store written before Store.advance_unless_locked: every other operation."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        if name == "advance_unless_locked":
            raise AttributeError(name)
        return getattr(self._inner, name)


def _scenario(store: Any) -> list[tuple[str, int | None, float | None]]:
    policy = OtpPolicy(max_failures=2, lockout_base=30, lockout_max=100, failure_ttl=1000)
    v = OtpVerifier(store, sealer(), policy, rand=DeterministicRandom(3))
    v.enroll("alice", OtpCredential(RFC_SECRET), 0.0)
    v.enroll("bob", OtpCredential(RFC_SECRET, kind="hotp"), 0.0)
    bad = "918273"
    calls = [
        ("alice", code_at(STEP), NOW),
        ("alice", code_at(STEP), NOW + 1),
        ("alice", bad, NOW + 2),
        ("alice", bad, NOW + 3),
        ("alice", code_at(STEP + 1), NOW + 31),
        ("alice", code_at(STEP + 2), NOW + 61),
        ("alice", bad, NOW + 62),
        ("alice", code_at(STEP + 3), NOW + 91),
        ("bob", code_at(0), NOW),
        ("bob", code_at(0), NOW),
        ("bob", bad, NOW),
        ("bob", bad, NOW + 1),
        ("bob", code_at(1), NOW + 2),
        ("bob", code_at(1), NOW + 40),
    ]
    out = []
    for user, code, at in calls:
        r = v.verify(user, code, at)
        out.append((r.reason, r.step, r.retry_after))
    return out


def test_a_store_without_advance_unless_locked_gets_the_same_answers() -> None:
    expected = _scenario(MemoryStore())
    assert [r[0] for r in expected] == [
        "ok", "replayed", "bad_code", "bad_code", "locked_out", "ok", "bad_code", "ok",
        "ok", "replayed", "bad_code", "bad_code", "locked_out", "ok",
    ]  # fmt: skip
    assert _scenario(LegacyStore()) == expected


def test_failures_are_forgotten_after_failure_ttl() -> None:
    policy = OtpPolicy(max_failures=2, lockout_base=10, lockout_max=10, failure_ttl=100)
    bad = "918273"
    v = totp_verifier(policy)
    assert v.verify("alice", bad, NOW).retry_after is None
    assert v.verify("alice", bad, NOW + 101).retry_after is None  # the first was forgotten
    assert v.verify("alice", bad, NOW + 102).retry_after == 10  # these two were not


def test_replays_and_malformed_input_do_not_count_as_failures() -> None:
    v = totp_verifier(OtpPolicy(max_failures=1))
    assert v.verify("alice", code_at(STEP), NOW).ok
    for _ in range(5):
        assert v.verify("alice", code_at(STEP), NOW).reason == "replayed"
        assert v.verify("alice", "12ab56", NOW).reason == "malformed"
    assert v.verify("alice", code_at(STEP + 1), NOW + 30).ok


@pytest.mark.parametrize(
    ("typed", "result"),
    [
        ("123456", ("123456", "")),
        (" 123 456\n", ("123456", "")),
        ("123\t456", ("123456", "")),
        ("\uff11\uff12\uff13\uff14\uff15\uff16", (None, "full-width digits")),
        ("\u0661\u0662\u0663\u0664\u0665\u0666", (None, "non-ASCII digits")),
        ("12345a", (None, "not only digits")),
        ("+12345", (None, "not only digits")),
        ("12345", (None, "expected 6 digits, got 5")),
        ("", (None, "empty")),
        ("   ", (None, "empty")),
        ("1" * 65, (None, "too long")),
    ],
)
def test_normalisation(typed: str, result: tuple[str | None, str]) -> None:
    assert normalise_code(typed, 6) == result


def test_spaced_code_verifies_and_full_width_is_refused() -> None:
    v = totp_verifier()
    code = code_at(STEP)
    full_width = "".join(chr(0xFF10 + int(c)) for c in code)
    verdict = v.verify("alice", full_width, NOW)
    assert (verdict.reason, verdict.detail) == ("malformed", "full-width digits")
    assert v.verify("alice", f"{code[:3]} {code[3:]}", NOW).ok


def test_unknown_user() -> None:
    v = totp_verifier()
    assert v.verify("mallory", "123456", NOW).reason == "unknown_user"
    assert v.resync("mallory", "123456", "123457", NOW).reason == "unknown_user"


def test_store_unavailable_fails_closed() -> None:
    store = DownStore()
    v = OtpVerifier(store)
    v.enroll("alice", OtpCredential(RFC_SECRET), 0.0)
    store.down = True
    verdict = v.verify("alice", code_at(STEP), NOW)  # cold cache: the record read fails
    assert (verdict.ok, verdict.reason) == (False, "store_unavailable")
    store.down = False
    assert v.verify("alice", code_at(STEP), NOW).ok  # warm cache now
    store.down = True
    for code in (code_at(STEP + 1), "000000"):
        assert v.verify("alice", code, NOW + 30).reason == "store_unavailable"
    assert (
        v.resync("alice", code_at(STEP + 5), code_at(STEP + 6), NOW).reason == "store_unavailable"
    )


def test_store_unavailable_through_an_unreachable_redis() -> None:
    pytest.importorskip("redis")
    from eapkit.store.redis_store import RedisStore
    from tests.conftest import free_tcp_port

    v = OtpVerifier(RedisStore(f"redis://127.0.0.1:{free_tcp_port()}/0", timeout=0.2), sealer())
    assert v.verify("alice", "123456", NOW).reason == "store_unavailable"


def test_secrets_are_sealed_at_rest(tmp_path: Any) -> None:
    store = SqliteStore(tmp_path / "otp.db")
    with pytest.raises(ConfigError):
        OtpVerifier(store)
    v = OtpVerifier(store, sealer())
    v.enroll("alice", OtpCredential(RFC_SECRET), 0.0)
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert RFC_SECRET not in raw
    store = SqliteStore(tmp_path / "otp.db")
    assert OtpVerifier(store, sealer(1)).verify("alice", code_at(STEP), NOW).ok
    wrong = Sealer({"test1": bytes(32)})
    verdict = OtpVerifier(store, wrong).verify("alice", code_at(STEP + 1), NOW + 30)
    assert (verdict.reason, "1234567890" in verdict.detail) == ("store_unavailable", False)
    store.close()


def test_reenrollment_starts_fresh_state() -> None:
    v = hotp_verifier()
    assert v.verify("bob", code_at(4), NOW).ok
    v.enroll("bob", OtpCredential(RFC_SECRET, kind="hotp"), NOW)
    assert v.verify("bob", code_at(0), NOW).ok


def test_cache_rereads_the_store_after_cache_ttl() -> None:
    v = totp_verifier(OtpPolicy(cache_ttl=10))
    assert v.verify("alice", code_at(STEP), NOW).ok
    other = OtpVerifier(v.store)
    other.enroll("alice", OtpCredential(b"another secret, 20 b"), NOW)
    assert v.verify("alice", code_at(STEP + 1), NOW + 5).ok  # cached credential
    later = NOW + 40
    assert v.verify("alice", hotp(b"another secret, 20 b", int(later // 30)), later).ok


def test_batch() -> None:
    v = totp_verifier()
    v.enroll("bob", OtpCredential(b"B" * 20, digits=8, algorithm="sha256"), 0.0)
    items = [
        ("alice", code_at(STEP)),
        ("alice", code_at(STEP)),
        ("bob", totp(b"B" * 20, NOW, 8, "sha256")),
        ("nobody", "123456"),
        ("bob", "x"),
    ]
    reasons = [verdict.reason for verdict in v.verify_many(items, NOW)]
    assert reasons == ["ok", "replayed", "ok", "unknown_user", "malformed"]


def test_verdict_maps_to_the_credentials_vocabulary() -> None:
    v = totp_verifier()
    assert v.verify("alice", code_at(STEP), NOW).to_verdict() == Verdict.accept("alice")
    assert v.verify("alice", code_at(STEP), NOW).to_verdict() == Verdict(False, "replayed", "alice")


def test_parameters_and_policy_are_checked() -> None:
    with pytest.raises(ValueError):
        OtpCredential(b"short")
    with pytest.raises(ValueError):
        OtpCredential(RFC_SECRET, digits=11)
    with pytest.raises(ValueError):
        OtpCredential(RFC_SECRET, period=0)
    with pytest.raises(ConfigError):
        OtpPolicy(lockout_max=10_000, failure_ttl=3600)
    with pytest.raises(ConfigError):
        OtpPolicy(look_back=-1)
    assert OtpPolicy(look_back=2, look_ahead=1).offsets() == (0, -1, 1, -2)
    assert "secret" not in repr(OtpCredential(RFC_SECRET)).replace("OtpCredential", "")


def test_b32_secret() -> None:
    assert b32_secret("gezd gnbv gy3t qojq gezd gnbv gy3t qojq") == RFC_SECRET
    with pytest.raises(ValueError):
        b32_secret("not base32!")
