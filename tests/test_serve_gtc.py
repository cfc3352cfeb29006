"""``eapkit serve``'s ``gtc`` setting: "password" (the password, followed by the code or
with the code in a second GTC round) or "code" (the code alone, for a NAS that ran an
earlier authentication round, e.g. strongSwan ``remote-1``; see docs/ikev2.md)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from eapkit.directory import LocalDirectory
from eapkit.errors import ConfigError
from eapkit.loopback import converse
from eapkit.methods.base import Authenticator, MethodFactory
from eapkit.methods.gtc import gtc_peer
from eapkit.serve import ServeConfig, build_core, open_second_factors
from eapkit.session import AuthenticatorSession, PeerSession
from eapkit.verify.otp import OtpCredential, totp

SECRET = bytes(range(20))


def test_gtc_setting_parsed_and_checked() -> None:
    assert ServeConfig.from_dict({}).gtc == "password"
    assert ServeConfig.from_dict({"gtc": "code"}).gtc == "code"
    with pytest.raises(ConfigError, match="gtc"):
        ServeConfig.from_dict({"gtc": "otp"})


def _gtc(tmp_path: Path, mode: str) -> MethodFactory[Authenticator]:
    cfg = ServeConfig(db=tmp_path / "eapkit.db", methods=["gtc"], gtc=mode)
    users = LocalDirectory(cfg.db)
    users.add("tom", "pencil", second_factor="totp", iterations=1000)
    users.add("nora", "paper", iterations=1000)
    core = build_core(cfg, users, log_stream=io.StringIO())
    second = open_second_factors(cfg, users)  # the server's store and keys
    assert second is not None and core.eap is not None
    second.totp.enroll("tom", OtpCredential(SECRET), time.time() - 60)
    [factory] = core.eap.methods
    return factory


def _answer(factory: MethodFactory[Authenticator], user: str, answers: list[str]) -> bool:
    replies = iter(answers)
    conv = converse(
        AuthenticatorSession([factory], now=time.time()),
        PeerSession([gtc_peer(lambda _p: next(replies))], user),
    )
    assert conv.authenticator is not None
    return conv.authenticator.success


def test_code_mode_takes_the_code_alone(tmp_path: Path) -> None:
    gtc = _gtc(tmp_path, "code")
    now = time.time()
    assert _answer(gtc, "tom", [totp(SECRET, now)])
    # the same code again is a replay; the password is not a code
    assert not _answer(gtc, "tom", [totp(SECRET, now)])
    assert not _answer(gtc, "tom", ["pencil"])
    assert not _answer(gtc, "tom", ["pencil" + totp(SECRET, now + 30)])
    # a user without a second factor has no code to give: refused, never let in
    assert not _answer(gtc, "nora", ["paper"])


def test_password_mode_wants_the_password_first(tmp_path: Path) -> None:
    gtc = _gtc(tmp_path, "password")
    now = time.time()
    assert not _answer(gtc, "tom", [totp(SECRET, now), totp(SECRET, now)])
    assert _answer(gtc, "tom", ["pencil" + totp(SECRET, now + 30)])
    assert _answer(gtc, "nora", ["paper"])
