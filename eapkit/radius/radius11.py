"""RADIUS/1.1 (RFC 9765): RADIUS over TLS without MD5, the one codec of both sides
(the RadSec listener's core and ``eapkit probe --radsec --alpn radius/1.1``).

Negotiated by ALPN on a RadSec connection (``radius/1.1``, RFC 9765 §3.1; TLS 1.3 or
later, §3.2); a client that offers only ``radius/1.1`` closes the connection rather than
fall back to RADIUS/1.0 (§3.3).  The header keeps the RADIUS layout but not its
meaning (§4)::

     0                   1                   2                   3
    |     Code      |  Reserved-1   |            Length             |
    |                             Token                             |
    |                     Reserved-2 (12 octets)                    |
    |  Type  | Length |  Value ...    (attributes, RFC 2865 §5)

- Reserved-1 and Reserved-2 are zero when sent and ignored when received (§4.1);
- the Token (4 octets) matches a reply to its request in place of the Identifier and
  the Request Authenticator (§4.2); a reply copies its request's Token;
- there is no shared secret and no MD5 at all (§5): no Response Authenticator, no
  Message-Authenticator (never sent; one received is discarded, §5.2), and the
  attributes RADIUS/1.0 obfuscates travel as they are, protected by TLS only:
  User-Password (§5.1.1) and, in the Microsoft VSA, MS-MPPE-Send-Key/-Recv-Key (§5.1.4),
  whose value is then the key itself.

Requests and replies are laid out by :func:`encode` (a reply by :func:`encode_reply`,
which copies its request's Token and Proxy-State); :func:`decode` reads both.  Decoded
packets are :class:`eapkit.radius.packet.Packet` objects (Identifier 0, the Token and
Reserved-2 in the Authenticator field) so that everything above the codec reads them
as it reads RADIUS/1.0.  :func:`decode` raises only :class:`~eapkit.errors.DecodeError`.

Where code shared with RADIUS/1.0 takes a shared secret, :data:`RADIUS_1_1` stands in
for it: :mod:`eapkit.radius.hiding` (and so :mod:`eapkit.radius.mppe`) then leaves
User-Password and the MS-MPPE keys as they are (§5.1), and the server core answers
with this module's :func:`encode_reply`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from eapkit.errors import DecodeError
from eapkit.radius.dictionary import MAX_VALUE_LENGTH, Attr
from eapkit.radius.packet import HEADER_SIZE, MAX_PACKET_SIZE, Attribute, Packet
from eapkit.radius.packet import decode as decode_1_0
from eapkit.rand import SYSTEM_RANDOM, RandomSource

__all__ = [
    "ALPN_1_0",
    "ALPN_1_1",
    "RADIUS_1_1",
    "TOKEN_SIZE",
    "Radius11",
    "TokenCounter",
    "decode",
    "encode",
    "encode_reply",
    "token_of",
]


class Radius11(bytes):
    """The "secret" of a RADIUS/1.1 connection (RFC 9765 §5): there is none; every
    function that would sign or obfuscate with a secret does nothing with this one."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RADIUS_1_1"


RADIUS_1_1 = Radius11()

ALPN_1_0 = "radius/1.0"
ALPN_1_1 = "radius/1.1"
TOKEN_SIZE = 4
_RESERVED_2 = bytes(12)
_HEADER = struct.Struct("!BBH4s12s")
_MA = Attr.MESSAGE_AUTHENTICATOR.value
_PROXY_STATE = Attr.PROXY_STATE.value


class TokenCounter:
    """Tokens for one connection: a random start, then +1 modulo 2**32 (RFC 9765 §4.2
    asks only that no two outstanding requests share one)."""

    def __init__(self, random: RandomSource = SYSTEM_RANDOM) -> None:
        self._value = int.from_bytes(random.random_bytes(TOKEN_SIZE), "big")

    def next(self) -> bytes:
        token = self._value.to_bytes(TOKEN_SIZE, "big")
        self._value = (self._value + 1) & 0xFFFFFFFF
        return token


def encode(code: int, token: bytes, attributes: Sequence[Attribute]) -> bytes:
    """A RADIUS/1.1 packet (request, or reply with its request's ``token``).

    ``ValueError`` (a programming error) for a Token that is not 4 octets, a
    Message-Authenticator (RFC 9765 §5.2: never sent), a value over 253 octets or a
    packet over 4096."""
    if len(token) != TOKEN_SIZE:
        raise ValueError(f"a RADIUS/1.1 Token is 4 octets, not {len(token)}")
    body = bytearray()
    for attr_type, value in attributes:
        if attr_type == _MA:
            raise ValueError("RADIUS/1.1 has no Message-Authenticator")
        if len(value) > MAX_VALUE_LENGTH:
            raise ValueError(f"attribute {attr_type}: {len(value)} octets")
        body += bytes((attr_type, len(value) + 2)) + value
    length = HEADER_SIZE + len(body)
    if length > MAX_PACKET_SIZE:
        raise ValueError(f"packet of {length} octets")
    return _HEADER.pack(code, 0, length, token, _RESERVED_2) + bytes(body)


def encode_reply(code: int, request: Packet, attributes: Sequence[Attribute]) -> bytes:
    """A reply to ``request`` (RFC 9765 §4.2: its Token), its Proxy-State attributes
    copied to the end in order (RFC 2865 §5.33).  ``ValueError`` as :func:`encode`."""
    proxied = [(t, v) for t, v in request.attributes if t == _PROXY_STATE]
    return encode(code, token_of(request), [*attributes, *proxied])


def decode(data: bytes | bytearray | memoryview) -> Packet:
    """One received RADIUS/1.1 packet; Message-Authenticator attributes are dropped
    (RFC 9765 §5.2), the reserved fields ignored (§4.1)."""
    # Some Message-Authenticators would upset the RADIUS/1.0 decoder (not 16 octets,
    # two of them); they mean nothing here, so they are cut out before it sees them.
    raw = bytes(data)
    if len(raw) < HEADER_SIZE:
        raise DecodeError("RADIUS/1.1 header", offset=0, expected="20 octets")
    length = int.from_bytes(raw[2:4], "big")
    if not HEADER_SIZE <= length <= min(len(raw), MAX_PACKET_SIZE):
        raise DecodeError(f"Length {length}", offset=2, expected=f"20..{len(raw)}")
    kept = bytearray(raw[:HEADER_SIZE])
    offset = HEADER_SIZE
    while offset < length:
        if offset + 2 > length or raw[offset + 1] < 2 or offset + raw[offset + 1] > length:
            raise DecodeError("attribute", offset=offset, expected="Type, Length >= 2, Value")
        end = offset + raw[offset + 1]
        if raw[offset] != _MA:
            kept += raw[offset:end]
        offset = end
    kept[2:4] = len(kept).to_bytes(2, "big")
    packet = decode_1_0(bytes(kept))
    packet.identifier = 0
    packet.raw = raw[:length]
    return packet


def token_of(packet: Packet) -> bytes:
    """The Token of a packet :func:`decode` returned."""
    return packet.authenticator[:TOKEN_SIZE]
