"""Unauthenticated ``POST /api/signin/begin`` (issue 15): rate-limited per address and
overall, its challenges purged once expired, and the same answer for every name."""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.bridge.app import BridgeApp, Request, Response
from eapkit.bridge.config import BridgeConfig
from eapkit.bridge.gate import Bridge
from eapkit.bridge.limits import BeginLimiter, TokenBucket
from eapkit.directory import LocalDirectory
from eapkit.store import SqliteStore
from eapkit.testing.soft_authenticator import SoftAuthenticator
from tests.bridge.helpers import ORIGIN, PASSWORD, Browser, make_bridge, token_of


def begin(app: BridgeApp, body: dict[str, Any], now: float, peer: str = "192.0.2.1") -> Response:
    headers = {"origin": ORIGIN, "content-type": "application/json"}
    return app.handle(
        Request("POST", "/api/signin/begin", headers, json.dumps(body).encode(), peer), now
    )


def test_one_address_is_limited_and_others_are_not() -> None:
    app = BridgeApp(make_bridge(), limiter=BeginLimiter(per_address=1.0, address_burst=5))
    answers = [begin(app, {}, 1000.0).status for _ in range(8)]
    assert answers == [200] * 5 + [429] * 3
    assert begin(app, {}, 1000.0, peer="198.51.100.7").status == 200
    assert begin(app, {}, 1001.0).status == 200  # one more token a second
    limited = begin(app, {}, 1001.0)
    assert limited.status == 429 and json.loads(limited.body) == {"error": "rate_limited"}
    assert ("Retry-After", "1") in limited.headers


def test_many_addresses_meet_the_global_limit() -> None:
    app = BridgeApp(make_bridge(), limiter=BeginLimiter(overall=10.0, overall_burst=20))
    statuses = [begin(app, {}, 1000.0, peer=f"10.0.{i // 250}.{i % 250}").status for i in range(50)]
    assert statuses.count(200) == 20 and statuses.count(429) == 30


def test_limited_requests_store_nothing(tmp_path: Path) -> None:
    app = BridgeApp(sqlite_bridge(tmp_path), limiter=BeginLimiter(per_address=1.0, address_burst=3))
    for _ in range(20):
        begin(app, {}, 1000.0)
    assert live_tokens(tmp_path) == 3


def sqlite_bridge(tmp_path: Path) -> Bridge:
    users = LocalDirectory(":memory:")
    users.add("alice", PASSWORD, iterations=1000)
    store = SqliteStore(tmp_path / "store.db", durable=False)
    return Bridge(BridgeConfig(url=ORIGIN), users, store, audit=lambda e: None)


def live_tokens(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "store.db") as con:
        return int(con.execute("SELECT count(*) FROM tokens").fetchone()[0])


def test_expired_challenges_are_purged(tmp_path: Path) -> None:
    bridge = sqlite_bridge(tmp_path)
    app = BridgeApp(
        bridge, limiter=BeginLimiter(overall=1000, overall_burst=1000, address_burst=1000)
    )
    for i in range(300):
        assert begin(app, {}, 1000.0 + i / 100).status == 200
    assert live_tokens(tmp_path) == 300
    lifetime = bridge.webauthn.timeout + bridge.webauthn.grace
    assert begin(app, {}, 1000.0 + lifetime + 10).status == 200
    assert live_tokens(tmp_path) == 1  # the 300 expired ones went, the new one stays


def test_unknown_and_existing_users_get_the_same_answer() -> None:
    bridge = make_bridge()
    browser = Browser(BridgeApp(bridge))
    key = SoftAuthenticator()
    assert browser.enroll(token_of(bridge.enrollment_link("alice", 1000.0)), key).status == 200
    app = BridgeApp(bridge)
    answers = {name: begin(app, {"user": name}, 1000.0) for name in ("alice", "bob", "mallory")}
    # alice has a key, bob exists without one, mallory does not exist
    shapes = set()
    for response in answers.values():
        assert response.status == 200
        options = json.loads(response.body)["options"]
        creds = options["allowCredentials"]
        assert creds
        shapes.add((tuple(sorted(options)), tuple(tuple(sorted(c)) for c in creds[:1])))
    assert len(shapes) == 1, shapes
    # the made-up list is stable (a changing one would give it away) and per name
    again = json.loads(begin(app, {"user": "mallory"}, 1001.0).body)["options"]
    first = json.loads(answers["mallory"].body)["options"]
    assert again["allowCredentials"] == first["allowCredentials"]
    assert (
        first["allowCredentials"] != json.loads(answers["bob"].body)["options"]["allowCredentials"]
    )
    # and it survives a restart of the app (the key is in the store)
    later = json.loads(begin(BridgeApp(bridge), {"user": "mallory"}, 1002.0).body)["options"]
    assert later["allowCredentials"] == first["allowCredentials"]
    # the real user still signs in
    assert browser.sign_in(key, "alice").status == 200


def test_a_challenge_begun_for_an_unknown_name_signs_nobody_in() -> None:
    bridge = make_bridge()
    browser = Browser(BridgeApp(bridge))
    key = SoftAuthenticator()
    assert browser.enroll(token_of(bridge.enrollment_link("alice", 1000.0)), key).status == 200
    alice = browser.json("POST", "/api/signin/begin", {"user": "alice"})["options"]
    options = browser.json("POST", "/api/signin/begin", {"user": "mallory"})["options"]
    # alice's real key answering mallory's challenge
    mixed = {**options, "allowCredentials": alice["allowCredentials"]}
    answer = browser.call(
        "POST", "/api/signin/finish", {"credential": key.get(mixed, origin=ORIGIN)}
    )
    assert answer.status == 403


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.1, 100),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=60),
)
def test_a_bucket_never_grants_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, burst, 0.0)
    now, granted = 0.0, 0
    for gap in gaps:
        now += gap
        granted += bucket.take(now)
        assert granted <= burst + rate * now + 1e-9


def test_a_name_without_keys_costs_what_a_name_with_keys_costs() -> None:
    """Timing class: medians of interleaved tries, compared as a ratio in one run."""
    bridge = make_bridge()
    browser = Browser(BridgeApp(bridge))
    assert (
        browser.enroll(
            token_of(bridge.enrollment_link("alice", 1000.0)), SoftAuthenticator()
        ).status
        == 200
    )
    unlimited = BeginLimiter(per_address=1e9, address_burst=1e9, overall=1e9, overall_burst=1e9)
    app = BridgeApp(bridge, limiter=unlimited)

    def entries(name: str) -> int:
        return len(
            json.loads(begin(app, {"user": name}, 1000.0).body)["options"]["allowCredentials"]
        )

    # a decoy with as many entries as alice has keys (the list's length is public anyway)
    other = next(n for n in (f"user{i}" for i in range(100)) if entries(n) == entries("alice"))
    times: dict[str, list[float]] = {"alice": [], other: []}
    for _ in range(int(os.environ.get("EAPKIT_TIMING_TRIES", "300"))):
        for name, samples in times.items():
            started = time.perf_counter()
            begin(app, {"user": name}, 1000.0)
            samples.append(time.perf_counter() - started)
    ratio = statistics.median(times[other]) / statistics.median(times["alice"])
    assert 0.7 < ratio < 1.43, ratio
