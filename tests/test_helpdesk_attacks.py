"""Attacks on issue 20's helpdesk pieces (bypass codes, resets, the re-enrollment page,
audit copies): each test failed on the code before its fix."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eapkit.bridge.app import BridgeApp, Request
from eapkit.bridge.approvals import EnrollmentLinks
from eapkit.bridge.config import BridgeConfig
from eapkit.bridge.gate import Bridge
from eapkit.bypass import BypassCodes, BypassRefused, method_scope
from eapkit.check import check_config
from eapkit.cli import main
from eapkit.directory import LocalDirectory
from eapkit.helpdesk import require_admin
from eapkit.reset import ResetRefused, ResetRequests
from eapkit.second_factor import SecondFactors
from eapkit.serve import ServeConfig, open_second_factors
from eapkit.store.memory import MemoryStore
from eapkit.store.sealing import Sealer
from tests.bridge.helpers import ORIGIN

NOW = 1_800_000_000.0
CHECK_NOW = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)

# -- the re-enrollment page: a malformed body is a 4xx, never an exception --------------

LONE = r'"\ud800"'  # JSON for a lone surrogate: valid JSON, not encodable as UTF-8


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/enroll/totp/finish", '{"token": "TOKEN", "code": LONE}'),
        ("/api/signin/begin", '{"user": LONE}'),
        ("/api/enroll/yubikey", '{"token": "TOKEN", "otp": LONE, "aes_key": LONE}'),
        ("/api/enroll/totp/begin", '{"token": LONE}'),
    ],
)
def test_a_lone_surrogate_in_the_body_is_a_400(path: str, body: str) -> None:
    users = LocalDirectory(":memory:")
    users.add("tom", "pw", second_factor="webauthn", iterations=1000)
    store = MemoryStore()
    second = SecondFactors(users, store, Sealer({"k": os.urandom(32)}))
    app = BridgeApp(Bridge(BridgeConfig(url=ORIGIN), users, store, otp=second.totp))
    token = EnrollmentLinks(store).issue("tom", 1000.0, 3600.0)
    headers = {"origin": ORIGIN, "content-type": "application/json"}
    begun = app.handle(
        Request("POST", "/api/enroll/totp/begin", headers, json.dumps({"token": token}).encode()),
        1000.0,
    )
    assert begun.status == 200  # a secret waits for its code: finish reaches the compare
    raw = body.replace("TOKEN", token).replace("LONE", LONE).encode()
    response = app.handle(Request("POST", path, headers, raw), 1000.0)
    assert response.status == 400
    assert json.loads(response.body) == {"error": "malformed"}


# -- two-person resets: one person under two spellings is still one person --------------


@pytest.mark.parametrize("approver", ["Ada", " ada ", "ADA", "\uff41\uff44\uff41", "\tada\n"])
def test_the_requester_under_another_spelling_cannot_approve(approver: str) -> None:
    resets = ResetRequests(MemoryStore())
    req = resets.request("tom", ["totp"], by="ada", reason="lost phone", now=NOW)
    with pytest.raises(ResetRefused, match="different administrator"):
        resets.approve(req.id, by=approver, now=NOW + 1)
    assert resets.get(req.id).state == "pending"  # type: ignore[union-attr]


def test_a_request_by_an_administrator_removed_since_is_refused() -> None:
    resets = ResetRequests(MemoryStore())
    req = resets.request("tom", ["totp"], by="mallory", reason="lost phone", now=NOW)
    with pytest.raises(ResetRefused, match="no longer an administrator"):
        resets.approve(req.id, by="grace", now=NOW + 1, administrators=("ada", "grace"))
    assert resets.get(req.id).state == "pending"  # type: ignore[union-attr]
    done, _ = resets.approve(req.id, by="grace", now=NOW + 1, administrators=("mallory", "grace"))
    assert done.state == "approved" and done.approved_by == "grace"


def test_the_acting_administrator_is_recorded_in_the_lists_spelling() -> None:
    cfg = ServeConfig(administrators=("ada", "Grace"))
    assert require_admin(cfg, " GRACE ") == "Grace"
    assert require_admin(cfg, "\uff41\uff44\uff41") == "ada"
    with pytest.raises(BypassRefused, match="not one of"):
        require_admin(cfg, "mallory")
    twice = ServeConfig(administrators=("ada", "Ada", "grace"))
    with pytest.raises(BypassRefused, match="more than once"):
        require_admin(twice, "ada")


@pytest.mark.parametrize(
    ("administrators", "warned"),
    [
        ((), False),  # no [admin]: the helpdesk commands are off
        (("ada",), True),
        (("ada", "Ada"), True),  # one person, two spellings
        (("ada", " ada"), True),
        (("ada", "grace"), False),
    ],
)
def test_check_warns_when_the_two_person_rule_cannot_work(
    administrators: tuple[str, ...], warned: bool, tmp_path: Path
) -> None:
    cfg = ServeConfig(db=tmp_path / "eapkit.db", administrators=administrators)
    found = [f for f in check_config(cfg, CHECK_NOW) if f.where == "[admin] administrators"]
    assert bool(found) is warned
    assert all(f.level == "warning" for f in found)
    if warned:
        assert any("at least two" in f.message for f in found)


# -- a deleted user's helpdesk state does not pass to a new user of the same name -------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_user_del_revokes_bypasses_and_cancels_pending_resets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "eapkit.toml"
    toml.write_text(
        f'db = "{tmp_path / "eapkit.db"}"\n[admin]\nadministrators = ["ada", "grace"]\n'
    )
    cfg = ["--config", str(toml)]
    assert _cli(capsys, "user", "add", "tom", "--password", "pw-old", *cfg)[0] == 0
    code, out, err = _cli(capsys, "bypass", "tom", "--reason", "lost phone", "--by", "ada", *cfg)
    assert code == 0, err
    bypass_code = out.strip()
    code, out, err = _cli(capsys, "reset", "tom", "--reason", "lost phone", "--by", "ada", *cfg)
    assert code == 0, err
    request_id = out.strip()
    users = LocalDirectory(tmp_path / "eapkit.db")
    second = open_second_factors(ServeConfig(db=tmp_path / "eapkit.db"), users)
    links = EnrollmentLinks(second.store)
    link = links.issue("tom", time.time(), 3600.0)  # what 'eapkit approve' prints
    assert links.peek(link, time.time()) == "tom"
    code, _, deleted = _cli(capsys, "user", "del", "tom", *cfg)
    assert code == 0
    # a different person gets the name, with a factor of their own
    assert _cli(capsys, "user", "add", "tom", "--password", "pw-new", *cfg)[0] == 0
    assert _cli(capsys, "enroll", "totp", "tom", "--no-terminal", *cfg)[0] == 0
    assert second.check_code("tom", bypass_code, time.time()).reason == "bad_code"
    assert links.peek(link, time.time()) is None  # the old link enrolls nobody
    assert links.take(link, time.time()) is None
    fresh = links.issue("tom", time.time(), 3600.0)  # the new user's own link works
    assert links.take(fresh, time.time()) is not None
    code, _, err = _cli(capsys, "approve", request_id, "--by", "grace", *cfg)
    assert code != 0 and "cancelled" in err
    assert second.totp.store.get("otp:cred:tom") is not None  # the new user's factor stays
    assert "1 bypass code(s) revoked, 1 pending reset(s) cancelled" in deleted


class _InterleavedStore(MemoryStore):
    """A second administrator's ``eapkit reset`` lands between the first one's read of
    the request index and its write."""

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile: Callable[[], object] | None = None

    def put(self, key: str, value: bytes) -> None:
        if key == "reset:index" and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        super().put(key, value)


def test_two_requests_at_once_are_both_listed_swept_and_cancelled() -> None:
    store = _InterleavedStore()
    resets = ResetRequests(store)
    store.meanwhile = lambda: resets.request("bob", ["totp"], by="grace", reason="b", now=NOW)
    first = resets.request("tom", ["totp"], by="ada", reason="a", now=NOW + 1)
    assert {r.user for r in resets.all()} == {"tom", "bob"}
    assert [r.user for r in resets.all()] == ["bob", "tom"]  # oldest first
    assert [r.user for r in resets.sweep(NOW + 10 * 86400)] == ["bob", "tom"]
    assert resets.get(first.id).state == "expired"  # type: ignore[union-attr]


# -- bypass codes -----------------------------------------------------------------------


class _RevokedMidUse(MemoryStore):
    """An administrator's ``bypass revoke`` lands after a login read the code's record
    and before it spent the use."""

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile: Callable[[], object] | None = None

    def advance(self, key: str, value: int) -> bool:
        if key.startswith("bypass:used:") and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return super().advance(key, value)


def test_a_code_revoked_during_its_use_is_refused(tmp_path: Path) -> None:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("tom", "pw-tom", second_factor="totp", iterations=1000)
    events: list[dict[str, Any]] = []
    store = _RevokedMidUse()
    second = SecondFactors(users, store, Sealer({"k": os.urandom(32)}), audit=events.append)
    bypass, code = second.bypass.issue(
        "tom", by="ada", reason="lost phone", ttl=3600.0, uses=1, now=NOW
    )
    store.meanwhile = lambda: second.bypass.revoke(
        bypass.id, by="grace", reason="call ended", now=NOW + 1
    )
    verdict = second.check_code("tom", code, NOW + 1)
    assert (verdict.ok, verdict.reason) == (False, "bypass_revoked")
    assert [e["event"] for e in events] == ["bypass_issued", "bypass_revoked", "bypass_refused"]
    assert second.check_code("tom", code, NOW + 2).reason == "bad_code"  # gone for good
    assert store.counter(f"bypass:used:{bypass.id}") is None  # nothing left behind


def test_approve_refuses_a_reset_of_a_user_deleted_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "eapkit.toml"
    toml.write_text(
        f'db = "{tmp_path / "eapkit.db"}"\n[admin]\nadministrators = ["ada", "grace"]\n'
    )
    cfg = ["--config", str(toml)]
    assert _cli(capsys, "user", "add", "tom", "--password", "pw-old", *cfg)[0] == 0
    code, out, err = _cli(capsys, "reset", "tom", "--reason", "lost phone", "--by", "ada", *cfg)
    assert code == 0, err
    assert LocalDirectory(tmp_path / "eapkit.db").delete("tom")  # not through 'user del'
    code, out, err = _cli(capsys, "approve", out.strip(), "--by", "grace", *cfg)
    assert code != 0 and "no user tom" in err
    assert "enroll#" not in out  # no link printed for nobody


def test_method_scope_in_any_spelling_is_the_catalog_name(tmp_path: Path) -> None:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("tom", "pw-tom", second_factor="totp", iterations=1000)
    second = SecondFactors(users, MemoryStore(), Sealer({"k": os.urandom(32)}))
    bypass, code = second.bypass.issue(
        "tom", by="ada", reason="r", ttl=3600.0, uses=2, now=NOW, methods=(" PAP", "Ttls ", "")
    )
    assert bypass.methods == ("pap", "ttls")
    with method_scope("gtc"):
        assert second.check_code("tom", code, NOW).reason == "bypass_wrong_method"
    with method_scope("pap"):
        assert second.check_code("tom", code, NOW).ok
    with pytest.raises(BypassRefused, match="unknown method"):
        second.bypass.issue(
            "tom", by="ada", reason="r", ttl=60.0, uses=1, now=NOW, methods=("p ap",)
        )


def test_a_code_issued_by_an_administrator_removed_since_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "eapkit.db"
    users = LocalDirectory(db)
    users.add("tom", "pw-tom", second_factor="totp", iterations=1000)
    before = open_second_factors(ServeConfig(db=db, administrators=("mallory", "grace")), users)
    _, by_mallory = before.bypass.issue(
        "tom", by="mallory", reason="r", ttl=3600.0, uses=1, now=NOW
    )
    _, by_grace = before.bypass.issue("tom", by="grace", reason="r", ttl=3600.0, uses=1, now=NOW)
    # mallory leaves; the server restarts with the new list
    after = open_second_factors(ServeConfig(db=db, administrators=("Grace", "ada")), users)
    assert after.check_code("tom", by_mallory, NOW + 1).reason == "bypass_issuer_removed"
    assert after.check_code("tom", by_grace, NOW + 1).ok  # any spelling of grace


@pytest.mark.parametrize("ttl", ["0", "8d", "1000d"])
def test_approve_refuses_a_link_that_lives_too_long_before_applying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ttl: str
) -> None:
    toml = tmp_path / "eapkit.toml"
    toml.write_text(
        f'db = "{tmp_path / "eapkit.db"}"\n[admin]\nadministrators = ["ada", "grace"]\n'
    )
    cfg = ["--config", str(toml)]
    assert _cli(capsys, "user", "add", "tom", "--password", "pw", *cfg)[0] == 0
    code, out, err = _cli(capsys, "reset", "tom", "--reason", "lost phone", "--by", "ada", *cfg)
    request_id = out.strip()
    code, out, err = _cli(capsys, "approve", request_id, "--by", "grace", "--link-ttl", ttl, *cfg)
    assert code != 0 and "--link-ttl" in err and "enroll#" not in out
    code, out, err = _cli(capsys, "approve", request_id, "--by", "grace", "--link-ttl", "2d", *cfg)
    assert code == 0 and "enroll#" in out  # nothing was applied by the refused try


def test_approve_refuses_a_configured_enroll_ttl_over_the_cap_before_applying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --link-ttl the link lives ``[bridge] enroll_ttl``: the 7-day cap holds
    there too, and a configuration over it applies nothing."""
    toml = tmp_path / "eapkit.toml"
    base = f'db = "{tmp_path / "eapkit.db"}"\n[admin]\nadministrators = ["ada", "grace"]\n'
    toml.write_text(base)
    cfg = ["--config", str(toml)]
    assert _cli(capsys, "user", "add", "tom", "--password", "pw", *cfg)[0] == 0
    request_id = _cli(capsys, "reset", "tom", "--reason", "lost phone", "--by", "ada", *cfg)[1]
    toml.write_text(base + "[bridge]\nenroll_ttl = 691200\n")  # 8 days
    code, out, err = _cli(capsys, "approve", request_id.strip(), "--by", "grace", *cfg)
    assert code != 0 and "enroll_ttl is at most 604800 seconds" in err and "enroll#" not in out
    toml.write_text(base + "[bridge]\nenroll_ttl = 604800\n")  # 7 days: allowed
    code, out, err = _cli(capsys, "approve", request_id.strip(), "--by", "grace", *cfg)
    assert code == 0 and "enroll#" in out  # the refused try applied nothing


def test_a_link_given_back_after_the_user_was_deleted_stays_dead() -> None:
    """The page takes the link, the user is deleted (links revoked) while the security
    key registration runs, the registration fails and the page gives the link back:
    it must not come back to life for whoever gets the name next."""
    links = EnrollmentLinks(MemoryStore())
    token = links.issue("tom", NOW, 3600.0)
    taken = links.take(token, NOW)
    assert taken is not None
    links.revoke_user("tom")
    links.restore(token, taken[0], taken[1], NOW + 1)
    assert links.peek(token, NOW + 2) is None
    again = links.issue("tom", NOW, 3600.0)  # without a revoke, a give-back works
    taken = links.take(again, NOW)
    assert taken is not None
    links.restore(again, taken[0], taken[1], NOW + 1)
    assert links.peek(again, NOW + 2) == "tom"


def test_a_wrong_code_takes_as_long_whether_or_not_the_user_has_a_bypass() -> None:
    """Timing of a wrong code must not tell who has a live bypass (someone who called
    the helpdesk today).  Medians of interleaved tries, compared in the same run:
    before, a user without codes answered in about 0.6 of the time."""
    import statistics

    store = MemoryStore()
    codes = BypassCodes(store, Sealer({"k": os.urandom(32)}), max_failures=10**9)
    codes.issue("tom", by="ada", reason="r", ttl=3600.0, uses=1, now=NOW)
    for i in range(20):
        codes.issue(f"u{i}", by="ada", reason="r", ttl=3600.0, uses=1, now=NOW)
    tries = 3000 if os.environ.get("EAPKIT_LONG_SECURITY") else 300
    times: dict[str, list[float]] = {"tom": [], "nobody": []}
    for _ in range(tries):
        for user, spent in times.items():
            start = time.perf_counter()
            assert codes.use(user, "aaaaa-aaaaa-aaaaa-aaaaa", NOW).reason == "bad_code"
            spent.append(time.perf_counter() - start)
    with_code, without = (statistics.median(t) for t in times.values())
    assert max(with_code, without) / min(with_code, without) < 1.3, (with_code, without)


def test_user_del_removes_the_users_second_factor_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deleted user's TOTP secret and recovery codes go with them: a user added later
    under the same name and set to TOTP is never checked against the old secret."""
    toml = tmp_path / "eapkit.toml"
    toml.write_text(f'db = "{tmp_path / "eapkit.db"}"\n')
    cfg = ["--config", str(toml)]
    assert _cli(capsys, "user", "add", "tom", "--password", "pw-old", *cfg)[0] == 0
    assert _cli(capsys, "enroll", "totp", "tom", "--no-terminal", *cfg)[0] == 0
    assert _cli(capsys, "enroll", "recovery", "tom", *cfg)[0] == 0
    users = LocalDirectory(tmp_path / "eapkit.db")
    second = open_second_factors(ServeConfig(db=tmp_path / "eapkit.db"), users)
    assert second.store.get("otp:cred:tom") is not None
    assert second.store.get("recovery:tom") is not None
    assert _cli(capsys, "user", "del", "tom", *cfg)[0] == 0
    assert second.store.get("otp:cred:tom") is None
    assert second.store.get("recovery:tom") is None


def test_a_reset_removes_the_factors_under_the_directorys_stable_key() -> None:
    """An LDAP/AD user's factors are stored under entryUUID/objectGUID
    (SecondFactors.key); approving their reset removes those, not a name-keyed ghost."""
    from eapkit.reset import ResetRequests

    store = MemoryStore()
    store.put("otp:cred:3f2a-uuid", b"sealed totp")
    keys = {"carol": "3f2a-uuid"}
    resets = ResetRequests(store, key_of=lambda user: keys.get(user, user))
    req = resets.request("carol", ["totp"], by="ada", reason="lost phone", now=0.0)
    _, removed = resets.approve(req.id, by="grace", now=1.0)
    assert removed == 1 and store.get("otp:cred:3f2a-uuid") is None
