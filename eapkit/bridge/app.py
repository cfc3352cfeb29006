"""The approval web app, as a function from one HTTP request to one response.

Pages (``GET``): ``/`` approve or deny the logins waiting for you; ``/enroll#TOKEN``
register a security key from a one-time link.  The page's script talks JSON to:

=============================  ===================================================
``POST /api/signin/begin``     ``{"user"?}`` -> WebAuthn request options (§5.5);
                               no user: a discoverable credential (passkey) says who
``POST /api/signin/finish``    ``{"credential"}`` -> a short session (cookie) bound to
                               the user the assertion proved, and their pending logins
``GET  /api/pending``          the signed-in user's pending logins
``POST /api/decide``           ``{"ticket", "decision": "approve"|"deny"}``
``POST /api/enroll/begin``     ``{"token"}`` -> WebAuthn creation options (§5.4)
``POST /api/enroll/finish``    ``{"token", "credential"}``: the key is stored, the token
                               used up, the user's second factor becomes ``webauthn``
``POST /api/enroll/totp/*``    the same link enrolls an authenticator app or a YubiKey
``POST /api/enroll/yubikey``   instead (:mod:`eapkit.bridge.reenroll`)
``GET  /devices.crl``          with ``device_crl``: the device CRL, DER-encoded
                               (``application/pkix-crl``, RFC 2585 §4.2), for a
                               gateway whose device certificates name this URL as
                               their CRL distribution point (RFC 5280 §4.2.1.13)
=============================  ===================================================

Cross-site requests cannot act: every POST needs ``Content-Type: application/json`` and an
``Origin`` equal to the configured one, the session cookie is ``HttpOnly``,
``SameSite=Strict``, and the pages may not be framed (CSP ``frame-ancestors 'none'``).
Sessions live in this process's memory only: run one web app per deployment.

The app is sans-I/O (DESIGN.md): :meth:`BridgeApp.handle` gets the request and the time;
:mod:`eapkit.bridge.http` puts it on a socket.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final

from eapkit.bridge.approvals import Approval
from eapkit.bridge.gate import SECOND_FACTOR, Bridge
from eapkit.bridge.limits import BeginLimiter, DecoyCredentials
from eapkit.devices import PublishedCrl
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.store.base import StoreUnavailable
from eapkit.verify.webauthn import b64url_encode

__all__ = ["MAX_BODY", "BridgeApp", "Request", "Response"]

MAX_BODY: Final = 64 * 1024
COOKIE: Final = "eapkit_bridge"
_HEADERS: Final = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
_STATIC: Final = {
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    peer: str = ""  # the client's address (rate limits)


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def all_headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), *_HEADERS, *self.headers]


def _json(status: int, data: dict[str, Any]) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":")).encode())


def _error(status: int, reason: str) -> Response:
    return _json(status, {"error": reason})


def _is_utf8(body: dict[str, Any]) -> bool:
    """No lone surrogate (JSON's ``"\\ud800"``) anywhere in ``body``: RFC 8259 §8.2
    leaves such strings' meaning open, and every handler encodes its strings as UTF-8."""
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _static(name: str) -> bytes:
    return (resources.files("eapkit.bridge") / "static" / name).read_bytes()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def approval_view(a: Approval, now: float) -> dict[str, Any]:
    """What the page shows about a pending login (the ticket is the handle to decide it)."""
    return {
        "ticket": a.ticket,
        "user": a.user,
        "gateway": a.client,
        "nas_identifier": a.nas_identifier,
        "nas_address": a.nas_address,
        "device": a.calling_station,
        "called_station": a.called_station,
        "created": _iso(a.created),
        "created_epoch": round(a.created, 3),
        "seconds_left": max(0, round(a.deadline - now)),
    }


@dataclass(slots=True)
class _Session:
    user: str
    expires: float


class BridgeApp:
    """Routes of the approval web app over one :class:`~eapkit.bridge.gate.Bridge`."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        rand: RandomSource = SYSTEM_RANDOM,
        max_sessions: int = 10_000,
        limiter: BeginLimiter | None = None,
    ) -> None:
        self.bridge = bridge
        self.rand = rand
        self.max_sessions = max_sessions
        self.limiter = limiter or BeginLimiter()
        self.decoys = DecoyCredentials(bridge.store, rand=rand)
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._page = _static("index.html")
        crl = bridge.config.device_crl
        self.crl = PublishedCrl(Path(crl)) if crl is not None else None

    # -- plumbing -------------------------------------------------------------------------
    def handle(self, request: Request, now: float) -> Response:
        """One request; never raises for anything in it."""
        try:
            return self._route(request, now)
        except StoreUnavailable:
            return _error(503, "store_unavailable")

    def _route(self, req: Request, now: float) -> Response:
        if req.method in ("GET", "HEAD"):
            if req.path in ("/", "/enroll"):
                return Response(200, self._page, "text/html; charset=utf-8")
            if req.path in _STATIC:
                name, ctype = _STATIC[req.path]
                return Response(200, _static(name), ctype)
            if req.path == "/api/pending":
                return self._pending(req, now)
            if req.path == "/healthz":
                return _json(200, {"ok": True})
            if req.path == "/devices.crl" and self.crl is not None:
                der = self.crl.der()
                if der is None:
                    return _error(503, "no_crl")
                return Response(200, der, "application/pkix-crl")
            return _error(404, "not_found")
        if req.method != "POST":
            response = _error(405, "method_not_allowed")
            response.headers.append(("Allow", "GET, HEAD, POST"))
            return response
        handler = {
            "/api/signin/begin": self._signin_begin,
            "/api/signin/finish": self._signin_finish,
            "/api/decide": self._decide,
            "/api/enroll/begin": self._enroll_begin,
            "/api/enroll/finish": self._enroll_finish,
            "/api/enroll/totp/begin": self._totp_begin,
            "/api/enroll/totp/finish": self._totp_finish,
            "/api/enroll/yubikey": self._yubikey_enroll,
        }.get(req.path)
        if handler is None:
            return _error(404, "not_found")
        if req.headers.get("origin") != self.bridge.config.origin:
            return _error(403, "bad_origin")
        if req.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "json_only")
        if len(req.body) > MAX_BODY:
            return _error(413, "too_large")
        try:
            body = json.loads(req.body)
        except (ValueError, RecursionError):
            return _error(400, "malformed")
        if not isinstance(body, dict) or not _is_utf8(body):
            return _error(400, "malformed")
        return handler(body, req, now)

    def _session(self, req: Request, now: float) -> _Session | None:
        token = None
        for part in req.headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                token = value
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None or session.expires <= now:
            self._sessions.pop(token, None)
            return None
        return session

    def _new_session(self, user: str, now: float) -> str:
        while self._sessions and (
            len(self._sessions) >= self.max_sessions
            or next(iter(self._sessions.values())).expires <= now
        ):
            self._sessions.popitem(last=False)
        token = b64url_encode(self.rand.random_bytes(32))
        self._sessions[token] = _Session(user, now + self.bridge.config.session_ttl)
        return token

    def _cookie(self, token: str, max_age: int) -> tuple[str, str]:
        secure = "; Secure" if self.bridge.config.secure_cookies else ""
        return (
            "Set-Cookie",
            f"{COOKIE}={token}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}",
        )

    # -- approving ------------------------------------------------------------------------
    def _signin_begin(self, body: dict[str, Any], req: Request, now: float) -> Response:
        user = body.get("user")
        if user is not None and (not isinstance(user, str) or not 0 < len(user) <= 253):
            return _error(400, "malformed")
        # Unauthenticated and it stores a challenge: rate-limited, expired ones purged.
        if not self.limiter.allow(req.peer, now):
            response = _error(429, "rate_limited")
            response.headers.append(("Retry-After", "1"))
            return response
        if self.limiter.purge_due(now):
            purge = getattr(self.bridge.store, "purge", None)
            if purge is not None:
                purge(now)
        options = self.bridge.webauthn.begin_authentication(user or None, now=now)
        if user and not options["allowCredentials"]:
            # Unknown or not enrolled: a stable made-up list, so the answer does not say
            # which (WebAuthn §14.6.2).  A finish with it fails like a wrong key.
            options["allowCredentials"] = self.decoys.for_user(user)
        return _json(200, {"options": options})

    def _signin_finish(self, body: dict[str, Any], req: Request, now: float) -> Response:
        credential = body.get("credential")
        if not isinstance(credential, dict):
            return _error(400, "malformed")
        verdict = self.bridge.webauthn.finish_authentication(credential, now=now)
        self.bridge.emit(
            {
                "event": "bridge_signin",
                "user": verdict.user or "",
                "result": "ok" if verdict.ok else "refused",
                "reason": verdict.reason,
                "possible_clone": verdict.possible_clone,
            }
        )
        if not verdict.ok or verdict.user is None:
            return _error(403, verdict.reason)
        token = self._new_session(verdict.user, now)
        pending = [approval_view(a, now) for a in self.bridge.approvals.pending(verdict.user, now)]
        response = _json(200, {"user": verdict.user, "pending": pending})
        response.headers.append(self._cookie(token, int(self.bridge.config.session_ttl)))
        return response

    def _pending(self, req: Request, now: float) -> Response:
        session = self._session(req, now)
        if session is None:
            return _error(401, "signin_required")
        pending = [approval_view(a, now) for a in self.bridge.approvals.pending(session.user, now)]
        return _json(200, {"user": session.user, "pending": pending})

    def _decide(self, body: dict[str, Any], req: Request, now: float) -> Response:
        session = self._session(req, now)
        if session is None:
            return _error(401, "signin_required")
        ticket, decision = body.get("ticket"), body.get("decision")
        if not isinstance(ticket, str) or len(ticket) > 64 or decision not in ("approve", "deny"):
            return _error(400, "malformed")
        outcome = self.bridge.approvals.decide(ticket, session.user, decision == "approve", now)
        if outcome is None:
            return _error(404, "unknown_ticket")
        self.bridge.decided(ticket)
        self.bridge.emit(
            {
                "event": "approval_decided",
                "user": session.user,
                "ticket": ticket[:8],
                "outcome": outcome,
            }
        )
        return _json(200, {"ticket": ticket, "outcome": outcome})

    # -- enrolling ------------------------------------------------------------------------
    def _token(self, body: dict[str, Any]) -> str | None:
        token = body.get("token")
        return token if isinstance(token, str) and 0 < len(token) <= 128 else None

    def _enroll_begin(self, body: dict[str, Any], req: Request, now: float) -> Response:
        token = self._token(body)
        user = self.bridge.enrollments.peek(token, now) if token else None
        if user is None:
            return _error(403, "bad_link")
        options = self.bridge.webauthn.begin_registration(user, now=now)
        return _json(200, {"user": user, "options": options})

    def _enroll_finish(self, body: dict[str, Any], req: Request, now: float) -> Response:
        token, credential = self._token(body), body.get("credential")
        if token is None or not isinstance(credential, dict):
            return _error(400, "malformed")
        taken = self.bridge.enrollments.take(token, now)
        if taken is None:
            return _error(403, "bad_link")
        user, expires = taken
        verdict = self.bridge.webauthn.finish_registration(credential, now=now)
        ok = verdict.ok and verdict.user == user and verdict.stored is not None
        if verdict.ok and not ok and verdict.stored is not None:
            # a registration begun with another link: undo it, this link stays usable
            stored = verdict.stored
            self.bridge.webauthn.remove_credential(stored.user, stored.credential_id)
        self.bridge.emit(
            {
                "event": "webauthn_enrolled" if ok else "webauthn_enrollment_refused",
                "user": user,
                "reason": verdict.reason if verdict.ok == ok else "wrong_user",
            }
        )
        if not ok:
            self.bridge.enrollments.restore(token, user, expires, now)
            return _error(400, verdict.reason if not verdict.ok else "wrong_user")
        self.bridge.users.set_second_factor(user, SECOND_FACTOR)
        return _json(200, {"ok": True, "user": user})

    # -- an authenticator app from the same link (eapkit.bridge.reenroll) ----------------
    def _totp_begin(self, body: dict[str, Any], req: Request, now: float) -> Response:
        token, totp = self._token(body), self.bridge.totp_enrollment
        if totp is None:
            return _error(404, "not_found")
        begun = totp.begin(token, now) if token else None
        if begun is None:
            return _error(403, "bad_link")
        return _json(200, begun)

    def _totp_finish(self, body: dict[str, Any], req: Request, now: float) -> Response:
        token, code, totp = self._token(body), body.get("code"), self.bridge.totp_enrollment
        if totp is None:
            return _error(404, "not_found")
        if token is None or not isinstance(code, str) or not 1 <= len(code) <= 10:
            return _error(400, "malformed")
        outcome, user = totp.finish(token, code, now)
        self.bridge.emit(
            {
                "event": "totp_enrolled" if outcome == "ok" else "totp_enrollment_refused",
                "user": user,
                "reason": outcome,
            }
        )
        if outcome != "ok":
            return _error(403 if outcome == "bad_link" else 400, outcome)
        return _json(200, {"ok": True, "user": user})

    def _yubikey_enroll(self, body: dict[str, Any], req: Request, now: float) -> Response:
        token, yubikey = self._token(body), self.bridge.yubikey_enrollment
        otp, key = body.get("otp"), body.get("aes_key")
        if yubikey is None:
            return _error(404, "not_found")
        if token is None or not isinstance(otp, str) or not isinstance(key, str):
            return _error(400, "malformed")
        if len(otp) > 64 or len(key) > 64:
            return _error(400, "malformed")
        outcome, user = yubikey.enroll(token, otp, key, now)
        self.bridge.emit(
            {
                "event": "yubikey_enrolled" if outcome == "ok" else "yubikey_enrollment_refused",
                "user": user,
                "reason": outcome,
            }
        )
        if outcome != "ok":
            return _error(403 if outcome == "bad_link" else 400, outcome)
        return _json(200, {"ok": True, "user": user})
