"""The approval gate: ``eapkit serve`` holds a login until its user approves it.

Why hold the reply, not challenge the NAS (docs/webauthn-bridge.md tells it at length):
a RADIUS login cannot carry a WebAuthn ceremony, so the second factor happens on a web
page while the gateway waits.  Two ways to make a gateway wait exist:

- an Access-Challenge (RFC 2865 §4.4) with a State and a prompt, whose answer the user
  types after approving; this needs a human-paced round the method can carry, which
  plain PAP and EAP-GTC have but EAP-MSCHAPv2, EAP-TLS and PEAP/TTLS with MSCHAPv2 do
  not (their clients answer every Access-Challenge at machine speed);
- holding the final Access-Accept: the method runs to its end (EAP-Success computed, MSK
  wrapped for the request), the reply is held, the NAS's retransmissions of that request
  are absorbed, and on approval the held Accept goes out, on denial or expiry a Reject
  whose EAP-Failure takes the Success's identifier.

The gate holds: it works the same for every method, needs nothing from the VPN client,
and what the gateway must allow (a RADIUS timeout longer than the approval timeout) is
one setting on every gateway.  :class:`Bridge` is that gate for
:class:`~eapkit.radius.core.RadiusCore`, and the state the web app
(:mod:`eapkit.bridge.app`) shares with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Callable
from typing import Any

from eapkit.bridge.approvals import EXPIRED, ApprovalTable, EnrollmentLinks, TooManyPending
from eapkit.bridge.config import BridgeConfig
from eapkit.bridge.reenroll import TotpEnrollment, YubikeyEnrollment
from eapkit.directory import Directory
from eapkit.radius.core import GateTicket
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import Packet
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.store.base import Store, StoreUnavailable
from eapkit.verify.otp import OtpVerifier
from eapkit.verify.webauthn import WebAuthnVerifier
from eapkit.verify.yubico import YubicoVerifier

__all__ = ["SECOND_FACTOR", "Bridge"]

SECOND_FACTOR = "webauthn"
AuditSink = Callable[[dict[str, Any]], None]


def _text(request: Packet, attr: int) -> str:
    raw = request.get(attr)
    return "" if raw is None else raw[:253].decode("utf-8", "backslashreplace")


def _nas_address(request: Packet) -> str:
    for attr, size in ((Attr.NAS_IP_ADDRESS, 4), (Attr.NAS_IPV6_ADDRESS, 16)):
        raw = request.get(attr)
        if raw is not None and len(raw) == size:
            return str(ipaddress.ip_address(raw))
    return ""


class Bridge:
    """Pending approvals, enrollment links and the WebAuthn relying party of one
    deployment; an :class:`~eapkit.radius.core.ApprovalGate`."""

    def __init__(
        self,
        config: BridgeConfig,
        users: Directory,
        store: Store,
        *,
        audit: AuditSink | None = None,
        rand: RandomSource = SYSTEM_RANDOM,
        clock: Callable[[], float] = time.time,
        poll: float = 0.25,
        otp: OtpVerifier | None = None,
        yubikey: YubicoVerifier | None = None,
    ) -> None:
        config.check()
        self.config = config
        self.users = users
        self.store = store
        self.audit = audit
        self.clock = clock
        self.poll = poll
        self.approvals = ApprovalTable(
            store, timeout=config.timeout, max_pending=config.max_pending, rand=rand
        )
        self.enrollments = EnrollmentLinks(store, rand=rand)
        # an authenticator app from the same one-time link (after a reset: eapkit.reset)
        self.totp_enrollment = (
            TotpEnrollment(self.enrollments, otp, users, rand=rand) if otp is not None else None
        )
        self.yubikey_enrollment = (
            YubikeyEnrollment(self.enrollments, yubikey, users) if yubikey is not None else None
        )
        self.webauthn = WebAuthnVerifier(
            store,
            rp_id=config.effective_rp_id,
            origins=[config.origin],
            rp_name=config.rp_name,
            user_verification=config.user_verification,  # type: ignore[arg-type]
            rand=rand,
        )
        # In-process wake-ups; other processes' decisions are seen by polling the store.
        self._events: dict[str, asyncio.Event] = {}

    def emit(self, event: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit({"time": round(self.clock(), 3), **event})

    def needs_approval(self, user: str) -> bool:
        record = self.users.get(user)
        return record is not None and record.second_factor == SECOND_FACTOR

    # -- the gate -------------------------------------------------------------------------
    def hold(self, user: str, request: Packet, client: str, now: float) -> GateTicket | None:
        """Hold the Accept of a ``webauthn`` user; refuse at once when no approval can
        ever come (no key enrolled, too many waiting, store down)."""
        if not self.needs_approval(user):
            return None
        try:
            if not self.webauthn.credentials(user):
                return GateTicket(refused="no_security_key")
            approval = self.approvals.open(
                user,
                now,
                client=client,
                nas_identifier=_text(request, Attr.NAS_IDENTIFIER),
                nas_address=_nas_address(request),
                calling_station=_text(request, Attr.CALLING_STATION_ID),
                called_station=_text(request, Attr.CALLED_STATION_ID),
            )
        except TooManyPending:
            return GateTicket(refused="too_many_pending")
        except StoreUnavailable:
            return GateTicket(refused="store_unavailable")
        self.emit({"event": "approval_pending", "user": user, "ticket": approval.ticket[:8]})
        return GateTicket(approval.ticket, approval.deadline)

    async def wait(self, ticket: str, deadline: float) -> str:
        """Until the approval is decided or ``deadline`` passes (then ``expired``,
        unless a decision wins the race)."""
        event = self._events.setdefault(ticket, asyncio.Event())
        try:
            while True:
                now = self.clock()
                try:
                    outcome = self.approvals.outcome(ticket, now)
                    if outcome is None and now >= deadline:
                        outcome = self.approvals.expire(ticket, now)
                except StoreUnavailable:
                    outcome = EXPIRED if now >= deadline else None  # fail closed at the end
                if outcome is not None:
                    return outcome
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(self.poll, deadline - now))
        finally:
            self._events.pop(ticket, None)

    def decided(self, ticket: str) -> None:
        """The web app decided ``ticket`` in this process: wake its waiter now."""
        event = self._events.get(ticket)
        if event is not None:
            event.set()

    # -- enrollment -----------------------------------------------------------------------
    def enrollment_link(self, user: str, now: float, ttl: float | None = None) -> str:
        token = self.enrollments.issue(user, now, self.config.enroll_ttl if ttl is None else ttl)
        self.emit({"event": "webauthn_enrollment_link", "user": user})
        # The token travels in the fragment: browsers never send it to a server or log.
        return f"{self.config.base_url}/enroll#{token}"
