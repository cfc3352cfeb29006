"""Second factors per user, for ``eapkit serve`` and the helpdesk commands.

Each user in the directory (:mod:`eapkit.directory`) names a second factor: ``none``,
``totp`` (an OATH token enrolled in :class:`~eapkit.verify.otp.OtpVerifier`) or
``yubikey`` (Yubico OTP, :class:`~eapkit.verify.yubico.YubicoVerifier`).  Single-use
recovery codes stand in for either, and so does a helpdesk bypass code within its scope
(:mod:`eapkit.bypass`).  All state lives in the shared
:class:`~eapkit.store.base.Store`, so replay protection holds on every node.

The checks the methods use:

- :meth:`SecondFactors.pap`: one response = password followed by the code (TTLS/PAP,
  plain PAP, single-round GTC).  The code is the last 6/8 digits (TOTP), the last 44
  modhex characters (YubiKey) or a recovery code ``xxxx-xxxx-xxxx``.  A plain-RADIUS
  response that is the password alone, for a user who needs a code, is answered with
  an Access-Challenge asking for it (RFC 2865 challenge-response).
- :meth:`SecondFactors.gtc`: the password in a first GTC round, the code in a second
  (EAP-GTC inside TTLS or PEAP, or bare).

Every enrollment, recovery-code use and lockout is one JSON audit line (no secret, no
code).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eapkit.bypass import BYPASS_LENGTH, BYPASS_PATTERN, BypassCodes
from eapkit.credentials import (
    CHALLENGE,
    PasswordThenCode,
    ResponseCheck,
    TwoRoundCheck,
    Verdict,
)
from eapkit.directory import Directory
from eapkit.errors import ConfigError
from eapkit.methods.base import Factor
from eapkit.private_files import private_dir
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.store import open_store
from eapkit.store.base import Store, StoreUnavailable
from eapkit.store.sealing import ENV_VAR, Sealer
from eapkit.verify.otp import OtpPolicy, OtpVerifier, totp_digits
from eapkit.verify.verdict import store_refusal
from eapkit.verify.yubico import YubicoVerifier

__all__ = [
    "RECOVERY_PATTERN",
    "RecoveryCodes",
    "SecondFactors",
    "open_second_factors",
    "sealing_keys",
]

AuditSink = Callable[[dict[str, Any]], None]
RECOVERY_PATTERN = re.compile(r"[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}")
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_TEN_YEARS = 10 * 365 * 86400.0
YUBIKEY_OTP_LENGTH = 44
_CODE = frozenset({Factor.OTP_DEVICE})
_PASSWORD_AND_CODE = frozenset({Factor.PASSWORD, Factor.OTP_DEVICE})


def _proved(verdict: Verdict, factors: frozenset[Factor]) -> Verdict:
    """``verdict`` with the factors it proved, when it is an acceptance."""
    return replace(verdict, factors=verdict.factors | factors) if verdict.ok else verdict


def _named(verdict: Verdict, key: str, user: str) -> Verdict:
    """A verdict about the factors stored under ``key``, told about ``user``."""
    return replace(verdict, user=user) if key != user and verdict.user == key else verdict


class RecoveryCodes:
    """Single-use recovery codes (60 random bits each), stored as salted SHA-256 and
    consumed atomically through the store's single-use tokens."""

    def __init__(
        self, store: Store, *, random: RandomSource = SYSTEM_RANDOM, audit: AuditSink | None = None
    ) -> None:
        self.store = store
        self.random = random
        self.audit = audit

    def _digest(self, user: str, salt: bytes, code: str) -> str:
        return hmac.digest(salt, f"{user}\x00{code}".encode(), "sha256").hex()

    def issue(self, user: str, now: float, count: int = 10) -> list[str]:
        """New codes for ``user`` (the old ones stop working)."""
        self.revoke(user, now)
        salt = self.random.random_bytes(16)
        codes = []
        digests = []
        for _ in range(count):
            raw = self.random.random_bytes(12)
            text = "".join(_B32[b & 31] for b in raw)
            code = f"{text[0:4]}-{text[4:8]}-{text[8:12]}"
            codes.append(code)
            digest = self._digest(user, salt, code)
            digests.append(digest)
            self.store.put_once(f"recovery:{user}:{digest}", b"1", _TEN_YEARS, now)
        record = {"salt": salt.hex(), "digests": digests, "issued": now}
        self.store.put(f"recovery:{user}", json.dumps(record).encode())
        self._emit({"event": "recovery_codes_issued", "user": user, "count": count})
        return codes

    def revoke(self, user: str, now: float) -> None:
        raw = self.store.get(f"recovery:{user}")
        if raw is None:
            return
        for digest in json.loads(raw).get("digests", []):
            self.store.take(f"recovery:{user}:{digest}", now)
        self.store.delete(f"recovery:{user}")

    def remaining(self, user: str, now: float) -> int:
        raw = self.store.get(f"recovery:{user}")
        if raw is None:
            return 0
        digests = json.loads(raw).get("digests", [])
        return sum(1 for d in digests if self.store.peek(f"recovery:{user}:{d}", now) is not None)

    def use(self, user: str, code: str, now: float) -> Verdict:
        """Consume ``code`` if it is one of ``user``'s unused codes."""
        raw = self.store.get(f"recovery:{user}")
        if raw is None:
            return Verdict.reject("bad_code")
        salt = bytes.fromhex(json.loads(raw)["salt"])
        digest = self._digest(user, salt, code.strip().lower())
        if self.store.take(f"recovery:{user}:{digest}", now) is None:
            return Verdict.reject("bad_code")
        self._emit({"event": "recovery_code_used", "user": user})
        return Verdict.accept(user)

    def _emit(self, event: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit(event)


@dataclass
class SecondFactors:
    """The per-user second factor of a deployment."""

    users: Directory
    store: Store
    sealer: Sealer
    otp_policy: OtpPolicy | None = None
    audit: AuditSink | None = None
    random: RandomSource = SYSTEM_RANDOM
    approval_bridge: bool = False  # eapkit serve runs the WebAuthn approval bridge

    def __post_init__(self) -> None:
        self.totp = OtpVerifier(self.store, self.sealer, self.otp_policy, audit=self.audit)
        self.yubikey = YubicoVerifier(self.store, self.sealer, audit=self.audit)
        self.recovery = RecoveryCodes(self.store, random=self.random, audit=self.audit)
        self.bypass = BypassCodes(self.store, self.sealer, random=self.random, audit=self.audit)

    def kind(self, user: str) -> str:
        record = self.users.get(user)
        return record.second_factor if record is not None else "none"

    def key(self, user: str) -> str:
        """What ``user``'s factors are stored under: the directory's stable identifier
        (LDAP entryUUID, so a rename keeps them) or, by default, the name."""
        record = self.users.get(user)
        return record.factor_key if record is not None else user

    def needs_code(self, user: str) -> bool:
        kind = self.kind(user)
        # A ``webauthn`` user's second step is the bridge's approval, after the password;
        # without the bridge they need a code (a recovery code): fail closed.
        return kind != "none" and not (kind == "webauthn" and self.approval_bridge)

    def check_code(self, user: str, code: str, now: float, /) -> Verdict:
        """One code (TOTP, YubiKey OTP or recovery code) for ``user``; store failures
        fail closed with ``store_unavailable`` (``record_not_sealed`` for a plain record
        when sealing keys are configured).  An accepted code proves the device."""
        return _proved(self._check_code(user, code, now), _CODE)

    def _check_code(self, user: str, code: str, now: float) -> Verdict:
        kind, key = self.kind(user), self.key(user)
        try:
            if BYPASS_PATTERN.fullmatch(code.strip().lower()):  # eapkit.bypass
                return self.bypass.use(user, code, now)
            if RECOVERY_PATTERN.fullmatch(code.strip().lower()):
                return _named(self.recovery.use(key, code, now), key, user)
            if kind == "totp":
                return _named(self.totp.verify(key, code, now).to_verdict(), key, user)
            if kind == "yubikey":
                return _named(self.yubikey.verify(key, code, now).to_verdict(), key, user)
        except StoreUnavailable as exc:  # a plain record: record_not_sealed
            return Verdict.reject(store_refusal(exc), str(exc))
        return Verdict.reject("no_second_factor")

    def _code_length(self, user: str, response: str) -> int | None:
        kind = self.kind(user)
        if kind == "none":
            return None
        if len(response) > BYPASS_LENGTH and BYPASS_PATTERN.fullmatch(
            response[-BYPASS_LENGTH:].lower()
        ):
            return BYPASS_LENGTH
        if len(response) > 14 and RECOVERY_PATTERN.fullmatch(response[-14:].lower()):
            return 14
        if kind == "yubikey":
            return YUBIKEY_OTP_LENGTH
        digits = 6
        match = re.search(r"\d+$", response)
        if match is not None and len(match.group()) >= 8 and self._totp_digits(user) == 8:
            digits = 8
        return digits

    def _totp_digits(self, user: str) -> int:
        return totp_digits(self.store, self.key(user))

    def pap(self, password: ResponseCheck) -> TwoRoundCheck:
        """Password followed by the code, in one response; the password alone gets a
        CHALLENGE and :meth:`check_code` checks the second round."""
        return _PasswordWithCode(self, password)

    def prompt(self, user: str) -> str:
        return "YubiKey OTP: " if self.kind(user) == "yubikey" else "One-time code: "

    def gtc(self, password: ResponseCheck) -> PasswordThenCode:
        """The password in one GTC round, the code in the next."""
        return PasswordThenCode(password, self.check_code, self.needs_code)

    def code_only(self) -> ResponseCheck:
        """GTC whose only answer is the code: for a deployment where the device already
        proved itself (a certificate in IKE_AUTH) and EAP carries the second factor."""
        return self.check_code


@dataclass(frozen=True)
class _PasswordWithCode:
    factors: SecondFactors
    password: ResponseCheck

    def __call__(self, user: str, response: str, now: float, /) -> Verdict:
        factors, password = self.factors, self.password
        if not factors.needs_code(user):
            return password(user, response, now)
        length = factors._code_length(user, response)
        assert length is not None
        # One reading, one password check (one PBKDF2), whatever the case: a 2FA user's
        # login costs what anyone else's does (eapkit.authz, "equal cost").  The response
        # is the password followed by the code when it ends in something shaped like
        # the user's code; otherwise it is the password alone, answered with a
        # challenge for the code.
        tail = response[-length:]
        if len(response) > length and _code_shaped(factors.kind(user), tail):
            first = password(user, response[:-length], now)
            if not first.ok:
                return first
            second = factors.check_code(user, tail, now)
            if not second.ok:
                return second
            return Verdict(True, "ok", first.user or user, factors=_PASSWORD_AND_CODE)
        alone = password(user, response, now)
        if alone.ok:
            # the password is proved; the code round (:meth:`second`) adds the device
            prompt = factors.prompt(user)
            return Verdict(False, CHALLENGE, alone.user or user, prompt, alone.factors)
        return alone

    def second(self, user: str, code: str, now: float, /) -> Verdict:
        """The code round after a CHALLENGE: the password was proved in the first."""
        return _proved(self.factors.check_code(user, code, now), _PASSWORD_AND_CODE)


_MODHEX = re.compile(r"[cbdefghijklnrtuv]+")


def _code_shaped(kind: str, tail: str) -> bool:
    """Is ``tail`` shaped like a code of the user's ``kind`` (digits for TOTP, modhex
    for a YubiKey OTP) or a recovery code?"""
    if RECOVERY_PATTERN.fullmatch(tail.lower()) or BYPASS_PATTERN.fullmatch(tail.lower()):
        return True
    if kind == "yubikey":
        return _MODHEX.fullmatch(tail) is not None
    return tail.isascii() and tail.isdigit()


def sealing_keys(
    db: Path,
    *,
    keys_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    create: bool = True,
) -> Sealer:
    """The keys that seal second-factor secrets: ``$EAPKIT_STORE_KEYS`` when set (and
    no ``keys_file`` is named), else ``keys_file``, by default ``<db stem>-store.key``
    beside the user database, made (mode 0600) on first use when ``create``."""
    env = os.environ if environ is None else environ
    spec = None if keys_file else env.get(ENV_VAR)
    if not spec:
        path = keys_file or db.with_name(db.stem + "-store.key")
        if create and not path.exists():
            private_dir(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("k1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
        try:
            spec = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"sealing keys: set {ENV_VAR} or a keys file ({path}: {exc.strerror})"
            ) from None
    return Sealer.from_config(spec)


def open_second_factors(
    users: Directory,
    db: Path,
    *,
    store_url: str | None = None,
    keys_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    create_keys: bool = True,
    audit: AuditSink | None = None,
) -> SecondFactors:
    """Second factors on ``store_url`` (default: the user database's own SQLite file)
    with the keys of :func:`sealing_keys`."""
    store = open_store(store_url or f"sqlite:{db}")
    sealer = sealing_keys(db, keys_file=keys_file, environ=environ, create=create_keys)
    return SecondFactors(users, store, sealer, audit=audit)


def code_digest(code: str) -> str:
    """A short non-reversible tag of a code for logs that must correlate replays."""
    return hashlib.sha256(code.encode()).hexdigest()[:12]
