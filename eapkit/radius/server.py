"""The reference RADIUS server: an asyncio UDP front on a sans-I/O core.

:class:`RadiusCore` takes one datagram, its source address and the time, and returns
the reply bytes (or None).  Everything a RADIUS server owes its clients lives there:

- clients by address or CIDR, each with its own secret; datagrams from anyone else are
  dropped and logged (RFC 2865 §3);
- Message-Authenticator verified on every Access-Request that carries one, required on
  every request with EAP-Message (RFC 3579 §3.2) and, by default, on every
  Access-Request (the BlastRADIUS mitigation, CVE-2024-3596);
- duplicate detection: a retransmission (same client, port, identifier and Request
  Authenticator) gets the cached reply and nothing runs twice (RFC 5080 §2.2.2);
- Access-Request with EAP-Message -> :class:`~eapkit.radius.access.EapAccess`; without
  EAP-Message -> the plain (PAP) handler when one is configured;
- Accounting-Request (RFC 2866): Request Authenticator checked, the record logged,
  Accounting-Response sent;
- Status-Server (RFC 5997): answered with Access-Accept;
- an optional approval gate (:mod:`eapkit.bridge`) may hold an Access-Accept until the
  user approves the login elsewhere: the core then answers nothing, absorbs the NAS's
  retransmissions, and the front sends the Accept, or a Reject, once
  :meth:`RadiusCore.settle` is told the outcome.

Every decision is one JSON line on the decision log (no secrets); :func:`serve` runs the
core on sockets until told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast

from eapkit.directory.scope import request_scope
from eapkit.errors import DecodeError
from eapkit.packet import Failure
from eapkit.radius.access import REJECT_MESSAGE, AccessReply, EapAccess
from eapkit.radius.dictionary import AcctStatusType, Attr
from eapkit.radius.packet import (
    Attribute,
    Code,
    Packet,
    decode,
    eap_message_attributes,
    encode_reply,
)

__all__ = [
    "ApprovalGate",
    "Client",
    "ClientTable",
    "DecisionLog",
    "HeldReply",
    "Hold",
    "PlainAccess",
    "RadiusCore",
    "serve",
]

log = logging.getLogger("eapkit.radius")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Client:
    """A NAS allowed to talk to this server, with its shared secret (RFC 2865 §3)."""

    network: IpNetwork
    secret: bytes = field(repr=False)
    name: str = ""
    # "enforce": a user with a second factor must prove it in this conversation, so a
    # password-only method (MS-CHAPv2, bare or tunnelled) is refused.  "nas": this NAS
    # runs the second factor in a round of its own (strongSwan's remote-2 rounds, RFC
    # 4739), so a password-only round is allowed.
    second_factor: str = "enforce"

    @classmethod
    def of(
        cls, network: str, secret: str | bytes, name: str = "", second_factor: str = "enforce"
    ) -> Client:
        if second_factor not in ("enforce", "nas"):
            raise ValueError('second_factor is "enforce" or "nas"')
        return cls(
            ipaddress.ip_network(network, strict=False),
            secret.encode() if isinstance(secret, str) else secret,
            name or network,
            second_factor,
        )


class ClientTable:
    """Finds the most specific client entry for a source address."""

    def __init__(self, clients: Sequence[Client]) -> None:
        self._clients = sorted(clients, key=lambda c: c.network.prefixlen, reverse=True)
        self._cache: dict[str, Client | None] = {}

    def find(self, address: str) -> Client | None:
        if address in self._cache:
            return self._cache[address]
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        found = next((c for c in self._clients if ip in c.network), None)
        if len(self._cache) < 4096:
            self._cache[address] = found
        return found


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

    def handle(
        self, request: Packet, secret: bytes, client: str, now: float
    ) -> AccessReply | None: ...


@dataclass(frozen=True, slots=True)
class Hold:
    """An approval gate's answer for an Accept it holds: ``ticket`` names the pending
    approval and the reply waits until ``deadline`` at most.  A non-empty ``refused``
    (a reason code) rejects the login at once instead."""

    ticket: str = ""
    deadline: float = 0.0
    refused: str = ""


class ApprovalGate(Protocol):
    """Holds Access-Accepts until a person approves the login elsewhere
    (:mod:`eapkit.bridge`): the password step is done, the second factor is not."""

    def hold(self, user: str, request: Packet, client: str, now: float) -> Hold | None:
        """None when ``user`` needs no approval, else a :class:`Hold`."""
        ...

    async def wait(self, ticket: str, deadline: float) -> str:
        """``approved``, ``denied`` or ``expired``: once decided, or at ``deadline``."""
        ...


@dataclass(slots=True)
class HeldReply:
    """A held Access-Accept and the Reject that replaces it on refusal, both encoded for
    the request (whose retransmissions are absorbed meanwhile)."""

    key: tuple[str, int, int, bytes]
    ticket: str
    deadline: float
    accept: bytes
    reject: bytes
    record: dict[str, Any]


def _rejection(attributes: list[Attribute]) -> list[Attribute]:
    """The Reject replacing a held Accept: an EAP Success becomes a Failure with the same
    Identifier (RFC 3748 §4.2, RFC 3579 §2.6.3), and nothing else of the Accept stays."""
    eap = b"".join(value for typ, value in attributes if typ == Attr.EAP_MESSAGE)
    out: list[Attribute] = []
    if len(eap) >= 2:
        out += eap_message_attributes(Failure(eap[1]).encode())
    out.append((Attr.REPLY_MESSAGE, REJECT_MESSAGE))
    return out


@dataclass
class RadiusCore:
    """The server's logic, without sockets."""

    clients: ClientTable
    eap: EapAccess | None
    plain: PlainAccess | None = None
    decisions: DecisionLog = field(default_factory=DecisionLog)
    require_message_authenticator: bool = True
    duplicate_ttl: float = 10.0
    duplicate_cap: int = 65536
    approval: ApprovalGate | None = None
    _held: dict[tuple[str, int, int, bytes], HeldReply] = field(default_factory=dict, repr=False)
    _new_held: list[HeldReply] = field(default_factory=list, repr=False)
    _replies: OrderedDict[tuple[str, int, int, bytes], tuple[float, bytes]] = field(
        default_factory=OrderedDict, repr=False
    )
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.eap is not None and self.eap.on_abandoned is None:
            self.eap.on_abandoned = lambda decision: self.decisions.write(decision.as_dict())

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def _drop(self, what: str, address: str, detail: str = "") -> None:
        self._count(what)
        log.warning("dropped datagram from %s: %s %s", address, what, detail)
        self.decisions.write(
            {"time": round(time.time(), 3), "event": "dropped", "client": address, "reason": what}
        )

    def handle_datagram(self, data: bytes, address: tuple[str, int], now: float) -> bytes | None:
        host, port = address[0], address[1]
        client = self.clients.find(host)
        if client is None:
            self._drop("unknown_client", host)
            return None
        try:
            request = decode(data)
        except DecodeError as exc:
            self._drop("malformed", host, str(exc))
            return None
        key = (host, port, request.identifier, request.authenticator)
        self._expire_replies(now)
        cached = self._replies.get(key)
        if cached is not None:
            self._count("duplicate")
            return cached[1]
        if key in self._held:
            self._count("duplicate_held")  # the NAS retransmits while the user decides
            return None
        reply = self._dispatch(request, client, host, now)
        if isinstance(reply, HeldReply):
            reply.key = key
            self._held[key] = reply
            self._new_held.append(reply)
            return None
        if reply is not None:
            self._replies[key] = (now + self.duplicate_ttl, reply)
            if len(self._replies) > self.duplicate_cap:
                self._replies.popitem(last=False)
        return reply

    def _expire_replies(self, now: float) -> None:
        replies = self._replies
        while replies:
            expires, _ = next(iter(replies.values()))
            if expires > now:
                return
            replies.popitem(last=False)

    def take_held(self) -> list[HeldReply]:
        """The Accepts held since the last call; the front waits on each and then calls
        :meth:`settle`."""
        held, self._new_held = self._new_held, []
        return held

    def settle(self, held: HeldReply, outcome: str, now: float) -> bytes:
        """The reply to a held Accept once its approval is ``approved`` (the Accept) or
        anything else (the Reject); retransmissions later get it from the duplicate
        cache."""
        self._held.pop(held.key, None)
        approved = outcome == "approved"
        record = dict(held.record)
        record.update(
            time=round(now, 3),
            result="accept" if approved else "reject",
            reason=outcome if approved else f"approval_{outcome}",
            waited_ms=round((now - float(held.record["time"])) * 1000, 3),
        )
        self.decisions.write(record)
        self._count(str(record["result"]))
        reply = held.accept if approved else held.reject
        self._replies[held.key] = (now + self.duplicate_ttl, reply)
        return reply

    def _dispatch(
        self, request: Packet, client: Client, host: str, now: float
    ) -> bytes | HeldReply | None:
        secret = client.secret
        code = request.code
        if code == Code.ACCESS_REQUEST:
            with request_scope():  # one read of the user's record per request
                return self._access(request, secret, client, host, now)
        if code == Code.ACCOUNTING_REQUEST:
            return self._accounting(request, secret, client, host, now)
        if code == Code.STATUS_SERVER:
            if not request.verify_message_authenticator(secret):
                self._drop("bad_message_authenticator", host)
                return None
            return encode_reply(Code.ACCESS_ACCEPT, request, [], secret)
        self._drop("unexpected_code", host, str(code))
        return None

    def _access(
        self, request: Packet, secret: bytes, client: Client, host: str, now: float
    ) -> bytes | HeldReply | None:
        eap = request.eap_message()
        has_ma = request.message_authenticator is not None
        if has_ma:
            if not request.verify_message_authenticator(secret):
                self._drop("bad_message_authenticator", host)
                return None
        elif eap is not None or self.require_message_authenticator:
            self._drop("missing_message_authenticator", host)
            return None
        started = time.perf_counter()
        if eap is not None and self.eap is not None:
            reply = self.eap.handle(request, secret, client.name, now)
        elif eap is None and self.plain is not None:
            reply = self.plain.handle(request, secret, client.name, now)
        else:
            self._drop("no_handler", host, "EAP" if eap is not None else "PAP")
            return None
        if reply is None:
            self._count("silently_discarded")
            return None
        if reply.decision is not None:
            record = reply.decision.as_dict()
            record["cpu_ms"] = round((time.perf_counter() - started) * 1000, 3)
            if self.approval is not None and reply.code == Code.ACCESS_ACCEPT:
                held = self._hold(request, reply, secret, client.name, record, now)
                if held is not None:
                    return held
            self.decisions.write(record)
            self._count(reply.decision.result)
        return encode_reply(reply.code, request, reply.attributes, secret)

    def _hold(
        self,
        request: Packet,
        reply: AccessReply,
        secret: bytes,
        client: str,
        record: dict[str, Any],
        now: float,
    ) -> HeldReply | None:
        """Ask the approval gate about an Accept: hold it, let it go (None), or turn it
        into a Reject in place (the gate refused, e.g. its store is down: fail closed)."""
        assert self.approval is not None and reply.decision is not None
        hold = self.approval.hold(reply.decision.user, request, client, now)
        if hold is None:
            return None
        reject = _rejection(reply.attributes)
        if hold.refused:
            reply.code, reply.attributes = Code.ACCESS_REJECT, reject
            reply.decision.result, reply.decision.reason = "reject", hold.refused
            record.update(result="reject", reason=hold.refused)
            return None
        record.update(result="held", reason="approval_pending", ticket=hold.ticket)
        self.decisions.write(record)
        self._count("held")
        return HeldReply(
            ("", 0, 0, b""),
            hold.ticket,
            hold.deadline,
            encode_reply(Code.ACCESS_ACCEPT, request, reply.attributes, secret),
            encode_reply(Code.ACCESS_REJECT, request, reject, secret),
            record,
        )

    def _accounting(
        self, request: Packet, secret: bytes, client: Client, host: str, now: float
    ) -> bytes | None:
        if not request.verify_request_authenticator(secret):
            self._drop("bad_accounting_authenticator", host)
            return None
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
            self._drop("malformed_accounting", host, str(exc))
            return None
        self.decisions.write(record)
        self._count("accounting")
        return encode_reply(Code.ACCOUNTING_RESPONSE, request, [], secret)


def _status_name(status: int | None) -> str:
    if status is None:
        return ""
    try:
        return AcctStatusType(status).name.replace("_", "-").title()
    except ValueError:
        return str(status)


def _ip(raw: bytes | None) -> str:
    return str(ipaddress.IPv4Address(raw)) if raw is not None and len(raw) == 4 else ""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, core: RadiusCore, clock: Callable[[], float]) -> None:
        self.core = core
        self.clock = clock
        self.transport: asyncio.DatagramTransport | None = None
        self._waiting: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            reply = self.core.handle_datagram(data, (str(addr[0]), int(addr[1])), self.clock())
        except Exception:  # one bad request must not stop the server
            log.exception("internal error handling a datagram from %s", addr[0])
            self.core._count("internal_error")
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)
        if self.core.approval is not None:
            for held in self.core.take_held():
                task = asyncio.get_running_loop().create_task(self._settle(held, addr))
                self._waiting.add(task)
                task.add_done_callback(self._waiting.discard)

    async def _settle(self, held: HeldReply, addr: tuple[str | Any, int]) -> None:
        """Wait for the approval of a held Accept, then answer: on shutdown or a gate
        error the login is refused, never left hanging or let through."""
        outcome = "expired"
        try:
            assert self.core.approval is not None
            outcome = await self.core.approval.wait(held.ticket, held.deadline)
        except Exception:
            log.exception("approval gate failed for ticket %s", held.ticket[:8])
            outcome = "error"
        finally:
            reply = self.core.settle(held, outcome, self.clock())
            if self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(reply, addr)


async def serve(
    core: RadiusCore,
    listen: Sequence[tuple[str, int]],
    *,
    ready: Callable[[list[tuple[str, int]]], None] | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    reuse_port: bool = False,
) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives; ``ready`` gets the bound
    addresses (useful with port 0)."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # off the main thread this fails: the caller stops us through ``stop``
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    transports: list[asyncio.DatagramTransport] = []
    bound: list[tuple[str, int]] = []
    try:
        for host, port in listen:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(core, clock),
                local_addr=(host, port),
                reuse_port=reuse_port or None,
            )
            transports.append(transport)
            sockname = transport.get_extra_info("sockname")
            bound.append((str(sockname[0]), int(sockname[1])))
        if ready is not None:
            ready(bound)
        await stop.wait()
    finally:
        for transport in transports:
            transport.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
