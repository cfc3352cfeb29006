"""The few handshake fields resumption needs: which session a handshake offered, resumed
or issued.

OpenSSL keeps the server's sessions (stateful: RFC 5246 §7.4.1.2 session IDs in TLS
1.2, RFC 8446 §4.6.1 tickets that are only a session ID in TLS 1.3), but pyOpenSSL's
binding offers no session callbacks; the engine learns the ids from the handshake
messages themselves (``SSL_CTX_set_msg_callback`` hands them over in plaintext) and
keys what a login proved (:mod:`eapkit.tlsio.resume`) by them:

============================  ============================================================
message (RFC 8446 §4)         field read
============================  ============================================================
ClientHello (1)               legacy_session_id; pre_shared_key (41) identities (§4.2.11)
ServerHello (2)               legacy_session_id; pre_shared_key selected_identity
NewSessionTicket (4, TLS 1.3) ticket (§4.6.1)
============================  ============================================================

Every decoder raises only :class:`~eapkit.errors.DecodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from eapkit.errors import DecodeError

__all__ = [
    "CLIENT_HELLO",
    "NEW_SESSION_TICKET",
    "SERVER_HELLO",
    "ClientHello",
    "ServerHello",
    "handshake_type",
    "parse_client_hello",
    "parse_new_session_ticket",
    "parse_server_hello",
]

CLIENT_HELLO = 1
SERVER_HELLO = 2
NEW_SESSION_TICKET = 4
_PRE_SHARED_KEY = 41


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise DecodeError(f"{what} runs past the message", offset=self.pos, expected=what)
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def number(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def vector(self, n: int, what: str) -> bytes:
        return self.take(self.number(n, what + " length"), what)


def handshake_type(message: bytes) -> int:
    """The msg_type of a handshake message (RFC 8446 §4), 0 for an empty one."""
    return message[0] if message else 0


def _body(message: bytes, wanted: int, what: str) -> _Reader:
    r = _Reader(message)
    if r.number(1, "msg_type") != wanted:
        raise DecodeError(f"not a {what}", offset=0, expected=what)
    length = r.number(3, "length")
    if length != len(message) - 4:
        raise DecodeError(f"{what} length {length} disagrees", offset=1, expected="length")
    return r


def _extensions(r: _Reader) -> dict[int, bytes]:
    if r.pos == len(r.data):  # TLS 1.2 hellos may carry no extensions at all
        return {}
    block = _Reader(r.vector(2, "extensions"))
    found: dict[int, bytes] = {}
    while block.pos < len(block.data):
        kind = block.number(2, "extension_type")
        found[kind] = block.vector(2, "extension_data")
    return found


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What a ClientHello offers to resume."""

    session_id: bytes
    psk_identities: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ServerHello:
    """What a ServerHello picked: the session id (TLS 1.2) or the PSK's index (1.3)."""

    session_id: bytes
    selected_identity: int | None


def parse_client_hello(message: bytes) -> ClientHello:
    """RFC 8446 §4.1.2 (and RFC 5246 §7.4.1.2): session id and PSK identities."""
    r = _body(message, CLIENT_HELLO, "ClientHello")
    r.take(2 + 32, "legacy_version and random")
    session_id = r.vector(1, "legacy_session_id")
    r.vector(2, "cipher_suites")
    r.vector(1, "legacy_compression_methods")
    psk = _extensions(r).get(_PRE_SHARED_KEY)
    identities: list[bytes] = []
    if psk is not None:
        block = _Reader(_Reader(psk).vector(2, "identities"))
        while block.pos < len(block.data):
            identities.append(block.vector(2, "identity"))
            block.take(4, "obfuscated_ticket_age")
    return ClientHello(session_id, tuple(identities))


def parse_server_hello(message: bytes) -> ServerHello:
    """RFC 8446 §4.1.3 (and RFC 5246 §7.4.1.3): session id and the selected PSK."""
    r = _body(message, SERVER_HELLO, "ServerHello")
    r.take(2 + 32, "legacy_version and random")
    session_id = r.vector(1, "legacy_session_id")
    r.take(2 + 1, "cipher_suite and compression")
    psk = _extensions(r).get(_PRE_SHARED_KEY)
    selected = _Reader(psk).number(2, "selected_identity") if psk is not None else None
    return ServerHello(session_id, selected)


def parse_new_session_ticket(message: bytes) -> bytes:
    """RFC 8446 §4.6.1: the ticket of a TLS 1.3 NewSessionTicket."""
    r = _body(message, NEW_SESSION_TICKET, "NewSessionTicket")
    r.take(4 + 4, "ticket_lifetime and ticket_age_add")
    r.vector(1, "ticket_nonce")
    ticket = r.vector(2, "ticket")
    if not ticket:
        raise DecodeError("empty ticket", offset=r.pos, expected="ticket")
    return ticket
