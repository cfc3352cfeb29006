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
- every request ends in a reply or a logged drop: a check that raises becomes an
  Access-Reject (``store_unavailable`` when the store is down, else ``internal_error``,
  its traceback in the debug log only); a reply over 4096 octets (many Proxy-State
  attributes) is not sent, as FreeRADIUS does, and the drop (``reply_too_large``) is
  cached so a retransmission does not run the login again;
- datagrams from unknown addresses are summed up: one log line per address per
  ``unknown_log_interval`` seconds, with the count;
- the work is split for fronts that run checks off the receiving thread:
  :meth:`RadiusCore.admit` does the cheap part (client, decoding, duplicates,
  Status-Server, accounting) and returns an :class:`Admitted` Access-Request that
  :meth:`RadiusCore.run` answers, on any thread; a retransmission of a request in
  progress is absorbed (``duplicate_in_progress``);
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
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from eapkit.directory.base import DirectoryUnavailable
from eapkit.directory.scope import request_scope
from eapkit.errors import DecodeError
from eapkit.packet import EapType, Failure, MethodId
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.dictionary import AcctStatusType, Attr
from eapkit.radius.packet import (
    MAX_PACKET_SIZE,
    Attribute,
    Code,
    Packet,
    decode,
    eap_message_attributes,
    encode_reply,
)
from eapkit.radius.radius11 import Radius11
from eapkit.radius.radius11 import decode as decode_1_1
from eapkit.radius.radius11 import encode_reply as encode_reply_1_1
from eapkit.radius.reply import REJECT_MESSAGE, AccessReply
from eapkit.store.base import StoreUnavailable

__all__ = [
    "Admitted",
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


@dataclass(frozen=True, slots=True)
class Admitted:
    """An Access-Request past the cheap checks, waiting for :meth:`RadiusCore.run`
    (its duplicate key is marked in progress until then)."""

    request: Packet
    client: Client
    key: DuplicateKey


# One encoder for every line: json.dumps with separators builds a new one per call.
_LINE = json.JSONEncoder(separators=(",", ":"))


class DecisionLog:
    """One JSON object a line, to a stream (stdout by default) or a file."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self.records: list[dict[str, Any]] | None = None  # tests may collect here
        self.stamp: dict[str, Any] = {}  # added to every line (the worker's number)
        # Copies of every line (syslog, eapkit.syslog5424): called after the line is written.
        self.copies: list[Callable[[dict[str, Any]], None]] = []

    def stamped(self, **stamp: Any) -> DecisionLog:
        """A log on the same stream (and test records) adding ``stamp`` to each line."""
        other = DecisionLog(self._stream)
        other.records = self.records
        other.stamp = {**self.stamp, **stamp}
        other.copies = self.copies
        return other

    def write(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line; an event without a ``time`` (verifiers' and
        the helpdesk's audit events) gets the wall-clock time, so that ``eapkit
        audit`` can place it."""
        if "time" not in record:
            record = {"time": round(time.time(), 3), **record}
        if self.stamp:
            record = {**record, **self.stamp}
        if self.records is not None:
            self.records.append(record)
        self._stream.write(_LINE.encode(record) + "\n")
        self._stream.flush()
        for copy in self.copies:
            copy(record)


class PlainAccess(Protocol):
    """Access-Requests without EAP (PAP, RFC 2865 challenge-response)."""

    state_prefix: bytes  # names the owner of a pending challenge (see set_state_prefix)

    def handle(
        self, request: Packet, secret: bytes, client: str, now: float, *, nas: Client | None = None
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


# EAP-MSCHAPv2 (RFC 2759 over RFC 3748) and EAP-TLS (RFC 5216, RFC 9190): no password
# hash to compute, so on a local directory and store every round is short CPU work
LIGHT_METHODS = frozenset({MethodId.legacy(EapType.MSCHAPV2), MethodId.legacy(EapType.TLS)})


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
    # EAP methods whose rounds are short work when the directory and store are local
    # (eapkit serve sets LIGHT_METHODS then): a front may run them on its event loop
    light_methods: frozenset[MethodId] = frozenset()
    _held: set[DuplicateKey] = field(default_factory=set, repr=False)
    _replies: OrderedDict[DuplicateKey, tuple[float, bytes]] = field(
        default_factory=OrderedDict, repr=False
    )
    stats: dict[str, int] = field(default_factory=dict)
    unknown_log_interval: float = 60.0
    _in_progress: set[DuplicateKey] = field(default_factory=set, repr=False)
    _unknown: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.eap is not None and self.eap.on_abandoned is None:
            self.eap.on_abandoned = lambda decision: self.decisions.write(decision.as_dict())

    def count(self, what: str) -> None:
        """Add one to the statistic ``what`` (fronts count their own events here)."""
        with self._lock:
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

    def _unknown_client(self, host: str, now: float) -> Drop:
        """Count a datagram from an unknown address; log one summary line (and one
        decision line) per address per ``unknown_log_interval`` (RFC 2865 §3 says drop
        it; a flood must not flood the logs too)."""
        self.count("unknown_client")
        with self._lock:
            seen = self._unknown.get(host)
            if seen is None:
                if len(self._unknown) >= 4096:  # bounded: forget the oldest addresses
                    for old in list(self._unknown)[:1024]:
                        del self._unknown[old]
                seen = self._unknown[host] = [0.0, 0]
            seen[1] += 1
            if seen[0] > now:
                return Drop("unknown_client")
            count = int(seen[1])
            seen[0], seen[1] = now + self.unknown_log_interval, 0
        log.warning(
            "dropped %d datagram(s) from unknown client %s (one line per %gs)",
            count,
            host,
            self.unknown_log_interval,
        )
        self.decisions.write(
            {
                "time": round(now, 3),
                "event": "dropped",
                "client": host,
                "reason": "unknown_client",
                "count": count,
            }
        )
        return Drop("unknown_client")

    def expire(self, now: float) -> int:
        """Forget EAP conversations and plain challenges idle past their time (each
        abandoned conversation goes to the decision log); fronts call this on a timer.
        Returns how many conversations expired."""
        n = self.eap.expire(now) if self.eap is not None else 0
        expire_plain = getattr(self.plain, "expire", None)
        if callable(expire_plain):
            expire_plain(now)
        with self._lock:
            self._expire_replies(now)
        return n

    def receive(
        self, data: bytes, source: tuple[str, int], now: float, *, local_port: int = 0
    ) -> Handled:
        """:meth:`handle` for raw bytes from ``source`` (host, port), received on
        ``local_port``: unknown clients and undecodable bytes are dropped first."""
        admitted = self.admit(data, source, now, local_port=local_port)
        if isinstance(admitted, Admitted):
            return self.run(admitted, now)
        return admitted

    def admit(
        self,
        data: bytes,
        source: tuple[str, int],
        now: float,
        *,
        local_port: int = 0,
        client: Client | None = None,
    ) -> Handled | Admitted:
        """The cheap part of :meth:`receive`, for the thread that reads datagrams:
        unknown clients, undecodable bytes, duplicates, Status-Server and accounting are
        answered here; an Access-Request comes back :class:`Admitted` for :meth:`run`.
        ``client``: the NAS a transport identified itself (RadSec, by certificate),
        else the client table finds it by ``source``'s address."""
        host = source[0]
        client = client or self.clients.find(host)
        if client is None:
            return self._unknown_client(host, now)
        try:
            request = decode_1_1(data) if _v11(client.secret) else decode(data)
        except DecodeError as exc:
            return self._drop("malformed", host, now, str(exc))
        return self._admit(request, client, now, source, local_port)

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
        admitted = self._admit(request, client, now, source, local_port)
        if isinstance(admitted, Admitted):
            return self.run(admitted, now)
        return admitted

    def _admit(
        self,
        request: Packet,
        client: Client,
        now: float,
        source: tuple[str, int],
        local_port: int = 0,
    ) -> Handled | Admitted:
        host = source[0]
        key = (host, source[1], request.identifier, request.authenticator)
        with self._lock:
            self._expire_replies(now)
            cached = self._replies.get(key)
            held = key in self._held
            running = key in self._in_progress
            fresh = cached is None and not held and not running
            if fresh and request.code == Code.ACCESS_REQUEST:
                self._in_progress.add(key)
                return Admitted(request, client, key)
        if cached is not None:
            self.count("duplicate")
            return Reply(cached[1]) if cached[1] else Drop("duplicate_dropped")
        if held:
            self.count("duplicate_held")  # the NAS retransmits while the user decides
            return Drop("duplicate_held")
        if running:
            self.count("duplicate_in_progress")  # the NAS retransmits while a check runs
            return Drop("duplicate_in_progress")
        return self._remember(key, self._dispatch(request, client, host, now, local_port), now)

    def run(self, admitted: Admitted, now: float) -> Handled:
        """Answer an :class:`Admitted` Access-Request (any thread): never raises; a
        failing check ends in a Reject with a reason (fail closed)."""
        request, client, key = admitted.request, admitted.client, admitted.key
        try:
            try:
                handled = self._dispatch(request, client, key[0], now)
            except Exception as exc:  # one bad request must not stop the server
                handled = self._failed(request, client, now, exc)
            return self._remember(key, handled, now)
        finally:
            with self._lock:
                self._in_progress.discard(key)

    def needs_no_check(self, admitted: Admitted) -> bool:
        """Whether :meth:`run` of ``admitted`` is pure EAP/TLS state work (the rule is
        :meth:`EapAccess.needs_no_check`): no password, code, store, directory or
        authorization, so a front may run it on its event loop instead of its pool.
        PAP and every other Access-Request: False."""
        if self.eap is None:  # (EAP with a password is refused outright: pure too)
            return False
        return self.eap.needs_no_check(admitted.request, admitted.client.name)

    def light(self, admitted: Admitted) -> bool:
        """Whether ``admitted`` is a round of a conversation whose method is in
        ``light_methods`` (:meth:`EapAccess.light`): its checks are short CPU work on
        local backends (EAP-MSCHAPv2's NT-Response, EAP-TLS's certificate and the final
        authorization's local reads), so the pool's thread hand-off there and back
        would cost more than the check (issue 21); or a TTLS or PEAP round its tunnel
        shows reaches no other check (:meth:`AuthenticatorSession.light`).  Never PAP,
        GTC or a tunnel round that may reach them: a password check is a PBKDF2."""
        if self.eap is None or not self.light_methods:
            return False
        return self.eap.light(admitted.request, admitted.client.name, self.light_methods)

    def pooling(self, admitted: Admitted) -> None:
        """``admitted`` goes to a front's pool (see :meth:`EapAccess.pooling`)."""
        if self.eap is not None:
            self.eap.pooling(admitted.request)

    def abandon(self, admitted: Admitted, reason: str, now: float) -> Drop:
        """An Admitted request the front will not run (its queue was full or it waited
        past its deadline): counted, and the NAS's retransmission may try again."""
        with self._lock:
            self._in_progress.discard(admitted.key)
        self.count(reason)
        return Drop(reason)

    def refuse(self, admitted: Admitted, reason: str, now: float) -> Handled:
        """:meth:`abandon` for a transport whose NAS never retransmits (RADIUS over TCP,
        RFC 6613 §2.6.1, so RadSec): an Access-Reject saying ``reason`` in the decision
        log (an EAP Failure when EAP), remembered as the request's reply."""
        with self._lock:
            self._in_progress.discard(admitted.key)
        self.count(reason)
        handled = self._reject(admitted.request, admitted.client, now, reason, "")
        return self._remember(admitted.key, handled, now)

    def _remember(self, key: DuplicateKey, handled: Handled, now: float) -> Handled:
        with self._lock:
            if isinstance(handled, Hold):
                handled.key = key
                self._held.add(key)
            elif isinstance(handled, Reply) or handled.reason == "reply_too_large":
                data = handled.data if isinstance(handled, Reply) else b""
                self._replies[key] = (now + self.duplicate_ttl, data)
                if len(self._replies) > self.duplicate_cap:
                    self._replies.popitem(last=False)
        return handled

    def _failed(self, request: Packet, client: Client, now: float, exc: Exception) -> Handled:
        """The Reject for a request whose check raised: ``store_unavailable`` or
        ``internal_error``; one log line, the traceback only in the debug log."""
        reason = "store_unavailable" if isinstance(exc, StoreUnavailable) else "internal_error"
        if isinstance(exc, DirectoryUnavailable):  # no directory server answered
            reason = "directory_unavailable"
        log.warning(
            "%s handling a request from %s: %s",
            reason,
            client.name,
            type(exc).__name__,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        return self._reject(request, client, now, reason, type(exc).__name__)

    def _reject(
        self, request: Packet, client: Client, now: float, reason: str, detail: str
    ) -> Reply | Drop:
        """An Access-Reject (with an EAP Failure when EAP) for ``reason``, logged."""
        attrs: list[Attribute] = []
        eap = request.eap_message()
        if eap is not None:
            identifier = eap[1] if len(eap) >= 2 else 0
            attrs += eap_message_attributes(Failure(identifier).encode())
        attrs.append((Attr.REPLY_MESSAGE, REJECT_MESSAGE))
        user = (request.get(Attr.USER_NAME) or b"").decode("utf-8", "backslashreplace")
        encoded = self._encoded(Code.ACCESS_REJECT, request, attrs, client, now)
        sent = isinstance(encoded, Reply)
        if isinstance(encoded, Drop):
            reason = encoded.reason
        record = {
            "time": round(now, 3),
            "client": client.name,
            "user": user,
            "result": "reject" if sent else "dropped",
            "reason": reason,
        }
        if detail:
            record["detail"] = detail
        self.decisions.write(record)
        if sent:
            self.count("reject")
        return encoded

    def _encoded(
        self, code: Code, request: Packet, attributes: list[Attribute], client: Client, now: float
    ) -> Reply | Drop:
        """The encoded reply, or a drop when it would exceed 4096 octets (RFC 2865 §3):
        FreeRADIUS refuses to encode such a reply and sends nothing, so do we."""
        try:
            data = _encode_reply(code, request, attributes, client.secret)
        except ValueError:
            data = b""
        if 0 < len(data) <= MAX_PACKET_SIZE:
            return Reply(data)
        self.count("reply_too_large")
        log.warning("dropped a reply to %s: reply_too_large (code %d)", client.name, int(code))
        return Drop("reply_too_large")

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
        with self._lock:
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
        with self._lock:
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
            if _v11(secret):  # RFC 9765 §5.2: no Message-Authenticator
                pass
            elif request.message_authenticator is None:
                return self._drop("missing_message_authenticator", host, now)
            elif not request.verify_message_authenticator(secret):
                return self._drop("bad_message_authenticator", host, now)
            self.count("status_server")
            # RFC 5997 §3: Accounting-Response on an accounting port, else Access-Accept.
            answer = (
                Code.ACCOUNTING_RESPONSE
                if local_port in self.accounting_ports
                else Code.ACCESS_ACCEPT
            )
            return Reply(_encode_reply(answer, request, [], secret))
        return self._drop("unexpected_code", host, now, str(code))

    def _access(
        self, request: Packet, secret: bytes, client: Client, host: str, now: float
    ) -> Handled:
        eap = request.eap_message()
        has_ma = request.message_authenticator is not None
        if _v11(secret):  # RFC 9765 §5.2: TLS authenticates, no MD5
            pass
        elif has_ma:
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
            reply = self.eap.handle(request, secret, client.name, now, nas=client)
        elif eap is None and self.plain is not None:
            reply = self.plain.handle(request, secret, client.name, now, nas=client)
        else:
            return self._drop("no_handler", host, now, "EAP" if eap is not None else "PAP")
        if reply is None:  # an EAP packet discarded (RFC 3579 §2.6.2): logged, not answered
            self.count("silently_discarded")
            self.decisions.write(
                {"time": round(now, 3), "event": "discarded", "client": client.name}
            )
            return Drop("silently_discarded")
        encoded = self._encoded(reply.code, request, reply.attributes, client, now)
        if reply.decision is not None:
            record = reply.decision.as_dict()
            record["cpu_ms"] = round((self.cpu_clock() - started) * 1000, 3)
            calling = request.get(Attr.CALLING_STATION_ID)
            if calling:  # where the user came from, for audit reports (RFC 2865 §5.31)
                record["calling_station_id"] = calling.decode("utf-8", "backslashreplace")
            if isinstance(encoded, Drop):  # never log an accept that was not sent
                record.update(result="dropped", reason=encoded.reason)
                self.decisions.write(record)
                return encoded
            if self.approval is not None and reply.code == Code.ACCESS_ACCEPT:
                held = self._hold(request, reply, secret, client.name, record, now)
                if held is not None:
                    return held
                if reply.code != Code.ACCESS_ACCEPT:  # the gate refused: a Reject now
                    encoded = self._encoded(reply.code, request, reply.attributes, client, now)
            self.decisions.write(record)
            self.count(str(record["result"]))
        return encoded

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
            _encode_reply(Code.ACCESS_ACCEPT, request, reply.attributes, secret),
            _encode_reply(Code.ACCESS_REJECT, request, reject, secret),
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
        return Reply(_encode_reply(Code.ACCESS_REJECT, request, attrs, secret))

    def _accounting(
        self, request: Packet, secret: bytes, client: Client, host: str, now: float
    ) -> Handled:
        if _v11(secret):  # RFC 9765 §4: a Token, no Request Authenticator
            pass
        elif not request.verify_request_authenticator(secret):
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
        return Reply(_encode_reply(Code.ACCOUNTING_RESPONSE, request, [], secret))


def _encode_reply(
    code: int, request: Packet, attributes: Sequence[Attribute], secret: bytes
) -> bytes:
    """A reply as the client's RADIUS version lays it out: RFC 2865 §3, or RFC 9765 §4."""
    if _v11(secret):
        return encode_reply_1_1(code, request, attributes)
    return encode_reply(code, request, attributes, secret)


def _v11(secret: bytes) -> bool:
    """A RADIUS/1.1 client's (RFC 9765): no MD5, no shared secret."""
    return isinstance(secret, Radius11)


def _status_name(status: int | None) -> str:
    if status is None:
        return ""
    try:
        return AcctStatusType(status).name.replace("_", "-").title()
    except ValueError:
        return str(status)


def _ip(raw: bytes | None) -> str:
    return str(ipaddress.IPv4Address(raw)) if raw is not None and len(raw) == 4 else ""
