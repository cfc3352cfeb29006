"""The RADIUS server's logic, without a transport (RFC 2865, 2866, 3579, 5080, 5997).

:meth:`RadiusCore.handle` takes one decoded request, the client it came from and the
time, and returns what to do: :class:`Reply` (send these bytes), :class:`Hold` (an
Access-Accept the approval gate holds) or :class:`Drop` (send nothing; the reason is
logged).  :meth:`RadiusCore.receive` is the same from raw bytes and a source address:
it finds the client and decodes first.  The core never sees a socket nor reads a clock:
fronts (:mod:`eapkit.radius.front`, :mod:`eapkit.radius.udp`,
:mod:`eapkit.radius.workers`) pass the time in.  What a RADIUS server owes its clients
lives here::

    bytes, source ──receive──> client? decode? ──handle──> duplicate? ──> Access / Acct / Status
                                 │ no            │ cached reply          │
                                 └── Drop        └── Reply               └── Reply | Hold | Drop

- clients by address or CIDR, each with its own secret; datagrams from anyone else are
  dropped and logged (RFC 2865 §3);
- Message-Authenticator verified on every request that carries one (Accounting-Request
  included, RFC 3579 §3.2), required on every request with EAP-Message (RFC 3579 §3.2),
  on every Status-Server (RFC 5997 §3) and, by default, on every Access-Request (the
  BlastRADIUS mitigation, CVE-2024-3596); a missing one is dropped as
  ``missing_message_authenticator``, a wrong one as ``bad_message_authenticator``;
- an Access-Request with EAP-Message and User-Password, CHAP-Password or ARAP-Password
  is refused with an Access-Reject (RFC 3579 §3.3, as FreeRADIUS does);
- duplicate detection: a retransmission (same source, port, identifier and Request
  Authenticator) gets the cached reply and nothing runs twice (RFC 5080 §2.2.2);
- Access-Request with EAP-Message -> :class:`~eapkit.radius.access.EapAccess`; without
  EAP-Message -> the plain (PAP) handler when one is configured;
- Accounting-Request (RFC 2866): Request Authenticator checked, the record logged,
  Accounting-Response sent;
- Status-Server (RFC 5997 §3): answered with Access-Accept, or with Accounting-Response
  when it arrives on an accounting port (``accounting_ports``; the front passes the
  port the request arrived on);
- :meth:`RadiusCore.expire` forgets conversations and challenges that timed out: the
  fronts call it on a timer, so an abandoned login is logged when it expires;
- an optional approval gate (:mod:`eapkit.bridge`) may hold an Access-Accept until the
  user approves the login elsewhere: the core returns a :class:`Hold`, absorbs the NAS's
  retransmissions, and the front sends the Accept, or a Reject, that
  :meth:`RadiusCore.settle` returns once told the outcome.

Every decision is one JSON line on the decision log (no secrets).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from eapkit.directory.scope import request_scope
from eapkit.errors import DecodeError
from eapkit.packet import Failure
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.dictionary import AcctStatusType, Attr
from eapkit.radius.packet import (
    Attribute,
    Code,
    Packet,
    decode,
    eap_message_attributes,
    encode_reply,
)
from eapkit.radius.reply import REJECT_MESSAGE, AccessReply

__all__ = [
    "ApprovalGate",
    "DecisionLog",
    "Drop",
    "GateTicket",
    "Handled",
    "Hold",
    "PlainAccess",
    "RadiusCore",
    "Reply",
]

log = logging.getLogger("eapkit.radius")

ARAP_PASSWORD = 70  # RFC 2869 §5.4; refused next to EAP-Message (RFC 3579 §3.3)

DuplicateKey = tuple[str, int, int, bytes]  # source host, port, Identifier, Authenticator


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``data`` (an encoded RADIUS packet) to the request's source."""

    data: bytes


@dataclass(slots=True)
class Hold:
    """A held Access-Accept, and the Reject that replaces it on refusal, both encoded
    for the request (whose retransmissions are absorbed meanwhile): the front waits
    for the approval ``ticket`` until ``deadline`` at most, then sends what
    :meth:`RadiusCore.settle` returns."""

    key: DuplicateKey
    ticket: str
    deadline: float
    accept: bytes
    reject: bytes
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Drop:
    """Send nothing: ``reason`` says why (the core has counted it, and logged it when
    it is a refused request rather than a retransmission or a discarded EAP packet)."""

    reason: str


Handled = Reply | Hold | Drop


class DecisionLog:
    """One JSON object a line, to a stream (stdout by default) or a file."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self.records: list[dict[str, Any]] | None = None  # tests may collect here
        self.stamp: dict[str, Any] = {}  # added to every line (the worker's number)

    def write(self, record: dict[str, Any]) -> None:
        if self.stamp:
            record = {**record, **self.stamp}
        if self.records is not None:
            self.records.append(record)
        self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._stream.flush()


class PlainAccess(Protocol):
    """Access-Requests without EAP (PAP, RFC 2865 challenge-response)."""

    state_prefix: bytes  # names the owner of a pending challenge (see set_state_prefix)

    def handle(
        self, request: Packet, secret: bytes, client: str, now: float
    ) -> AccessReply | None: ...


@dataclass(frozen=True, slots=True)
class GateTicket:
    """An approval gate's answer for an Accept it holds: ``ticket`` names the pending
    approval and the reply waits until ``deadline`` at most.  A non-empty ``refused``
    (a reason code) rejects the login at once instead."""

    ticket: str = ""
    deadline: float = 0.0
    refused: str = ""


class ApprovalGate(Protocol):
    """Holds Access-Accepts until a person approves the login elsewhere
    (:mod:`eapkit.bridge`): the password step is done, the second factor is not."""

    def hold(self, user: str, request: Packet, client: str, now: float) -> GateTicket | None:
        """None when ``user`` needs no approval, else a :class:`GateTicket`."""
        ...

    async def wait(self, ticket: str, deadline: float) -> str:
        """``approved``, ``denied`` or ``expired``: once decided, or at ``deadline``."""
        ...


def _rejection(reply: AccessReply) -> list[Attribute]:
    """The Reject replacing a held Accept: an EAP Success becomes a Failure with the same
    Identifier (RFC 3748 §4.2, RFC 3579 §2.6.3), and nothing else of the Accept stays."""
    out: list[Attribute] = []
    if reply.eap_identifier is not None:
        out += eap_message_attributes(Failure(reply.eap_identifier).encode())
    out.append((Attr.REPLY_MESSAGE, REJECT_MESSAGE))
    return out


@dataclass
class RadiusCore:
    """The server's logic, without sockets or clocks.  ``cpu_clock`` times each
    request's work for the decision log (``cpu_ms``)."""

    clients: ClientTable
    eap: EapAccess | None
    plain: PlainAccess | None = None
    decisions: DecisionLog = field(default_factory=DecisionLog)
    require_message_authenticator: bool = True
    duplicate_ttl: float = 10.0
    duplicate_cap: int = 65536
    approval: ApprovalGate | None = None
    cpu_clock: Callable[[], float] = field(default=time.perf_counter, repr=False)
    accounting_ports: frozenset[int] = frozenset({1813, 1646})  # RFC 5997 §3
    _held: set[DuplicateKey] = field(default_factory=set, repr=False)
    _replies: OrderedDict[DuplicateKey, tuple[float, bytes]] = field(
        default_factory=OrderedDict, repr=False
    )
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.eap is not None and self.eap.on_abandoned is None:
            self.eap.on_abandoned = lambda decision: self.decisions.write(decision.as_dict())

    def count(self, what: str) -> None:
        """Add one to the statistic ``what`` (fronts count their own events here)."""
        self.stats[what] = self.stats.get(what, 0) + 1

    def set_state_prefix(self, prefix: bytes) -> None:
        """Put ``prefix`` in front of every State this core sends (EAP conversations and
        PAP challenges), so a front can route the next round to its owner."""
        if self.eap is not None:
            self.eap.state_prefix = prefix
        if self.plain is not None:
            self.plain.state_prefix = prefix

    def _drop(self, what: str, host: str, now: float, detail: str = "") -> Drop:
        self.count(what)
        log.warning("dropped datagram from %s: %s %s", host, what, detail)
        self.decisions.write(
            {"time": round(now, 3), "event": "dropped", "client": host, "reason": what}
        )
        return Drop(what)

    def expire(self, now: float) -> int:
        """Forget EAP conversations and plain challenges idle past their time (each
        abandoned conversation goes to the decision log); fronts call this on a timer.
        Returns how many conversations expired."""
        n = self.eap.expire(now) if self.eap is not None else 0
        expire_plain = getattr(self.plain, "expire", None)
        if callable(expire_plain):
            expire_plain(now)
        self._expire_replies(now)
        return n

    def receive(
        self, data: bytes, source: tuple[str, int], now: float, *, local_port: int = 0
    ) -> Handled:
        """:meth:`handle` for raw bytes from ``source`` (host, port), received on
        ``local_port``: unknown clients and undecodable bytes are dropped first."""
        host = source[0]
        client = self.clients.find(host)
        if client is None:
            return self._drop("unknown_client", host, now)
        try:
            request = decode(data)
        except DecodeError as exc:
            return self._drop("malformed", host, now, str(exc))
        return self.handle(request, client, now, source=source, local_port=local_port)

    def handle(
        self,
        request: Packet,
        client: Client,
        now: float,
        *,
        source: tuple[str, int] = ("", 0),
        local_port: int = 0,
    ) -> Handled:
        """What to do with ``request`` from ``client``; ``source`` (host, port) keys the
        duplicate cache (RFC 5080 §2.2.2); ``local_port`` is the port it arrived on."""
        host = source[0]
        key = (host, source[1], request.identifier, request.authenticator)
        self._expire_replies(now)
        cached = self._replies.get(key)
        if cached is not None:
            self.count("duplicate")
            return Reply(cached[1])
        if key in self._held:
            self.count("duplicate_held")  # the NAS retransmits while the user decides
            return Drop("duplicate_held")
        handled = self._dispatch(request, client, host, now, local_port)
        if isinstance(handled, Hold):
            handled.key = key
            self._held.add(key)
        elif isinstance(handled, Reply):
            self._replies[key] = (now + self.duplicate_ttl, handled.data)
            if len(self._replies) > self.duplicate_cap:
                self._replies.popitem(last=False)
        return handled

    def _expire_replies(self, now: float) -> None:
        replies = self._replies
        while replies:
            expires, _ = next(iter(replies.values()))
            if expires > now:
                return
            replies.popitem(last=False)

    def settle(self, held: Hold, outcome: str, now: float) -> bytes:
        """The reply to a held Accept once its approval is ``approved`` (the Accept) or
        anything else (the Reject); retransmissions later get it from the duplicate
        cache."""
        self._held.discard(held.key)
        approved = outcome == "approved"
        record = dict(held.record)
        record.update(
            time=round(now, 3),
            result="accept" if approved else "reject",
            reason=outcome if approved else f"approval_{outcome}",
            waited_ms=round((now - float(held.record["time"])) * 1000, 3),
        )
        self.decisions.write(record)
        self.count(str(record["result"]))
        reply = held.accept if approved else held.reject
        self._replies[held.key] = (now + self.duplicate_ttl, reply)
        return reply

    def _dispatch(
        self, request: Packet, client: Client, host: str, now: float, local_port: int = 0
    ) -> Handled:
        secret = client.secret
        code = request.code
        if code == Code.ACCESS_REQUEST:
            with request_scope():  # one read of the user's record per request
                return self._access(request, secret, client, host, now)
        if code == Code.ACCOUNTING_REQUEST:
            return self._accounting(request, secret, client, host, now)
        if code == Code.STATUS_SERVER:
            if request.message_authenticator is None:
                return self._drop("missing_message_authenticator", host, now)
            if not request.verify_message_authenticator(secret):
                return self._drop("bad_message_authenticator", host, now)
            self.count("status_server")
            # RFC 5997 §3: Accounting-Response on an accounting port, else Access-Accept.
            answer = (
                Code.ACCOUNTING_RESPONSE
                if local_port in self.accounting_ports
                else Code.ACCESS_ACCEPT
            )
            return Reply(encode_reply(answer, request, [], secret))
        return self._drop("unexpected_code", host, now, str(code))

    def _access(
        self, request: Packet, secret: bytes, client: Client, host: str, now: float
    ) -> Handled:
        eap = request.eap_message()
        has_ma = request.message_authenticator is not None
        if has_ma:
            if not request.verify_message_authenticator(secret):
                return self._drop("bad_message_authenticator", host, now)
        elif eap is not None or self.require_message_authenticator:
            return self._drop("missing_message_authenticator", host, now)
        if eap is not None and any(
            request.get(a) is not None
            for a in (Attr.USER_PASSWORD, Attr.CHAP_PASSWORD, ARAP_PASSWORD)
        ):
            return self._refuse_mixed(request, secret, client, host, now)
        started = self.cpu_clock()
        if eap is not None and self.eap is not None:
            reply = self.eap.handle(request, secret, client.name, now)
        elif eap is None and self.plain is not None:
            reply = self.plain.handle(request, secret, client.name, now)
        else:
            return self._drop("no_handler", host, now, "EAP" if eap is not None else "PAP")
        if reply is None:
            self.count("silently_discarded")
            return Drop("silently_discarded")
        if reply.decision is not None:
            record = reply.decision.as_dict()
            record["cpu_ms"] = round((self.cpu_clock() - started) * 1000, 3)
            if self.approval is not None and reply.code == Code.ACCESS_ACCEPT:
                held = self._hold(request, reply, secret, client.name, record, now)
                if held is not None:
                    return held
            self.decisions.write(record)
            self.count(reply.decision.result)
        return Reply(encode_reply(reply.code, request, reply.attributes, secret))

    def _hold(
        self,
        request: Packet,
        reply: AccessReply,
        secret: bytes,
        client: str,
        record: dict[str, Any],
        now: float,
    ) -> Hold | None:
        """Ask the approval gate about an Accept: hold it, let it go (None), or turn it
        into a Reject in place (the gate refused, e.g. its store is down: fail closed)."""
        assert self.approval is not None and reply.decision is not None
        ticket = self.approval.hold(reply.decision.user, request, client, now)
        if ticket is None:
            return None
        reject = _rejection(reply)
        if ticket.refused:
            reply.code, reply.attributes = Code.ACCESS_REJECT, reject
            reply.decision.result, reply.decision.reason = "reject", ticket.refused
            record.update(result="reject", reason=ticket.refused)
            return None
        record.update(result="held", reason="approval_pending", ticket=ticket.ticket)
        self.decisions.write(record)
        self.count("held")
        return Hold(
            ("", 0, 0, b""),
            ticket.ticket,
            ticket.deadline,
            encode_reply(Code.ACCESS_ACCEPT, request, reply.attributes, secret),
            encode_reply(Code.ACCESS_REJECT, request, reject, secret),
            record,
        )

    def _refuse_mixed(
        self, request: Packet, secret: bytes, client: Client, host: str, now: float
    ) -> Reply:
        """RFC 3579 §3.3: EAP-Message with User-Password, CHAP-Password or ARAP-Password
        must not be processed; FreeRADIUS answers Access-Reject, and so does eapkit."""
        user = (request.get(Attr.USER_NAME) or b"").decode("utf-8", "backslashreplace")
        self.decisions.write(
            {
                "time": round(now, 3),
                "client": client.name,
                "user": user,
                "result": "reject",
                "reason": "eap_with_password",
            }
        )
        self.count("reject")
        attrs: list[Attribute] = [(Attr.REPLY_MESSAGE, REJECT_MESSAGE)]
        return Reply(encode_reply(Code.ACCESS_REJECT, request, attrs, secret))

    def _accounting(
        self, request: Packet, secret: bytes, client: Client, host: str, now: float
    ) -> Handled:
        if not request.verify_request_authenticator(secret):
            return self._drop("bad_accounting_authenticator", host, now)
        # RFC 3579 §3.2 / RFC 5080 §2.2.1: verify a Message-Authenticator when present.
        if request.message_authenticator is not None and not (
            request.verify_message_authenticator(secret)
        ):
            return self._drop("bad_message_authenticator", host, now)
        try:
            status = request.get_integer(Attr.ACCT_STATUS_TYPE)
            record: dict[str, Any] = {
                "time": round(now, 3),
                "event": "accounting",
                "client": client.name,
                "status": _status_name(status),
                "session_id": request.get_text(Attr.ACCT_SESSION_ID) or "",
                "user": request.get_text(Attr.USER_NAME) or "",
                "input_octets": request.get_integer(Attr.ACCT_INPUT_OCTETS),
                "output_octets": request.get_integer(Attr.ACCT_OUTPUT_OCTETS),
                "session_time": request.get_integer(Attr.ACCT_SESSION_TIME),
                "framed_ip": _ip(request.get(Attr.FRAMED_IP_ADDRESS)),
                "class": (request.get(Attr.CLASS) or b"").decode("utf-8", "backslashreplace"),
            }
        except DecodeError as exc:
            return self._drop("malformed_accounting", host, now, str(exc))
        self.decisions.write(record)
        self.count("accounting")
        return Reply(encode_reply(Code.ACCOUNTING_RESPONSE, request, [], secret))


def _status_name(status: int | None) -> str:
    if status is None:
        return ""
    try:
        return AcctStatusType(status).name.replace("_", "-").title()
    except ValueError:
        return str(status)


def _ip(raw: bytes | None) -> str:
    return str(ipaddress.IPv4Address(raw)) if raw is not None and len(raw) == 4 else ""
