"""The CBOR subset CTAP2 uses, for the virtual authenticator (RFC 8949).

CTAP2 (FIDO "Client to Authenticator Protocol" 2.1, section 8 "Message encoding")
allows unsigned/negative integers, byte and text strings, arrays, maps, booleans and
null, definite lengths only, and prescribes the canonical form (RFC 8949 section
4.2.3 as CTAP states it: shortest heads; map keys sorted by the length of their
encoding, then bytewise).  Written here rather than borrowed from python-fido2, so the
virtual card and python-fido2's client do not share a codec: a mistake in one shows.

:func:`decode` raises only :class:`eapkit.errors.DecodeError`.
"""

from __future__ import annotations

from typing import Any

from eapkit.errors import DecodeError, need

__all__ = ["decode", "encode"]

MAX_DEPTH = 8


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes((major << 5 | value,))
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes((major << 5 | extra,)) + value.to_bytes(size, "big")
    raise ValueError("integer too large for CBOR")


def encode(value: Any) -> bytes:
    """Canonical CTAP2 CBOR for ints, bytes, str, list, dict, bool and None."""
    if value is False:
        return b"\xf4"
    if value is True:
        return b"\xf5"
    if value is None:
        return b"\xf6"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, bytes | bytearray):
        return _head(2, len(value)) + bytes(value)
    if isinstance(value, str):
        raw = value.encode()
        return _head(3, len(raw)) + raw
    if isinstance(value, list | tuple):
        return _head(4, len(value)) + b"".join(encode(v) for v in value)
    if isinstance(value, dict):
        items = sorted(
            ((encode(k), encode(v)) for k, v in value.items()), key=lambda kv: (len(kv[0]), kv[0])
        )
        return _head(5, len(items)) + b"".join(k + v for k, v in items)
    raise TypeError(f"cannot encode {type(value).__name__} as CBOR")


def _decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise DecodeError("CBOR nested too deep", offset=pos)
    need(data, pos, 1, "CBOR head")
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if info < 24:
        arg = info
    elif info <= 27:
        size = 1 << (info - 24)
        need(data, pos, size, "CBOR argument")
        arg = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    else:
        raise DecodeError("indefinite or reserved CBOR length", offset=pos - 1)
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major in (2, 3):
        need(data, pos, arg, "CBOR string")
        raw = bytes(data[pos : pos + arg])
        pos += arg
        if major == 2:
            return raw, pos
        try:
            return raw.decode("utf-8"), pos
        except UnicodeDecodeError:
            raise DecodeError("text string is not UTF-8", offset=pos - arg) from None
    if major == 4:
        items = []
        for _ in range(arg):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        out: dict[Any, Any] = {}
        for _ in range(arg):
            start = pos
            key, pos = _decode(data, pos, depth + 1)
            if isinstance(key, list | dict):
                raise DecodeError("CBOR map key must be a scalar", offset=start)
            value, pos = _decode(data, pos, depth + 1)
            out[key] = value
        return out, pos
    if major == 7:
        simple = {20: False, 21: True, 22: None}
        if info in simple:
            return simple[info], pos
        raise DecodeError("unsupported CBOR simple value or float", offset=pos - 1)
    raise DecodeError("CBOR tags are not used by CTAP2", offset=pos - 1)


def decode(data: bytes) -> Any:
    """One CBOR item that fills ``data`` exactly."""
    value, pos = _decode(data, 0, 0)
    if pos != len(data):
        raise DecodeError("trailing bytes after CBOR item", offset=pos)
    return value
