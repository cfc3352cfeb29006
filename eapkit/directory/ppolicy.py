"""OpenLDAP password policy: the bind's response control and the account state it means.

draft-behera-ldap-password-policy-10 §6.1 (the control OpenLDAP's ``ppolicy`` overlay
implements, OID 1.3.6.1.4.1.42.2.27.8.5.1): a client sends the control with an empty
value on its bind; the server answers with this value (BER, §6.2)::

    PasswordPolicyResponseValue ::= SEQUENCE {
        warning [0] CHOICE {
            timeBeforeExpiration [0] INTEGER (0 .. maxInt),
            graceAuthNsRemaining [1] INTEGER (0 .. maxInt) } OPTIONAL,
        error   [1] ENUMERATED {
            passwordExpired (0), accountLocked (1), changeAfterReset (2), ... } OPTIONAL }

(the module uses IMPLICIT tags, so ``error`` is the primitive ``0x81``).  Only the
three errors that refuse a login matter here; :func:`refusal_reason` names them in the
decision log's words: ``password_expired``, ``account_locked``,
``password_must_change``.  :func:`decode_response` raises only
:class:`~eapkit.errors.DecodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from eapkit.errors import DecodeError

__all__ = [
    "ACCOUNT_LOCKED",
    "CHANGE_AFTER_RESET",
    "PASSWORD_EXPIRED",
    "PPOLICY_OID",
    "PpolicyResponse",
    "decode_response",
    "encode_response",
    "refusal_reason",
]

PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"
PASSWORD_EXPIRED, ACCOUNT_LOCKED, CHANGE_AFTER_RESET = 0, 1, 2
_REASONS = {
    PASSWORD_EXPIRED: "password_expired",
    ACCOUNT_LOCKED: "account_locked",
    CHANGE_AFTER_RESET: "password_must_change",
}
_MAX_INT = 2**31 - 1  # maxInt, RFC 4511 §4.1.1


@dataclass(frozen=True, slots=True)
class PpolicyResponse:
    """The decoded control value; every field optional (§6.2)."""

    time_before_expiration: int | None = None
    grace_authns_remaining: int | None = None
    error: int | None = None

    def __post_init__(self) -> None:
        if self.time_before_expiration is not None and self.grace_authns_remaining is not None:
            raise ValueError("warning is a CHOICE: one of its two alternatives")
        for value in (self.time_before_expiration, self.grace_authns_remaining, self.error):
            if value is not None and not 0 <= value <= _MAX_INT:
                raise ValueError("ppolicy integers are 0 .. maxInt")


def refusal_reason(response: PpolicyResponse | None) -> str | None:
    """The decision log's reason for a ppolicy error that refuses a login, else None."""
    if response is None or response.error is None:
        return None
    return _REASONS.get(response.error)


def _length(data: bytes, offset: int) -> tuple[int, int]:
    """X.690 §8.1.3 definite length at ``offset``: (length, offset after it)."""
    if offset >= len(data):
        raise DecodeError("truncated BER length", offset=offset)
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    count = first & 0x7F
    if count == 0 or count > 4:
        raise DecodeError("unsupported BER length form", offset=offset, expected="1-4 octets")
    if offset + 1 + count > len(data):
        raise DecodeError("truncated BER length", offset=offset)
    return int.from_bytes(data[offset + 1 : offset + 1 + count], "big"), offset + 1 + count


def _element(data: bytes, offset: int, end: int) -> tuple[int, bytes, int]:
    """(tag octet, contents, offset after) of the element at ``offset`` before ``end``."""
    if offset >= end:
        raise DecodeError("truncated BER element", offset=offset)
    tag = data[offset]
    length, start = _length(data[:end], offset + 1)
    if start + length > end:
        raise DecodeError("BER element overruns its container", offset=offset)
    return tag, data[start : start + length], start + length


def _integer(contents: bytes, offset: int) -> int:
    """A non-negative INTEGER/ENUMERATED (X.690 §8.3) no larger than maxInt."""
    if not contents or len(contents) > 5:
        raise DecodeError("bad ppolicy integer length", offset=offset)
    value = int.from_bytes(contents, "big", signed=True)
    if not 0 <= value <= _MAX_INT:
        raise DecodeError("ppolicy integer out of range", offset=offset, expected="0 .. maxInt")
    return value


def decode_response(data: bytes) -> PpolicyResponse:
    """The PasswordPolicyResponseValue (§6.2) of a bind response's control."""
    tag, body, end = _element(data, 0, len(data))
    if tag != 0x30:
        raise DecodeError("not a SEQUENCE", offset=0, expected="0x30")
    if end != len(data):
        raise DecodeError("bytes after the SEQUENCE", offset=end)
    base = len(data) - len(body)
    before = grace = error = None
    offset = 0
    seen_warning = seen_error = False
    while offset < len(body):
        tag, contents, after = _element(body, offset, len(body))
        if tag == 0xA0 and not seen_warning and not seen_error:  # warning, then error
            seen_warning = True
            inner, value, inner_end = _element(contents, 0, len(contents))
            if inner_end != len(contents):
                raise DecodeError("bytes after the warning", offset=base + offset)
            if inner == 0x80:
                before = _integer(value, base + offset)
            elif inner == 0x81:
                grace = _integer(value, base + offset)
            else:
                raise DecodeError("unknown warning", offset=base + offset, expected="[0] or [1]")
        elif tag == 0x81 and not seen_error:
            error = _integer(contents, base + offset)
            seen_error = True
        else:
            raise DecodeError("unexpected element", offset=base + offset, expected="[0] or [1]")
        offset = after
    return PpolicyResponse(before, grace, error)


def _tlv(tag: int, contents: bytes) -> bytes:
    n = len(contents)
    if n < 0x80:
        return bytes([tag, n]) + contents
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + contents


def _int_bytes(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)


def encode_response(response: PpolicyResponse) -> bytes:
    """The BER of ``response`` (what a server sends; the tests' other half)."""
    body = b""
    if response.time_before_expiration is not None:
        body += _tlv(0xA0, _tlv(0x80, _int_bytes(response.time_before_expiration)))
    elif response.grace_authns_remaining is not None:
        body += _tlv(0xA0, _tlv(0x81, _int_bytes(response.grace_authns_remaining)))
    if response.error is not None:
        body += _tlv(0x81, _int_bytes(response.error))
    return _tlv(0x30, body)
