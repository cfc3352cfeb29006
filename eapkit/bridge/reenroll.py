"""An authenticator app (TOTP) or a YubiKey enrolled from the bridge's one-time link.

After a reset (:mod:`eapkit.reset`, ``eapkit approve``) the user opens the one-time link
``/enroll#TOKEN``; the page offers a security key (the WebAuthn routes of
:mod:`eapkit.bridge.app`) or an authenticator app:

``POST /api/enroll/totp/begin``   ``{"token"}`` -> a fresh secret as an ``otpauth://``
                                  URI and its QR code (SVG), not yet active
``POST /api/enroll/totp/finish``  ``{"token", "code"}``: a code of that secret
                                  (RFC 6238 §5.2, one step either side) enrolls it,
                                  uses the link up and spends the code's step
``POST /api/enroll/yubikey``      ``{"token", "otp", "aes_key"}``: a slot programmed
                                  for Yubico OTP, learnt from one OTP that decrypts
                                  under the slot's AES key (CRC checked); that OTP is
                                  spent, a key enrolled for another user is refused

The secret waits for its confirming code in this process's memory only (like the
page's sessions), at most ``PENDING_TTL`` seconds and never past the link's expiry;
nothing is stored until the code proves the app holds it, and the link stays usable
until then.  Several wrong codes for one pending secret discard it (``MAX_TRIES``).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from eapkit.bridge.approvals import EnrollmentLinks
from eapkit.directory import Directory
from eapkit.errors import DecodeError
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.verify.otp import OtpCredential, OtpVerifier, otpauth_uri, totp
from eapkit.verify.yubico import YubicoVerifier, YubikeyCredential

__all__ = ["MAX_TRIES", "PENDING_TTL", "TotpEnrollment", "YubikeyEnrollment"]

PENDING_TTL: Final = 600.0
MAX_TRIES: Final = 5
_MAX_PENDING: Final = 10_000


@dataclass(slots=True)
class _Pending:
    user: str
    secret: bytes
    expires: float
    tries: int = 0


class TotpEnrollment:
    """Begin/finish of an authenticator app enrolled through a one-time link."""

    def __init__(
        self,
        links: EnrollmentLinks,
        otp: OtpVerifier,
        users: Directory,
        *,
        issuer: str = "eapkit",
        rand: RandomSource = SYSTEM_RANDOM,
    ) -> None:
        self.links = links
        self.otp = otp
        self.users = users
        self.issuer = issuer
        self.rand = rand
        self._pending: OrderedDict[bytes, _Pending] = OrderedDict()

    @staticmethod
    def _slot(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def begin(self, token: str, now: float) -> dict[str, Any] | None:
        """A new secret for the link's user (None: the link is not live)."""
        user = self.links.peek(token, now)
        if user is None:
            return None
        self._expire(now)
        secret = self.rand.random_bytes(20)
        slot = self._slot(token)
        self._pending.pop(slot, None)
        self._pending[slot] = _Pending(user, secret, now + PENDING_TTL)
        while len(self._pending) > _MAX_PENDING:
            self._pending.popitem(last=False)
        uri = otpauth_uri(user, OtpCredential(secret), issuer=self.issuer)
        return {"user": user, "uri": uri, "svg": _qr_svg(uri)}

    def finish(self, token: str, code: str, now: float) -> tuple[str, str]:
        """(``ok`` or a refusal reason, the user or '')."""
        slot = self._slot(token)
        pending = self._pending.get(slot)
        if pending is None or now >= pending.expires:
            self._pending.pop(slot, None)
            return "no_pending_secret", ""
        if not any(
            hmac.compare_digest(totp(pending.secret, now + 30 * k).encode(), code.encode())
            for k in (-1, 0, 1)
        ):
            pending.tries += 1
            if pending.tries >= MAX_TRIES:
                del self._pending[slot]
            return "bad_code", pending.user
        taken = self.links.take(token, now)
        del self._pending[slot]
        if taken is None or taken[0] != pending.user:
            return "bad_link", pending.user
        user = pending.user
        self.otp.enroll(user, OtpCredential(pending.secret), now)
        self.users.set_second_factor(user, "totp")
        # the confirming code is spent: it cannot log in afterwards (RFC 6238 §5.2)
        self.otp.verify(user, code, now)
        return "ok", user

    def _expire(self, now: float) -> None:
        for slot in [s for s, p in self._pending.items() if now >= p.expires]:
            del self._pending[slot]


class YubikeyEnrollment:
    """A YubiKey slot programmed for Yubico OTP (``ykman otp yubiotp``), enrolled from a
    one-time link with one OTP and the slot's AES key, for local validation."""

    def __init__(self, links: EnrollmentLinks, verifier: YubicoVerifier, users: Directory) -> None:
        self.links = links
        self.verifier = verifier
        self.users = users

    def enroll(self, token: str, otp: str, aes_key_hex: str, now: float) -> tuple[str, str]:
        """(``ok`` or a refusal reason, the user or '')."""
        user = self.links.peek(token, now)
        if user is None:
            return "bad_link", ""
        try:
            key = bytes.fromhex(aes_key_hex)
            credential, seen = YubikeyCredential.from_otp(otp.strip(), key)
        except (ValueError, DecodeError):
            return "bad_otp", user
        raw = self.verifier.store.get(f"yk:cred:{credential.public_id}")
        if raw is not None and _owner(raw) not in (None, user):
            return "key_taken", user  # another user's key: not taken over from a link
        taken = self.links.take(token, now)
        if taken is None or taken[0] != user:
            return "bad_link", user
        self.verifier.enroll(user, credential, now, seen=seen)
        self.users.set_second_factor(user, "yubikey")
        return "ok", user


def _owner(raw: bytes) -> str | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return str(record["user"]) if isinstance(record, dict) and "user" in record else None


def _qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as SVG text, or '' without the ``qr`` extra (segno)."""
    try:
        import segno
    except ImportError:
        return ""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=5, xmldecl=False)
    return out.getvalue().decode()
