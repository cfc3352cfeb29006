"""The strict CBOR reader for credential public keys (RFC 8949 §3, WebAuthn L3 §5.8.5).

Only what a COSE_Key holds: a definite-length map of integer labels to integers, byte
strings and text strings.  Raises DecodeError(offset, expected) and nothing else.
"""

from __future__ import annotations

from eapkit.errors import DecodeError, need

__all__ = ["decode_cose_key_map"]


def _cbor_head(data: bytes, i: int) -> tuple[int, int, int]:
    """(major type, argument, next offset) of the CBOR item head at ``i`` (RFC 8949 §3)."""
    need(data, i, 1, "CBOR item")
    ib = data[i]
    major, info = ib >> 5, ib & 0x1F
    if info < 24:
        return major, info, i + 1
    if info > 27:  # indefinite lengths and reserved values: never in a COSE key
        raise DecodeError("indefinite or reserved CBOR length", offset=i)
    n = 1 << (info - 24)
    need(data, i + 1, n, "CBOR argument")
    return major, int.from_bytes(data[i + 1 : i + 1 + n], "big"), i + 1 + n


def decode_cose_key_map(data: bytes) -> dict[int, int | bytes | str]:
    """A COSE_Key as a map of integer labels to integers, byte or text strings.

    Strict where python-fido2's decoder is lenient (it accepts a byte string shorter than
    its stated length): definite lengths, no trailing bytes, no repeated label.  WebAuthn
    §5.8.5 allows no parameters other than these kinds in a credential public key.
    """
    major, count, i = _cbor_head(data, 0)
    if major != 5:
        raise DecodeError("COSE key is not a CBOR map", offset=0, expected="map")
    out: dict[int, int | bytes | str] = {}
    for _ in range(count):
        values: list[int | bytes | str] = []
        for _part in range(2):
            at = i
            major, arg, i = _cbor_head(data, i)
            if major == 0:
                values.append(arg)
            elif major == 1:
                values.append(-1 - arg)
            elif major in (2, 3):
                need(data, i, arg, "CBOR string")
                raw = data[i : i + arg]
                i += arg
                if major == 2:
                    values.append(raw)
                else:
                    try:
                        values.append(raw.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise DecodeError("bad UTF-8 in CBOR text", offset=at) from None
            else:
                raise DecodeError("unexpected CBOR item in a COSE key", offset=at)
        label, value = values
        if not isinstance(label, int) or label in out:
            raise DecodeError("COSE key label not an integer or repeated", offset=i)
        out[label] = value
    if i != len(data):
        raise DecodeError("trailing bytes after the COSE key", offset=i)
    return out
