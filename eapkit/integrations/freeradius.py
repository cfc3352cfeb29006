"""FreeRADIUS (rlm_python3) module: password + one-time code from eapkit's store.

FreeRADIUS 3.2 loads this module into the Python it embeds (Debian 12: its own
``/usr/bin/python3`` 3.11, not a virtualenv) and calls one function per section with
the request's attributes as ``((name, value), ...)``; each returns an rcode, or
``(rcode, reply_pairs, config_pairs)``.  With ``python_path`` pointing at the directory
that holds the ``eapkit`` package, the functions here check the same user directory
and second factors as ``eapkit serve`` (same SQLite file, same sealing keys): a code
accepted by either is refused by both.  Only the standard library and ``cryptography``
(Debian's ``python3-cryptography``) are imported.

``authorize``
    a request with a User-Password (plain PAP, or PAP inside TTLS) gets
    ``Auth-Type := eapkit`` (the instance name, see ``auth_type`` below).
``authenticate``
    the User-Password is the password followed by the code (6 or 8 digits for TOTP,
    the 44 characters of a YubiKey OTP, or a recovery code), checked by
    :meth:`eapkit.second_factor.SecondFactors.pap`.  The password alone, for a user
    who needs a code: with ``challenge = yes`` an Access-Challenge (RFC 2865 §4.4)
    asks for the code, whose answer comes back with the State; without, and always
    inside a TTLS/PEAP tunnel (no way to send the peer a challenge), a reject.

Verdicts become rcodes: ``ok`` OK, ``unknown_user`` NOTFOUND, ``locked_out``
USERLOCK, ``store_unavailable`` FAIL (fail closed), any other refusal REJECT.  The
reason goes to FreeRADIUS's log as one JSON line, never to the wire.

Configuration (``docs/freeradius.md``), in the module's ``config { }`` section:

``db``              the user directory, ``eapkit serve --db`` (required)
``store``           store URL (default ``sqlite:<db>``, as ``eapkit serve``)
``directory``       ``local`` (the users in ``db``, the default) or ``store`` (in the
                    store), as ``eapkit serve``
``store_keys_file`` sealing keys ``kid:base64key`` (default: ``$EAPKIT_STORE_KEYS``,
                    else ``<db stem>-store.key`` beside the db, as ``eapkit serve``)
``auth_type``       the Auth-Type authorize sets (default ``eapkit``)
``challenge``       ``yes`` to ask for a missing code with Access-Challenge
``challenge_ttl``   seconds a challenge stays answerable (default 120)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from eapkit.credentials import CHALLENGE, ResponseCheck, Verdict
from eapkit.directory import RequestScoped, open_directory, request_scope
from eapkit.errors import ConfigError
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.second_factor import SecondFactors, open_second_factors
from eapkit.store.base import StoreUnavailable

__all__ = ["Adapter", "authenticate", "authorize", "detach", "instantiate"]

Pairs = tuple[tuple[str, ...], ...]
Result = int | tuple[int, Pairs, Pairs]

# RLM_MODULE_* of FreeRADIUS's modules.h; the running server's radiusd module has the
# same numbers (mods-config/python3/radiusd.py).
REJECT, FAIL, OK, HANDLED, INVALID, USERLOCK, NOTFOUND, NOOP, UPDATED = range(9)
L_AUTH, L_INFO, L_ERR = 2, 3, 4

_RCODES = {
    "ok": OK,
    "unknown_user": NOTFOUND,
    "locked_out": USERLOCK,
    "store_unavailable": FAIL,
}


def _no_log(level: int, text: str) -> None:
    pass


def _flag(value: str) -> bool:
    return value.strip().lower() in ("yes", "true", "1", "on")


class Adapter:
    """The module's state: the checks, and the FreeRADIUS-facing translation.

    ``log(level, text)`` is ``radiusd.radlog`` inside FreeRADIUS.
    """

    def __init__(
        self,
        second: SecondFactors,
        *,
        auth_type: str = "eapkit",
        challenge: bool = False,
        challenge_ttl: float = 120.0,
        log: Callable[[int, str], None] | None = None,
        rand: RandomSource = SYSTEM_RANDOM,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.second = second
        self.check: ResponseCheck = second.pap(second.users.check_password)
        self.auth_type = auth_type
        self.challenge = challenge
        self.challenge_ttl = challenge_ttl
        self._log = log or _no_log
        self._rand = rand
        self._clock = clock

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
        log: Callable[[int, str], None] | None = None,
    ) -> Adapter:
        """Build from the module's ``config { }`` items (all strings)."""
        env = os.environ if environ is None else environ
        db_text = str(config.get("db", "")).strip()
        if not db_text:
            raise ConfigError("the config section needs db = <eapkit serve --db>")
        db = Path(db_text)
        if not db.exists():
            raise ConfigError(f"user database {db} does not exist")
        store_url = str(config.get("store") or "") or None
        # One read of the user's record per authenticate call (eapkit.directory.scope).
        kind = str(config.get("directory") or "local")
        users = RequestScoped(open_directory(kind, db, store_url))
        sink = log or _no_log

        def audit(event: dict[str, Any]) -> None:  # lockouts, recovery-code use
            sink(L_AUTH, "eapkit: " + json.dumps(event, sort_keys=True))

        keyfile = config.get("store_keys_file")
        second = open_second_factors(
            users,
            db,
            store_url=store_url,
            keys_file=Path(str(keyfile)) if keyfile else None,
            environ=env,
            create_keys=False,
            audit=audit,
        )
        return cls(
            second,
            auth_type=str(config.get("auth_type") or "eapkit"),
            challenge=_flag(str(config.get("challenge", "no"))),
            challenge_ttl=float(config.get("challenge_ttl") or 120.0),
            log=sink,
        )

    # -- the sections -------------------------------------------------------------------

    def authorize(self, request: Sequence[tuple[str, str]]) -> Result:
        attrs = _attributes(request)
        if "User-Password" not in attrs or "User-Name" not in attrs:
            return NOOP
        return UPDATED, (), (("Auth-Type", ":=", self.auth_type),)

    def authenticate(self, request: Sequence[tuple[str, str]]) -> Result:
        with request_scope():
            return self._authenticate(request)

    def _authenticate(self, request: Sequence[tuple[str, str]]) -> Result:
        attrs = _attributes(request)
        user, response = attrs.get("User-Name"), attrs.get("User-Password")
        if not user or response is None:
            return INVALID
        now = self._clock()
        state = attrs.get("State")
        if self.challenge and state:
            verdict = self._answer(user, state, response, now)
        else:
            verdict = self.check(user, response, now)
        if verdict.reason == CHALLENGE:
            # Inside TTLS/PEAP (FreeRADIUS marks those requests with FreeRADIUS-Proxied-To)
            # an Access-Challenge cannot reach the peer: the code must come with the password.
            if self.challenge and "FreeRADIUS-Proxied-To" not in attrs:
                return self._ask(user, verdict, now)
            verdict = Verdict.reject("malformed", "the password alone, no code")
        self._decision(user, verdict)
        return _RCODES.get(verdict.reason, REJECT) if not verdict.ok else OK

    # -- RFC 2865 challenge-response ----------------------------------------------------

    def _ask(self, user: str, verdict: Verdict, now: float) -> Result:
        """Access-Challenge: a random State bound to the user whose password was right."""
        state = self._rand.random_bytes(16)
        try:
            stored = self.second.store.put_once(
                _state_key(state.hex()), user.encode(), self.challenge_ttl, now
            )
        except StoreUnavailable as exc:
            self._decision(user, Verdict.reject("store_unavailable", str(exc)))
            return FAIL
        if not stored:  # 128 random bits collided: refuse rather than share a State
            return FAIL
        self._decision(user, verdict)
        reply = (("State", "0x" + state.hex()), ("Reply-Message", verdict.detail or "Code: "))
        return HANDLED, reply, (("Response-Packet-Type", ":=", "Access-Challenge"),)

    def _answer(self, user: str, state: str, code: str, now: float) -> Verdict:
        """The code sent back with a State we issued (single use)."""
        text = state.lower().removeprefix("0x")
        try:
            owner = self.second.store.take(_state_key(text), now)
        except StoreUnavailable as exc:
            return Verdict.reject("store_unavailable", str(exc))
        if owner is None or owner != user.encode():
            return Verdict.reject("bad_code", "unknown or expired State")
        return self.second.check_code(user, code, now)

    def _decision(self, user: str, verdict: Verdict) -> None:
        event = {"event": "decision", "user": user, "ok": verdict.ok, "reason": verdict.reason}
        if verdict.detail and verdict.reason in ("store_unavailable", "malformed"):
            event["detail"] = verdict.detail
        self._log(L_AUTH if verdict.ok else L_INFO, "eapkit: " + json.dumps(event, sort_keys=True))


def _state_key(state_hex: str) -> str:
    return f"radius:challenge:{state_hex}"


def _attributes(request: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The first value of each attribute (rlm_python3 passes strings; a State is
    ``0x<hex>``, quoted strings keep no quotes)."""
    out: dict[str, str] = {}
    for item in request:
        if len(item) >= 2 and item[0] not in out:
            out[str(item[0])] = str(item[-1])
    return out


# -- the functions rlm_python3 calls ---------------------------------------------------

_adapter: Adapter | None = None


def _radiusd() -> ModuleType | None:
    module = sys.modules.get("radiusd")
    if module is None:
        try:
            import radiusd  # type: ignore[import-not-found]  # provided by rlm_python3
        except ImportError:
            return None
        module = radiusd
    return module


def _radlog(level: int, text: str) -> None:
    radiusd = _radiusd()
    if radiusd is not None:
        radiusd.radlog(level, text)
    else:
        print(text, file=sys.stderr)


def instantiate(_: object = None) -> int:
    """``func_instantiate``: 0, or -1 (FreeRADIUS refuses to start) with the reason."""
    global _adapter
    radiusd = _radiusd()
    config: Mapping[str, Any] = getattr(radiusd, "config", {}) if radiusd else {}
    try:
        _adapter = Adapter.from_config(config, log=_radlog)
    except (ConfigError, StoreUnavailable, OSError, ValueError) as exc:
        _radlog(L_ERR, f"eapkit: {exc}")
        return -1
    return 0


def authorize(request: Sequence[tuple[str, str]]) -> Result:
    if _adapter is None:
        return FAIL
    return _adapter.authorize(request)


def authenticate(request: Sequence[tuple[str, str]]) -> Result:
    if _adapter is None:
        return FAIL
    try:
        return _adapter.authenticate(request)
    except Exception as exc:  # a bug must not take FreeRADIUS's thread down: fail closed
        _radlog(L_ERR, f"eapkit: internal error ({type(exc).__name__})")
        return FAIL


def detach(_: object = None) -> int:
    global _adapter
    if _adapter is not None:
        _adapter.second.store.close()
        _adapter.second.users.close()
        _adapter = None
    return OK
