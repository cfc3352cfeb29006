"""The RADIUS packet codec (RFC 2865 §3 and §5), with its two integrity checks.

Every RADIUS packet has a 20-octet header and a list of attributes::

     0                   1                   2                   3
    |     Code      |  Identifier   |            Length             |
    |                   Authenticator (16 octets)                   |
    |  Type  | Length |  Value ...    (attributes, RFC 2865 §5)

The codec keeps attributes as an ordered list of ``(type, value)`` pairs, repeats
included, with the value as raw bytes: no per-attribute objects on the hot path (a
server decodes one request and encodes one reply per EAP round).  Names and typed
values come from :mod:`eapkit.radius.dictionary`.

Integrity (who computes what, with which 16 octets in the Authenticator field):

==========================  ===========================  ==================================
packet                      Authenticator field          Message-Authenticator (RFC 3579
                                                         §3.2) HMAC-MD5 computed over the
                                                         packet with, in that field:
==========================  ===========================  ==================================
Access-Request              random (RFC 2865 §3)         the Request Authenticator itself
Status-Server               random (RFC 5997 §3)         the Request Authenticator itself
Accounting-Request          MD5 over the packet with     16 zero octets
                            16 zero octets (RFC 2866 §3)
Access-Accept/-Reject/      Response Authenticator:      the Request Authenticator of the
-Challenge, and replies to  MD5(Code|Id|Length|Request   request being answered
Status-Server               Authenticator|Attributes|
                            Secret) (RFC 2865 §3)
Accounting-Response         the same (RFC 2866 §3)       16 zero octets (as FreeRADIUS and
                                                         pyrad do), except in a reply to
                                                         Status-Server
==========================  ===========================  ==================================

The Message-Authenticator is computed first (its own value zeroed), then the
Response Authenticator over the finished packet.  eapkit places Message-Authenticator
**first** among the attributes of every packet it builds: a forged reply then cannot
hide a chosen prefix in front of it (BlastRADIUS, CVE-2024-3596).

:func:`decode` trusts the Length field only as far as the buffer goes and raises only
:class:`~eapkit.errors.DecodeError`.  Octets beyond Length are padding and ignored
(RFC 2865 §3).  It also refuses a Message-Authenticator that is not 16 octets or
appears twice (RFC 3579 §3.3: "0-1" per packet).  Verification methods return
``bool`` and compare MACs in constant time.

RADIUS/1.1 (RFC 9765, negotiated by ALPN over TLS) has its own codec,
:mod:`eapkit.radius.radius11`, which lays out its packets as :class:`Packet` objects.

Encoders raise ``ValueError`` for what cannot be sent (a programming error): a value
over 253 octets (use :func:`eap_message_attributes` to split an EAP packet), a packet
over 4096 octets, an identifier outside 0..255.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import Any

from eapkit.errors import DecodeError
from eapkit.radius.dictionary import (
    MAX_VALUE_LENGTH,
    Attr,
    decode_integer,
    decode_text,
    decode_vsa,
)
from eapkit.rand import SYSTEM_RANDOM, RandomSource

__all__ = [
    "AUTHENTICATOR_SIZE",
    "HEADER_SIZE",
    "MAX_PACKET_SIZE",
    "Attribute",
    "Code",
    "Packet",
    "check_request",
    "decode",
    "eap_message_attributes",
    "encode",
    "encode_reply",
    "encode_request",
    "hmac_md5",
    "new_request_authenticator",
    "verify_reply",
]

HEADER_SIZE = 20
AUTHENTICATOR_SIZE = 16
MAX_PACKET_SIZE = 4096  # RFC 2865 §3: "The maximum length is 4096."

Attribute = tuple[int, bytes]
"""One attribute as the codec keeps it: (Type, Value)."""

_HEADER = struct.Struct("!BBH")
_ZERO16 = bytes(16)
_MA = Attr.MESSAGE_AUTHENTICATOR.value
_EAP = Attr.EAP_MESSAGE.value
_VSA = Attr.VENDOR_SPECIFIC.value
_PROXY_STATE = Attr.PROXY_STATE.value
_MA_HEADER = bytes((_MA, 18))
_MA_ZEROED = _MA_HEADER + _ZERO16


def _md5(data: bytes) -> bytes:
    # MD5 is what RFC 2865 §3 and RFC 2866 §3 prescribe for the authenticators.
    return hashlib.md5(data).digest()  # noqa: S324


_PADS: dict[bytes, tuple[Any, Any]] = {}
_PADS_MAX = 4096  # distinct secrets remembered; a server has one per client


def _hmac_pads(secret: bytes) -> tuple[Any, Any]:
    """MD5 states after the inner and outer HMAC pads of ``secret`` (RFC 2104 §2)."""
    key = _md5(secret) if len(secret) > 64 else secret
    key = key.ljust(64, b"\x00")
    inner = hashlib.md5(bytes(b ^ 0x36 for b in key))  # noqa: S324
    outer = hashlib.md5(bytes(b ^ 0x5C for b in key))  # noqa: S324
    if len(_PADS) >= _PADS_MAX:
        _PADS.clear()
    _PADS[secret] = (inner, outer)
    return inner, outer


def hmac_md5(secret: bytes, data: bytes) -> bytes:
    """HMAC-MD5 (RFC 2104) of ``data``, the Message-Authenticator's MAC.

    Same result as ``hmac.digest(secret, data, "md5")``; it starts from MD5 states
    cached per secret, which halves the cost of a RADIUS packet's MAC (OpenSSL 3
    sets up an HMAC context per call).
    """
    pads = _PADS.get(secret)
    inner_base, outer_base = pads if pads is not None else _hmac_pads(secret)
    inner = inner_base.copy()
    inner.update(data)
    outer = outer_base.copy()
    outer.update(inner.digest())
    digest: bytes = outer.digest()
    return digest


class Code(IntEnum):
    """RADIUS packet codes (RFC 2865 §3, RFC 2866 §3, RFC 5997 §2)."""

    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11
    STATUS_SERVER = 12
    STATUS_CLIENT = 13


# Requests whose Authenticator is random: the Message-Authenticator covers it as sent.
_RANDOM_AUTHENTICATOR = frozenset({Code.ACCESS_REQUEST, Code.STATUS_SERVER})
# Requests whose Authenticator is computed over the packet (RFC 2866 §3; RFC 5176 §3
# for Disconnect-Request 40 and CoA-Request 43): the Message-Authenticator is
# computed with 16 zero octets in that field.
_COMPUTED_AUTHENTICATOR = frozenset({Code.ACCOUNTING_REQUEST, 40, 43})


class Packet:
    """A decoded RADIUS packet: header fields, attributes in order, and the raw bytes.

    ``raw`` is the packet exactly as received (without padding); the verification
    methods check MACs over it, not over a re-encoding.
    """

    __slots__ = ("_ma", "attributes", "authenticator", "code", "identifier", "raw")

    def __init__(
        self,
        code: int,
        identifier: int,
        authenticator: bytes,
        attributes: list[Attribute],
        raw: bytes = b"",
        ma_offset: int = -1,
    ) -> None:
        self.code = code
        self.identifier = identifier
        self.authenticator = authenticator
        self.attributes = attributes
        self.raw = raw
        self._ma = ma_offset

    def __repr__(self) -> str:
        # Types only: values can be secrets (hidden passwords, keys).
        types = ",".join(str(t) for t, _ in self.attributes)
        return f"Packet(code={self.code}, identifier={self.identifier}, types=[{types}])"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Packet):
            return NotImplemented
        return (
            self.code == other.code
            and self.identifier == other.identifier
            and self.authenticator == other.authenticator
            and self.attributes == other.attributes
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    # -- reading attributes ------------------------------------------------------------

    def get(self, attr_type: int) -> bytes | None:
        """The value of the first attribute of ``attr_type``, or None."""
        for t, v in self.attributes:
            if t == attr_type:
                return v
        return None

    def get_all(self, attr_type: int) -> list[bytes]:
        """The values of every attribute of ``attr_type``, in packet order."""
        return [v for t, v in self.attributes if t == attr_type]

    def get_text(self, attr_type: int) -> str | None:
        """The first ``attr_type`` as UTF-8 text (DecodeError if it is not UTF-8)."""
        v = self.get(attr_type)
        return None if v is None else decode_text(v)

    def get_integer(self, attr_type: int) -> int | None:
        """The first ``attr_type`` as a 32-bit integer (DecodeError if not 4 octets)."""
        v = self.get(attr_type)
        return None if v is None else decode_integer(v)

    def eap_message(self) -> bytes | None:
        """The EAP packet: every EAP-Message value joined in order (RFC 3579 §3.1).

        None when the packet has no EAP-Message; ``b""`` for the empty attribute
        some NASes send as "EAP-Start" (RFC 3579 §2.1).
        """
        parts = [v for t, v in self.attributes if t == _EAP]
        return b"".join(parts) if parts else None

    def vendor_attributes(self, vendor_id: int) -> list[Attribute]:
        """``(vendor_type, value)`` of every sub-attribute of ``vendor_id`` (RFC 2865 §5.26).

        Vendor-Specific attributes of other vendors are skipped unread; one of
        ``vendor_id`` that breaks the recommended layout is a :class:`DecodeError`.
        """
        out: list[Attribute] = []
        for t, v in self.attributes:
            if t == _VSA and len(v) >= 4 and int.from_bytes(v[:4], "big") == vendor_id:
                out.extend(_vendor_subattributes(v))
        return out

    def get_vendor(self, vendor_id: int, vendor_type: int) -> bytes | None:
        """The first sub-attribute ``vendor_type`` of ``vendor_id``, or None."""
        for t, v in self.vendor_attributes(vendor_id):
            if t == vendor_type:
                return v
        return None

    @property
    def message_authenticator(self) -> bytes | None:
        """The Message-Authenticator value as received, or None."""
        return self.raw[self._ma : self._ma + 16] if self._ma >= 0 else None

    # -- integrity -----------------------------------------------------------------------

    def verify_message_authenticator(
        self,
        secret: bytes,
        request_authenticator: bytes | None = None,
        request_code: int | None = None,
    ) -> bool:
        """Check the Message-Authenticator (RFC 3579 §3.2) in constant time.

        For a request, give only the secret.  For a reply, give the Request
        Authenticator of the request it answers (and, for an Accounting-Response,
        the request's code: only a reply to Status-Server uses its authenticator).
        False when the packet has none.
        """
        off = self._ma
        if off < 0:
            return False
        raw = self.raw
        if self.code in _RANDOM_AUTHENTICATOR:  # the hot path: a request as received
            signed = raw[:off] + _ZERO16 + raw[off + 16 :]
        else:
            vector = _ma_vector(self.code, raw[4:20], request_authenticator, request_code)
            if vector is None or len(vector) != AUTHENTICATOR_SIZE:
                return False
            signed = raw[:4] + vector + raw[20:off] + _ZERO16 + raw[off + 16 :]
        return hmac.compare_digest(hmac_md5(secret, signed), raw[off : off + 16])

    def verify_request_authenticator(self, secret: bytes) -> bool:
        """Check a computed Request Authenticator (Accounting-Request, RFC 2866 §3).

        MD5(Code | Identifier | Length | 16 zero octets | Attributes | Secret).
        Access-Request and Status-Server carry a random one: always False for them.
        """
        if self.code not in _COMPUTED_AUTHENTICATOR:
            return False
        raw = self.raw
        digest = _md5(raw[:4] + _ZERO16 + raw[20:] + secret)
        return hmac.compare_digest(digest, raw[4:20])

    def verify_response_authenticator(self, secret: bytes, request_authenticator: bytes) -> bool:
        """Check a Response Authenticator (RFC 2865 §3, RFC 2866 §3).

        MD5(Code | Identifier | Length | Request Authenticator | Attributes | Secret).
        """
        raw = self.raw
        digest = _md5(raw[:4] + request_authenticator + raw[20:] + secret)
        return hmac.compare_digest(digest, raw[4:20])


def _ma_vector(
    code: int, own: bytes, request_authenticator: bytes | None, request_code: int | None
) -> bytes | None:
    """What sits in the Authenticator field while the Message-Authenticator is computed."""
    if code in _RANDOM_AUTHENTICATOR:
        return own
    if code in _COMPUTED_AUTHENTICATOR:
        return _ZERO16
    if code == Code.ACCOUNTING_RESPONSE and request_code != Code.STATUS_SERVER:
        return _ZERO16
    return request_authenticator


def _vendor_subattributes(data: bytes) -> list[Attribute]:
    return decode_vsa(data)[1]


# -- decoding ------------------------------------------------------------------------------


def decode(data: bytes | bytearray | memoryview) -> Packet:
    """Parse one RADIUS packet (RFC 2865 §3) from a datagram.

    Raises :class:`DecodeError` when the header is short, Length is below 20, above
    4096 or beyond the datagram, an attribute's Length is below 2 or runs past the
    packet, or a Message-Authenticator is not 16 octets or repeats.
    """
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n < HEADER_SIZE:
        raise DecodeError(f"RADIUS header truncated: {n} octets", expected="20 octets")
    code, identifier, length = _HEADER.unpack_from(data)
    if length < HEADER_SIZE or length > MAX_PACKET_SIZE:
        raise DecodeError(f"RADIUS Length {length}", offset=2, expected="20..4096")
    if length > n:
        raise DecodeError(
            f"RADIUS Length {length} beyond the {n}-octet datagram", offset=2, expected="<= n"
        )
    if length < n:
        data = data[:length]  # padding (RFC 2865 §3)
    attributes: list[Attribute] = []
    append = attributes.append
    ma = -1
    pos = HEADER_SIZE
    last = length - 1  # an attribute header needs two octets
    while pos < last:
        end = pos + data[pos + 1]
        if end > length or end < pos + 2:
            raise DecodeError(
                f"attribute length {data[pos + 1]}", offset=pos + 1, expected=f"2..{length - pos}"
            )
        t = data[pos]
        if t == _MA:
            if end - pos != 18:
                raise DecodeError(
                    "Message-Authenticator length", offset=pos + 1, expected="18 (RFC 3579 §3.2)"
                )
            if ma >= 0:
                raise DecodeError("second Message-Authenticator", offset=pos, expected="one")
            ma = pos + 2
        append((t, data[pos + 2 : end]))
        pos = end
    if pos != length:
        raise DecodeError("truncated attribute header", offset=pos, expected="2 octets")
    return Packet(code, identifier, data[4:20], attributes, data, ma)


# -- encoding ------------------------------------------------------------------------------


def _encode_attributes(attributes: Iterable[Attribute], *, signed: bool = False) -> bytes:
    parts: list[bytes] = []
    append = parts.append
    for t, v in attributes:
        n = len(v)
        if n > MAX_VALUE_LENGTH:
            raise ValueError(
                f"attribute {t}: {n} octets do not fit (at most 253; split EAP-Message)"
            )
        if signed and t == _MA:
            raise ValueError("Message-Authenticator is added by the encoder, not passed in")
        append(bytes((t, n + 2)))
        append(v)
    return b"".join(parts)


def _pack_header(code: int, identifier: int, length: int) -> bytes:
    if length > MAX_PACKET_SIZE:
        raise ValueError(f"packet of {length} octets exceeds 4096")
    try:
        return _HEADER.pack(code, identifier, length)
    except struct.error:
        raise ValueError(f"code {code} or identifier {identifier} does not fit one octet") from None


def encode(
    code: int, identifier: int, authenticator: bytes, attributes: Iterable[Attribute]
) -> bytes:
    """Lay out a packet as given, computing nothing (RFC 2865 §3).

    The plain codec: :func:`decode` of the result gives the same fields back.  Use
    :func:`encode_request` / :func:`encode_reply` to send packets.
    """
    if len(authenticator) != AUTHENTICATOR_SIZE:
        raise ValueError(f"authenticator of {len(authenticator)} octets")
    body = _encode_attributes(attributes)
    return _pack_header(code, identifier, HEADER_SIZE + len(body)) + authenticator + body


def new_request_authenticator(rng: RandomSource = SYSTEM_RANDOM) -> bytes:
    """16 unpredictable octets for an Access-Request or Status-Server (RFC 2865 §3)."""
    return rng.random_bytes(AUTHENTICATOR_SIZE)


def encode_request(
    code: int,
    identifier: int,
    attributes: Sequence[Attribute],
    secret: bytes,
    *,
    authenticator: bytes | None = None,
    message_authenticator: bool | None = None,
    rng: RandomSource = SYSTEM_RANDOM,
) -> bytes:
    """A request ready to send, as a NAS (or ``eapkit probe``) sends it.

    - Access-Request / Status-Server: the Request Authenticator is ``authenticator``
      (pass the one you hid User-Password with) or fresh random octets.
    - Accounting-Request: the Request Authenticator is computed (RFC 2866 §3);
      ``authenticator`` must be None.

    ``message_authenticator`` (default: yes, except for Accounting-Request) adds a
    Message-Authenticator as the first attribute (RFC 3579 §3.2, RFC 5997 §3 makes it
    mandatory for Status-Server).
    """
    computed = code in _COMPUTED_AUTHENTICATOR
    if computed:
        if authenticator is not None:
            raise ValueError("an Accounting-Request authenticator is computed, not given")
        vector = _ZERO16
    else:
        vector = new_request_authenticator(rng) if authenticator is None else authenticator
        if len(vector) != AUTHENTICATOR_SIZE:
            raise ValueError(f"authenticator of {len(vector)} octets")
    if message_authenticator is None:
        message_authenticator = not computed
    body = _encode_attributes(attributes, signed=True)
    head = _pack_header(
        code, identifier, HEADER_SIZE + len(body) + (18 if message_authenticator else 0)
    )
    if message_authenticator:
        mac = hmac_md5(secret, head + vector + _MA_ZEROED + body)
        body = _MA_HEADER + mac + body
    if computed:
        vector = _md5(head + _ZERO16 + body + secret)
    return head + vector + body


def encode_reply(
    code: int,
    request: Packet,
    attributes: Sequence[Attribute],
    secret: bytes,
    *,
    message_authenticator: bool | None = None,
    copy_proxy_state: bool = True,
) -> bytes:
    """A reply to ``request``, ready to send, as a RADIUS server sends it.

    Same Identifier as the request; Message-Authenticator first (by default for
    replies to Access-Request and Status-Server: RFC 3579 §3.2 requires it in every
    reply carrying EAP-Message, and the BlastRADIUS mitigation in all of them),
    computed with the Request Authenticator; then the Response Authenticator
    (RFC 2865 §3).  Proxy-State attributes of the request are copied to the end, in
    order (RFC 2865 §5.33).
    """
    body = _encode_attributes(attributes, signed=True)
    if copy_proxy_state:
        proxied = [(t, v) for t, v in request.attributes if t == _PROXY_STATE]
        if proxied:
            body += _encode_attributes(proxied)
    if message_authenticator is None:
        message_authenticator = request.code in _RANDOM_AUTHENTICATOR
    head = _pack_header(
        code, request.identifier, HEADER_SIZE + len(body) + (18 if message_authenticator else 0)
    )
    request_authenticator = request.authenticator
    if message_authenticator:
        # RFC 3579 §3.2: the Request Authenticator, except in an Accounting-Response
        # to an Accounting-Request (zeros, as FreeRADIUS and pyrad compute it)
        vector = (
            _ZERO16
            if code == Code.ACCOUNTING_RESPONSE and request.code != Code.STATUS_SERVER
            else request_authenticator
        )
        mac = hmac_md5(secret, head + vector + _MA_ZEROED + body)
        body = _MA_HEADER + mac + body
    response = _md5(head + request_authenticator + body + secret)
    return head + response + body


def eap_message_attributes(eap: bytes) -> list[Attribute]:
    """An EAP packet as EAP-Message attributes of at most 253 octets (RFC 3579 §3.1).

    The attributes must stay consecutive and in order in the packet.  An empty EAP
    packet gives one empty attribute (the "EAP-Start" of RFC 3579 §2.1).
    """
    if not eap:
        return [(_EAP, b"")]
    return [(_EAP, eap[i : i + MAX_VALUE_LENGTH]) for i in range(0, len(eap), MAX_VALUE_LENGTH)]


# -- policy checks -------------------------------------------------------------------------


def check_request(
    packet: Packet, secret: bytes, *, require_message_authenticator: bool = True
) -> str | None:
    """Why a received request must be dropped, or None if it is authentic.

    - Access-Request: a Message-Authenticator present must verify; one is required
      when EAP-Message is present (RFC 3579 §3.3), and, by default, always
      (BlastRADIUS, CVE-2024-3596).
    - Status-Server: a valid Message-Authenticator is required (RFC 5997 §3).
    - Accounting-Request: the Request Authenticator must verify (RFC 2866 §3), and a
      Message-Authenticator, if present.
    The reason is a short English phrase with no secret in it, for the log.
    """
    code = packet.code
    has_ma = packet._ma >= 0
    if code == Code.ACCESS_REQUEST or code == Code.STATUS_SERVER:
        if has_ma:
            if packet.verify_message_authenticator(secret):
                return None
            return "bad Message-Authenticator"
        if code == Code.STATUS_SERVER:
            return "Status-Server without Message-Authenticator"
        if packet.get(_EAP) is not None:
            return "EAP-Message without Message-Authenticator"
        return "missing Message-Authenticator" if require_message_authenticator else None
    if code in _COMPUTED_AUTHENTICATOR:
        if not packet.verify_request_authenticator(secret):
            return "bad Request Authenticator"
        if has_ma and not packet.verify_message_authenticator(secret):
            return "bad Message-Authenticator"
        return None
    return f"code {code} is not a request"


def verify_reply(
    reply: Packet,
    request_authenticator: bytes,
    secret: bytes,
    *,
    request_code: int = Code.ACCESS_REQUEST,
    require_message_authenticator: bool = True,
) -> str | None:
    """Why a reply to our request must be dropped, or None (the client's side).

    Checks the Response Authenticator (RFC 2865 §3) and the Message-Authenticator
    (RFC 3579 §3.2), which a reply to an Access-Request or Status-Server must carry
    unless ``require_message_authenticator`` is False.  Matching the Identifier is the
    caller's job.
    """
    if not reply.verify_response_authenticator(secret, request_authenticator):
        return "bad Response Authenticator"
    if reply._ma >= 0:
        if not reply.verify_message_authenticator(secret, request_authenticator, request_code):
            return "bad Message-Authenticator"
    elif require_message_authenticator and request_code in _RANDOM_AUTHENTICATOR:
        return "missing Message-Authenticator"
    return None
