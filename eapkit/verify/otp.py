"""HOTP (RFC 4226) and TOTP (RFC 6238): the generators, and a verifier with a policy.

The story of one :meth:`OtpVerifier.verify` call, the hot path of a RADIUS server::

    code text --normalise--> digits          (malformed: spaces dropped, nothing guessed)
    user --cache--> prepared credential      (secret unsealed once, HMAC keyed once)
    expected step --> HMAC, truncate, constant-time compare
    store.advance_unless_locked(step if it matched)
                                             one atomic store call: locked out? (RFC 4226
                                             §7.3, shared by the cluster); else advance
                                             (RFC 6238 §5.2: exactly one node of a cluster
                                             accepts a code; else replayed), failures reset
    no match: the rest of the window, nearest first; drift recorded (RFC 6238 §6)

The store call is the same whether or not the code matched, and a locked-out
credential answers before anything else happens in it, so while locked out a right
code and a wrong one cost the same: timing does not turn the lockout into an oracle.

A wrong code increments an expiring failure tally; from ``max_failures`` on, the
credential is locked out for a delay that doubles with every further failure, up to
``lockout_max``; a success resets it.  Replays and malformed input do not count: they
cannot be brute force and would lock out users who press Enter twice.

Resynchronisation (RFC 4226 §7.4, and the same for TOTP): two consecutive codes found
in a wide window move the credential's counter (HOTP) or recorded drift (TOTP).

HMAC is computed from a keyed state (RFC 2104 §2: the keyed pads are the same for every
message), ``cryptography``'s HMAC copied per message: the same bytes as
:func:`hmac.digest`, with the per-message work of two hash finalisations.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes as _crypto_hashes
from cryptography.hazmat.primitives import hmac as _crypto_hmac

from eapkit.errors import ConfigError
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.store.base import Store, StoreUnavailable, composed_advance_unless_locked
from eapkit.store.records import RecordNotSealed, SealedRecords
from eapkit.store.sealing import Sealer, SealError
from eapkit.verify.verdict import (
    BAD_CODE,
    LOCKED_OUT,
    MALFORMED,
    OK,
    REPLAYED,
    UNKNOWN_USER,
    OtpVerdict,
    UnsealedRecord,
    store_refusal,
)

__all__ = [
    "ALGORITHMS",
    "OtpCredential",
    "OtpPolicy",
    "OtpVerifier",
    "b32_secret",
    "hotp",
    "normalise_code",
    "totp",
    "totp_digits",
]

ALGORITHMS: Mapping[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}
_CRYPTO_HASHES: Mapping[str, Callable[[], _crypto_hashes.HashAlgorithm]] = {
    "sha1": _crypto_hashes.SHA1,
    "sha256": _crypto_hashes.SHA256,
    "sha512": _crypto_hashes.SHA512,
}
MIN_DIGITS, MAX_DIGITS = 6, 10  # RFC 4226 §5.3 (at least 6); 31 bits give at most 10
MAX_INPUT = 64  # longer answers are refused before any work

AuditSink = Callable[[dict[str, Any]], None]


# -- the plain generators ------------------------------------------------------------


class _KeyedHmac:
    """HMAC (RFC 2104) with the key schedule done once: the keyed state (inner and outer
    pads absorbed) is copied per message, which leaves two hash finalisations per code."""

    __slots__ = ("state",)

    def __init__(self, key: bytes, algorithm: str) -> None:
        self.state = _crypto_hmac.HMAC(key, _CRYPTO_HASHES[algorithm]())

    def digest(self, message: bytes) -> bytes:
        h = self.state.copy()
        h.update(message)
        return h.finalize()


def _check_params(digits: int, algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    if not MIN_DIGITS <= digits <= MAX_DIGITS:
        raise ValueError(f"digits must be {MIN_DIGITS}..{MAX_DIGITS}")


def _truncate(mac: bytes) -> int:
    """Dynamic truncation, RFC 4226 §5.3 (the offset is the low nibble of the last byte)."""
    offset = mac[-1] & 0x0F
    return int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF


def hotp(secret: bytes, counter: int, digits: int = 6, algorithm: str = "sha1") -> str:
    """HOTP(K, C) = Truncate(HMAC(K, C)) mod 10^digits, zero-padded (RFC 4226 §5.3).

    ``algorithm`` may also be sha256 or sha512 (RFC 6238 §1.2).
    """
    _check_params(digits, algorithm)
    if not 0 <= counter < 2**64:
        raise ValueError("counter must fit in 8 bytes")
    mac = hmac.digest(secret, counter.to_bytes(8, "big"), algorithm)
    return str(_truncate(mac) % 10**digits).zfill(digits)


def totp_step(at: float, period: int = 30, t0: int = 0) -> int:
    """T = floor((at - T0) / X), RFC 6238 §4.2."""
    return int((at - t0) // period)


def totp(
    secret: bytes,
    at: float,
    digits: int = 6,
    algorithm: str = "sha1",
    period: int = 30,
    t0: int = 0,
) -> str:
    """TOTP = HOTP(K, T) with T the time step of ``at`` (RFC 6238 §4.2)."""
    if period <= 0:
        raise ValueError("period must be positive")
    return hotp(secret, totp_step(at, period, t0), digits, algorithm)


def b32_secret(text: str) -> bytes:
    """A base32 secret as authenticator apps show it (any case, spaces, no padding)."""
    cleaned = "".join(text.split()).upper().rstrip("=")
    try:
        return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a base32 secret") from exc


# -- input normalisation -------------------------------------------------------------


def normalise_code(text: str, digits: int) -> tuple[str | None, str]:
    """(the code as ASCII digits, "") or (None, why it is malformed).

    Spaces (and tabs) are dropped: people type "123 456".  Nothing else is rewritten:
    full-width or other non-ASCII digits are refused with their own reason rather than
    silently mapped, so what was checked is what was typed.
    """
    if len(text) > MAX_INPUT:
        return None, "too long"
    code = text.replace(" ", "").replace("\t", "").strip()
    if not code:
        return None, "empty"
    if not (code.isascii() and code.isdigit()):
        if any("\uff10" <= ch <= "\uff19" for ch in code):
            return None, "full-width digits"
        if all(unicodedata.category(ch) == "Nd" for ch in code):
            return None, "non-ASCII digits"
        return None, "not only digits"
    if len(code) != digits:
        return None, f"expected {digits} digits, got {len(code)}"
    return code, ""


# -- credentials and policy ----------------------------------------------------------


@dataclass(frozen=True)
class OtpCredential:
    """An enrolled OATH token: the shared secret and its parameters (RFC 4226, RFC 6238)."""

    secret: bytes = field(repr=False)
    kind: Literal["totp", "hotp"] = "totp"
    algorithm: str = "sha1"
    digits: int = 6
    period: int = 30
    t0: int = 0

    def __post_init__(self) -> None:
        _check_params(self.digits, self.algorithm)
        if self.kind not in ("totp", "hotp"):
            raise ValueError("kind must be totp or hotp")
        if len(self.secret) < 16:
            raise ValueError("secret must be at least 128 bits (RFC 4226 §4 R6)")
        if self.period <= 0:
            raise ValueError("period must be positive")


@dataclass(frozen=True)
class OtpPolicy:
    """How forgiving a verifier is.  Defaults follow RFC 6238 §5.2 and RFC 4226 §7."""

    look_back: int = 1  # TOTP steps before the expected one; HOTP: replay recognition
    look_ahead: int = 1  # TOTP steps after the expected one
    hotp_look_ahead: int = 5  # HOTP counters after the next expected one
    track_drift: bool = True
    resync_window: int = 50  # steps (TOTP: each side) searched by resync()
    max_failures: int = 5
    lockout_base: float = 30.0  # seconds, doubled for every failure past max_failures
    lockout_max: float = 900.0
    failure_ttl: float = 3600.0  # failures are forgotten this long after the last one
    # A cached credential is used this long without looking at the store; then the
    # record is read again (cheap when unchanged), so a removal or re-enrollment on
    # another node takes effect within cache_ttl.
    cache_ttl: float = 30.0

    def __post_init__(self) -> None:
        for name in ("look_back", "look_ahead", "hotp_look_ahead", "resync_window"):
            if getattr(self, name) < 0:
                raise ConfigError(f"OtpPolicy.{name} must not be negative")
        if self.max_failures < 1:
            raise ConfigError("OtpPolicy.max_failures must be at least 1")
        if not 0 < self.lockout_base <= self.lockout_max < self.failure_ttl:
            raise ConfigError("OtpPolicy needs 0 < lockout_base <= lockout_max < failure_ttl")

    def lockout(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failures (0 below max_failures)."""
        if failures < self.max_failures:
            return 0.0
        exponent = min(failures - self.max_failures, 62)
        return float(min(self.lockout_base * 2.0**exponent, self.lockout_max))

    def offsets(self) -> tuple[int, ...]:
        """TOTP window offsets, nearest first: 0, -1, +1, -2, +2, ..."""
        out = [0]
        for i in range(1, max(self.look_back, self.look_ahead) + 1):
            if i <= self.look_back:
                out.append(-i)
            if i <= self.look_ahead:
                out.append(i)
        return tuple(out)


# -- the verifier --------------------------------------------------------------------


class _Prepared:
    """A credential ready for the hot path: HMAC keyed, store keys built."""

    __slots__ = (
        "cid",
        "digits",
        "drift",
        "drift_key",
        "fail_key",
        "fmt",
        "hmac",
        "is_totp",
        "loaded_at",
        "mod",
        "period",
        "raw",
        "step_key",
        "t0",
        "user",
    )

    def __init__(
        self, user: str, cid: str, cred: OtpCredential, drift: int, now: float, raw: bytes = b""
    ) -> None:
        self.raw = raw  # the stored record, to tell cheaply whether it changed
        self.user = user
        self.cid = cid
        self.is_totp = cred.kind == "totp"
        self.digits = cred.digits
        self.period = cred.period
        self.t0 = cred.t0
        self.mod = 10**cred.digits
        self.fmt = f"%0{cred.digits}d"
        self.hmac = _KeyedHmac(cred.secret, cred.algorithm).state
        self.step_key = f"otp:step:{cid}"
        self.fail_key = f"otp:fail:{cid}"
        self.drift_key = f"otp:drift:{cid}"
        self.drift = drift
        self.loaded_at = now

    def code(self, step: int) -> str:
        h = self.hmac.copy()
        h.update(step.to_bytes(8, "big"))
        mac = h.finalize()
        value: str = self.fmt % ((_U32(mac, mac[-1] & 0x0F)[0] & 0x7FFFFFFF) % self.mod)
        return value


def _record_key(user: str) -> str:
    return f"otp:cred:{user}"


def totp_digits(store: Store, user: str) -> int:
    """How many digits ``user``'s enrolled code has (RFC 4226 §5.3 ``Digit``): 6 when no
    credential is enrolled or its record does not read.  The digit count sits outside
    the seal, so no key is needed: a caller can split "password then code" cheaply."""
    raw = store.get(_record_key(user))
    try:
        return int(json.loads(raw)["digits"]) if raw is not None else 6
    except (ValueError, KeyError, TypeError):
        return 6


_compare = hmac.compare_digest
_new = tuple.__new__  # builds an OtpVerdict without NamedTuple's Python-level __new__
_U32 = struct.Struct(">I").unpack_from


_DUMMY = _Prepared("", "", OtpCredential(b"\x00" * 20), 0, 0.0)


class OtpVerifier:
    """Verifies TOTP/HOTP codes of users enrolled in a :class:`~eapkit.store.base.Store`.

    ``sealer`` encrypts secrets at rest; it may be omitted only with a
    :class:`~eapkit.store.memory.MemoryStore`.  ``audit`` receives a dict for every
    enrollment, lockout and resynchronisation (never a secret or a code).
    Thread-safe as far as the store is; the credential cache is per process.
    """

    def __init__(
        self,
        store: Store,
        sealer: Sealer | None = None,
        policy: OtpPolicy | None = None,
        *,
        rand: RandomSource = SYSTEM_RANDOM,
        audit: AuditSink | None = None,
    ) -> None:
        self._records = SealedRecords(store, sealer, what="OTP secrets")
        self.store = store
        # A store written before Store.advance_unless_locked existed gets it composed
        # from tally/advance/delete (the old behaviour): same answers, not one atomic step.
        gate = getattr(store, "advance_unless_locked", None)
        self._advance_unless_locked: Callable[
            [str, int | None, str, int, float], tuple[bool, int, float]
        ] = gate if gate is not None else partial(composed_advance_unless_locked, store)
        self.policy = policy or OtpPolicy()
        self._rand = rand
        self._audit = audit
        self._cache: dict[str, _Prepared] = {}
        self._offsets = self.policy.offsets()
        self._max_failures = self.policy.max_failures
        self._cache_ttl = self.policy.cache_ttl

    # -- enrollment --------------------------------------------------------------------

    def enroll(self, user: str, credential: OtpCredential, now: float, *, counter: int = 0) -> str:
        """Store ``credential`` for ``user`` (replacing any); returns its id.

        A new id gives the credential fresh replay, drift and failure state.  ``counter``
        is the HOTP counter of the next code the token will show.
        """
        cid = self._rand.random_bytes(12).hex()
        record = {
            "v": 1,
            "cid": cid,
            "kind": credential.kind,
            "alg": credential.algorithm,
            "digits": credential.digits,
            "period": credential.period,
            "t0": credential.t0,
            "enrolled": now,
        }
        if counter > 0:
            self.store.advance(f"otp:step:{cid}", counter - 1)
        self._records.write(_record_key(user), record, credential.secret)
        self._cache.pop(user, None)
        self._emit({"event": "otp_enrolled", "user": user, "kind": credential.kind, "cid": cid})
        return cid

    def remove(self, user: str) -> bool:
        self._cache.pop(user, None)
        return self.store.delete(_record_key(user))

    def forget(self, user: str | None = None) -> None:
        """Drop cached credentials (all, or one user's) so the next call reloads them."""
        if user is None:
            self._cache.clear()
        else:
            self._cache.pop(user, None)

    def _load(self, user: str, now: float) -> _Prepared | None:
        key = _record_key(user)
        raw = self.store.get(key)
        if raw is None:
            self._cache.pop(user, None)
            return None
        cached = self._cache.get(user)
        if cached is not None and cached.raw == raw:
            # Unchanged record (the usual case): skip the unsealing and the keying, but
            # pick up the drift another node may have recorded.
            cached.drift = self._read_drift(cached.drift_key)
            cached.loaded_at = now
            return cached
        try:
            record, secret = self._records.open(key, raw)
            cred = OtpCredential(
                secret,
                record["kind"],
                record["alg"],
                record["digits"],
                record["period"],
                record["t0"],
            )
            cid = str(record["cid"])
        except RecordNotSealed:
            raise UnsealedRecord("OTP record of a user is not sealed (record_not_sealed)") from None
        except (SealError, ValueError, KeyError, TypeError) as exc:
            # Fail closed; the type says which, the text may not say more (secret nearby).
            raise StoreUnavailable(f"OTP record of a user does not load ({_why(exc)})") from None
        drift = self._read_drift(f"otp:drift:{cid}")
        prepared = _Prepared(user, cid, cred, drift, now, raw)
        self._cache[user] = prepared
        return prepared

    def _read_drift(self, key: str) -> int:
        raw = self.store.get(key)
        try:
            return int(raw) if raw is not None else 0
        except ValueError:
            return 0

    def _prepared(self, user: str, now: float) -> _Prepared | None:
        p = self._cache.get(user)
        if p is not None and 0.0 <= now - p.loaded_at < self._cache_ttl:
            return p
        return self._load(user, now)

    # -- verification ------------------------------------------------------------------

    def verify(self, user: str, code: str, now: float) -> OtpVerdict:
        """Check one code for ``user`` at time ``now``; never raises for bad input."""
        # The common case (cached credential, TOTP, code of the expected step) runs
        # inline: on this path Python call overhead costs as much as the HMAC.
        try:
            p = self._cache.get(user)
            if p is None or not 0.0 <= now - p.loaded_at < self._cache_ttl:
                p = self._load(user, now)
                if p is None:
                    _DUMMY.code(0)  # roughly the cost of a known user's first candidate
                    return OtpVerdict(False, UNKNOWN_USER)
            if not (len(code) == p.digits and code.isascii() and code.isdigit()):
                normal, why = normalise_code(code, p.digits)
                if normal is None:
                    return OtpVerdict(False, MALFORMED, user=user, detail=why)
                code = normal
            if not p.is_totp:
                return self._verify_hotp(p, code, now)
            clock = int((now - p.t0) // p.period)
            step = clock + p.drift
            matched = False
            if step >= 0:
                h = p.hmac.copy()
                h.update(step.to_bytes(8, "big"))
                mac = h.finalize()
                value = (_U32(mac, mac[-1] & 0x0F)[0] & 0x7FFFFFFF) % p.mod
                matched = _compare(p.fmt % value, code)
            # One store call whether or not the code matched: it reads the lockout tally
            # and, for a match, advances the step and clears the tally, atomically.  A
            # locked-out credential costs the same either way, so timing tells nothing.
            advanced, failures, last_failure = self._advance_unless_locked(
                p.step_key, step if matched else None, p.fail_key, self._max_failures, now
            )
            if advanced:
                return _new(OtpVerdict, (True, OK, step, user, p.drift, None, ""))
            if failures >= self._max_failures:
                until = last_failure + self.policy.lockout(failures)
                if now < until:
                    return OtpVerdict(False, LOCKED_OUT, user=user, retry_after=until - now)
                if matched:  # the lockout has run out; the tally stays until a success
                    return self._accept(p, step, clock, failures)
            elif matched:
                return OtpVerdict(False, REPLAYED, step, user)
            return self._verify_totp_rest(p, code, now, clock, failures)
        except StoreUnavailable as exc:
            return OtpVerdict(False, store_refusal(exc), user=user, detail=str(exc))

    def verify_many(self, items: Iterable[tuple[str, str]], now: float) -> list[OtpVerdict]:
        """Verify many (user, code) pairs at one time ``now``, in order."""
        verify = self.verify
        return [verify(user, code, now) for user, code in items]

    def _verify_totp_rest(
        self, p: _Prepared, code: str, now: float, clock: int, failures: int
    ) -> OtpVerdict:
        """The window after the expected step (checked inline by verify)."""
        center = clock + p.drift
        compare = _compare
        for offset in self._offsets[1:]:
            step = center + offset
            if step >= 0 and compare(p.code(step), code):
                return self._accept(p, step, clock, failures)
        return self._fail(p, now)

    def _verify_hotp(self, p: _Prepared, code: str, now: float) -> OtpVerdict:
        """RFC 4226 §7.2: the next counter first (inline, as for TOTP), then look-ahead."""
        store = self.store
        last = store.counter(p.step_key)
        following = 0 if last is None else last + 1
        matched = _compare(p.code(following), code)
        advanced, failures, last_failure = self._advance_unless_locked(
            p.step_key, following if matched else None, p.fail_key, self._max_failures, now
        )
        if advanced:
            return _new(OtpVerdict, (True, OK, following, p.user, None, None, ""))
        if failures >= self._max_failures:
            until = last_failure + self.policy.lockout(failures)
            if now < until:
                return OtpVerdict(False, LOCKED_OUT, user=p.user, retry_after=until - now)
            if matched:
                return self._accept(p, following, None, failures)
        elif matched:  # another node took this counter between our read and advance
            return OtpVerdict(False, REPLAYED, following, p.user)
        compare = _compare
        for counter in range(following + 1, following + self.policy.hotp_look_ahead + 1):
            if compare(p.code(counter), code):
                return self._accept(p, counter, None, failures)
        for counter in range(following - 1, max(following - 1 - self.policy.look_back, -1), -1):
            if compare(p.code(counter), code):
                return OtpVerdict(False, REPLAYED, counter, p.user)
        return self._fail(p, now)

    def _accept(self, p: _Prepared, step: int, clock: int | None, failures: int) -> OtpVerdict:
        if not self.store.advance(p.step_key, step):
            return OtpVerdict(False, REPLAYED, step, p.user)
        if failures:
            self.store.delete(p.fail_key)
        drift = None
        if clock is not None:
            drift = step - clock
            if self.policy.track_drift and drift != p.drift:
                self._set_drift(p, drift)
                drift = p.drift
        return OtpVerdict(True, OK, step, p.user, drift)

    def _set_drift(self, p: _Prepared, drift: int) -> None:
        # Bounded by the resync window: drift only widens what resync could find anyway.
        bound = max(self.policy.resync_window, 1)
        p.drift = max(-bound, min(bound, drift))
        self.store.put(p.drift_key, str(p.drift).encode())

    def _fail(self, p: _Prepared, now: float) -> OtpVerdict:
        failures = self.store.incr(p.fail_key, self.policy.failure_ttl, now)
        delay = self.policy.lockout(failures)
        if delay:
            self._emit(
                {
                    "event": "otp_locked_out",
                    "user": p.user,
                    "cid": p.cid,
                    "failures": failures,
                    "until": now + delay,
                }
            )
            return OtpVerdict(False, BAD_CODE, user=p.user, retry_after=delay)
        return OtpVerdict(False, BAD_CODE, user=p.user)

    # -- resynchronisation (RFC 4226 §7.4) ----------------------------------------------

    def resync(self, user: str, first: str, second: str, now: float) -> OtpVerdict:
        """Accept two consecutive codes found anywhere in the wide resync window.

        HOTP: the counter moves past them.  TOTP: the drift becomes the offset of the
        second code, so a token whose clock runs late keeps working.  Lockout applies,
        and a failed resync counts as a failure.
        """
        try:
            p = self._prepared(user, now)
            if p is None:
                return OtpVerdict(False, UNKNOWN_USER)
            codes = []
            for text in (first, second):
                normal, why = normalise_code(text, p.digits)
                if normal is None:
                    return OtpVerdict(False, MALFORMED, user=user, detail=why)
                codes.append(normal)
            failures, last_failure = self.store.tally(p.fail_key, now)
            until = last_failure + self.policy.lockout(failures)
            if failures >= self.policy.max_failures and now < until:
                return OtpVerdict(False, LOCKED_OUT, user=user, retry_after=until - now)
            window = self.policy.resync_window
            clock: int | None
            if p.is_totp:
                clock = int((now - p.t0) // p.period)
                order = [clock]
                for i in range(1, window + 1):
                    order += [clock - i, clock + i]
                candidates = [s for s in order if s >= 0]
            else:
                clock = None
                last = self.store.counter(p.step_key)
                following = 0 if last is None else last + 1
                candidates = list(range(following, following + window + 1))
            compare = hmac.compare_digest
            for step in candidates:
                if compare(p.code(step), codes[0]) and compare(p.code(step + 1), codes[1]):
                    verdict = self._accept(p, step + 1, clock, failures)
                    if verdict.ok:
                        self._emit(
                            {"event": "otp_resynced", "user": user, "cid": p.cid, "step": step + 1}
                        )
                    return verdict
            return self._fail(p, now)
        except StoreUnavailable as exc:
            return OtpVerdict(False, store_refusal(exc), user=user, detail=str(exc))

    def _emit(self, event: dict[str, Any]) -> None:
        if self._audit is not None:
            self._audit(event)


def otpauth_uri(account: str, credential: OtpCredential, *, issuer: str = "eapkit") -> str:
    """The Key URI an authenticator app scans (Google Authenticator Key Uri Format):
    ``otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=...&algorithm=...&digits=...&period=...``."""
    from urllib.parse import quote, urlencode

    label = quote(f"{issuer}:{account}", safe=":@")
    params = {
        "secret": base64.b32encode(credential.secret).decode().rstrip("="),
        "issuer": issuer,
        "algorithm": credential.algorithm.upper(),
        "digits": str(credential.digits),
    }
    if credential.kind == "totp":
        params["period"] = str(credential.period)
    return f"otpauth://{credential.kind}/{label}?{urlencode(params, quote_via=quote)}"


def _why(exc: Exception) -> str:
    """What a record that does not load says: its reason code or its type, no text."""
    return str(getattr(exc, "reason", type(exc).__name__))
