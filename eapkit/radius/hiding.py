"""Values RADIUS hides with the shared secret: User-Password and salt-encrypted keys.

Both schemes are the same MD5 stream construction; they differ in the first block's
input and the framing of the plaintext.

User-Password, RFC 2865 §5.2: the password is padded with zero octets to a multiple
of 16 (16 to 128 octets), then, with S the secret and RA the Request Authenticator::

    b1 = MD5(S + RA)        c(1) = p1 xor b1
    b2 = MD5(S + c(1))      c(2) = p2 xor b2   ...

Salt encryption, RFC 2548 §2.4.2 / §2.4.3 (MS-MPPE-Send-Key and -Recv-Key): the
plaintext is a Key-Length octet, the key, and zero padding to a multiple of 16; a
2-octet Salt (high bit set, unique within the packet) is sent in clear in front and
enters the first block, with R the Request Authenticator of the Access-Request the
packet answers::

    b(1) = MD5(S + R + A)   c(1) = p(1) xor b(1)
    b(2) = MD5(S + c(1))    c(2) = p(2) xor b(2)   ...

(RFC 2868 §3.5 reuses it for Tunnel-Password.)  The hidden forms are untrusted input
on the receiving side: :func:`unhide_password` and :func:`salt_decrypt` raise only
:class:`~eapkit.errors.DecodeError`, and their messages never contain the plaintext.
"""

from __future__ import annotations

import hashlib

from eapkit.errors import DecodeError
from eapkit.radius.radius11 import Radius11

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MAX_SALTED_LENGTH",
    "hide_password",
    "salt_decrypt",
    "salt_encrypt",
    "unhide_password",
]

MAX_PASSWORD_LENGTH = 128  # RFC 2865 §5.2
MAX_SALTED_LENGTH = 239  # longest plaintext whose salted form fits a vendor attribute


def _stream(data: bytes, secret: bytes, first: bytes, *, encrypt: bool) -> bytes:
    """XOR ``data`` (a multiple of 16 octets) with the RFC 2865 §5.2 MD5 chain."""
    base = hashlib.md5(secret)  # noqa: S324  (the cipher RFC 2865 §5.2 defines)
    out = bytearray()
    chain = first
    for i in range(0, len(data), 16):
        h = base.copy()
        h.update(chain)
        block = data[i : i + 16]
        x = (int.from_bytes(block) ^ int.from_bytes(h.digest())).to_bytes(16)
        out += x
        chain = x if encrypt else block  # the chain always runs on the ciphertext
    return bytes(out)


def hide_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """The User-Password value for ``password`` (RFC 2865 §5.2), 16 to 128 octets."""
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password of {len(password)} octets exceeds 128")
    if isinstance(secret, Radius11):  # RFC 9765 §5.1.1: sent as text
        return password
    padded = password + bytes(-len(password) % 16 if password else 16)
    return _stream(padded, secret, authenticator, encrypt=True)


def unhide_password(hidden: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """The password in a User-Password value, trailing zero padding removed.

    A value that is not 16 to 128 octets in steps of 16 is a :class:`DecodeError`.
    A wrong secret gives garbage, not an error: compare the result with what you
    expect (in constant time).
    """
    n = len(hidden)
    if isinstance(secret, Radius11):  # RFC 9765 §5.1.1: the value is the password
        if n > MAX_PASSWORD_LENGTH:
            raise DecodeError(f"User-Password of {n} octets", expected="at most 128")
        return hidden
    if n == 0 or n > MAX_PASSWORD_LENGTH or n % 16:
        raise DecodeError(f"User-Password of {n} octets", expected="16..128, multiple of 16")
    return _stream(hidden, secret, authenticator, encrypt=False).rstrip(b"\x00")


def salt_encrypt(
    plaintext: bytes, secret: bytes, request_authenticator: bytes, salt: bytes
) -> bytes:
    """Salt + encrypted (Key-Length | plaintext | padding) (RFC 2548 §2.4.2).

    ``salt`` is 2 octets with the high bit set; the caller keeps it unique among the
    salted attributes of one packet.
    """
    if len(salt) != 2 or not salt[0] & 0x80:
        raise ValueError("salt must be 2 octets with the high bit set (RFC 2548 §2.4.2)")
    if len(plaintext) > MAX_SALTED_LENGTH:
        raise ValueError(f"{len(plaintext)} octets do not fit a salted attribute")
    if isinstance(secret, Radius11):  # RFC 9765 §5.1.3: MS-MPPE keys as plain strings
        return plaintext
    framed = bytes((len(plaintext),)) + plaintext
    framed += bytes(-len(framed) % 16)
    return salt + _stream(framed, secret, request_authenticator + salt, encrypt=True)


def salt_decrypt(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """The plaintext of a salt-encrypted value (RFC 2548 §2.4.2 / §2.4.3).

    :class:`DecodeError` when the value is not a salt plus a non-empty multiple of 16
    octets, the salt's high bit is clear, or the Key-Length octet points past the
    data (which is also what a wrong secret usually looks like).
    """
    n = len(value)
    if isinstance(secret, Radius11):  # RFC 9765 §5.1.3
        return value
    if n < 18 or (n - 2) % 16:
        raise DecodeError(f"salted value of {n} octets", expected="2 + a multiple of 16")
    salt = value[:2]
    if not salt[0] & 0x80:
        raise DecodeError("salt high bit clear", offset=0, expected="salt >= 0x8000")
    framed = _stream(value[2:], secret, request_authenticator + salt, encrypt=False)
    length = framed[0]
    if length > len(framed) - 1:
        raise DecodeError(
            "Key-Length past the data (wrong secret?)", offset=2, expected=f"<= {len(framed) - 1}"
        )
    return framed[1 : 1 + length]
