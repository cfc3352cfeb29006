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
- Status-Server (RFC 5997): answered with Access-Accept.

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

from eapkit.errors import DecodeError
from eapkit.radius.access import AccessReply, EapAccess
from eapkit.radius.dictionary import AcctStatusType, Attr
from eapkit.radius.packet import Code, Packet, decode, encode_reply

__all__ = ["Client", "ClientTable", "DecisionLog", "PlainAccess", "RadiusCore", "serve"]

log = logging.getLogger("eapkit.radius")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Client:
    """A NAS allowed to talk to this server, with its shared secret (RFC 2865 §3)."""

    network: IpNetwork
    secret: bytes = field(repr=False)
    name: str = ""

    @classmethod
    def of(cls, network: str, secret: str | bytes, name: str = "") -> Client:
        return cls(
            ipaddress.ip_network(network, strict=False),
            secret.encode() if isinstance(secret, str) else secret,
            name or network,
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

    def write(self, record: dict[str, Any]) -> None:
        if self.records is not None:
            self.records.append(record)
        self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._stream.flush()


class PlainAccess(Protocol):
    """Access-Requests without EAP (PAP, RFC 2865 challenge-response)."""

    def handle(
        self, request: Packet, secret: bytes, client: str, now: float
    ) -> AccessReply | None: ...


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
    _replies: OrderedDict[tuple[str, int, int, bytes], tuple[float, bytes]] = field(
        default_factory=OrderedDict, repr=False
    )
    stats: dict[str, int] = field(default_factory=dict)

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
        reply = self._dispatch(request, client, host, now)
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

    def _dispatch(self, request: Packet, client: Client, host: str, now: float) -> bytes | None:
        secret = client.secret
        code = request.code
        if code == Code.ACCESS_REQUEST:
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
    ) -> bytes | None:
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
            self.decisions.write(record)
            self._count(reply.decision.result)
        return encode_reply(reply.code, request, reply.attributes, secret)

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
