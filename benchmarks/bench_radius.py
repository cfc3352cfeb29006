"""The RADIUS packet codec on a server's hot path: eapkit vs pyrad 2.6 vs the floor.

One EAP round costs a RADIUS server one request decoded and verified and one reply
encoded and signed.  The packets are shaped like ``eapol_test``'s:

- Access-Request: User-Name, NAS-IP-Address, Called-/Calling-Station-Id, Framed-MTU,
  NAS-Port-Type, Connect-Info, a 200-octet EAP-Message, State, Message-Authenticator.
- Access-Challenge: Message-Authenticator, a 200-octet EAP-Message, State.
- Access-Accept: Message-Authenticator, User-Name, EAP-Message (Success),
  MS-MPPE-Send-Key / -Recv-Key (salt-encrypted), EAP-Key-Name.
- one EAP round: the request decoded and verified, then the Challenge encoded.

Columns:

- eapkit: :func:`eapkit.radius.decode` + :func:`eapkit.radius.check_request`;
  :func:`eapkit.radius.encode_reply` (with :func:`eapkit.radius.mppe_key_attributes`
  for the Accept).
- anchor: pyrad 2.6 doing the same (``AuthPacket(packet=...)`` +
  ``verify_message_authenticator()``; ``CreateReply()`` + ``AddAttribute`` +
  ``ReplyPacket()``), with a dictionary of just these attributes.
- floor: what any codec must do at least: the header ``struct`` call and one
  ``hmac.digest(secret, packet, "md5")`` through OpenSSL (plus, for a reply, the MD5 of
  the Response Authenticator; for the Accept, also the four MD5 blocks of the salted
  keys).

Run: ``.venv/bin/python -m benchmarks.bench_radius`` (``--quick`` for a short run).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import struct
import timeit
from collections.abc import Callable
from typing import Any

from pyrad.dictionary import Dictionary
from pyrad.packet import AuthPacket

from benchmarks.runner import standalone
from eapkit.radius import (
    Attr,
    Code,
    check_request,
    decode,
    eap_message_attributes,
    encode_reply,
    encode_request,
    mppe_key_attributes,
    mppe_keys_from_msk,
    verify_reply,
)
from eapkit.radius.dictionary import encode_integer, encode_ipv4

SECRET = b"testing123"
AUTH = bytes(range(16))
EAP_REQUEST = b"\x01\x07\x00\xc8\x15\x00" + bytes(range(194))  # 200-octet EAP-TTLS Request
EAP_RESPONSE = b"\x02\x06\x00\xc8\x15\x00" + bytes(range(194))
STATE = bytes(range(100, 116))
MSK = bytes(range(64))
SESSION_ID = b"\x15" + bytes(range(64))

_PYRAD_DICTIONARY = """
ATTRIBUTE User-Name 1 string
ATTRIBUTE NAS-IP-Address 4 ipaddr
ATTRIBUTE Framed-MTU 12 integer
ATTRIBUTE State 24 octets
ATTRIBUTE Called-Station-Id 30 string
ATTRIBUTE Calling-Station-Id 31 string
ATTRIBUTE NAS-Port-Type 61 integer
ATTRIBUTE Connect-Info 77 string
ATTRIBUTE EAP-Message 79 octets
ATTRIBUTE Message-Authenticator 80 octets
ATTRIBUTE EAP-Key-Name 102 octets
VENDOR Microsoft 311
BEGIN-VENDOR Microsoft
ATTRIBUTE MS-MPPE-Send-Key 16 octets encrypt=2
ATTRIBUTE MS-MPPE-Recv-Key 17 octets encrypt=2
END-VENDOR Microsoft
"""
PYRAD_DICT = Dictionary(io.StringIO(_PYRAD_DICTIONARY))

REQUEST = encode_request(
    Code.ACCESS_REQUEST,
    7,
    [
        (Attr.USER_NAME, b"alice@example.org"),
        (Attr.NAS_IP_ADDRESS, encode_ipv4("127.0.0.1")),
        (Attr.CALLED_STATION_ID, b"02-00-00-00-00-01:eapkit"),
        (Attr.CALLING_STATION_ID, b"02-00-00-00-00-02"),
        (Attr.FRAMED_MTU, encode_integer(1400)),
        (Attr.NAS_PORT_TYPE, encode_integer(19)),
        (Attr.CONNECT_INFO, b"CONNECT 11Mbps 802.11b"),
        *eap_message_attributes(EAP_RESPONSE),
        (Attr.STATE, STATE),
    ],
    SECRET,
    authenticator=AUTH,
)
REQUEST_PACKET = decode(REQUEST)
_HEADER = struct.Struct("!BBH")


# -- eapkit ------------------------------------------------------------------------------


def eapkit_decode_verify() -> bool:
    return check_request(decode(REQUEST), SECRET) is None


def eapkit_challenge() -> bytes:
    return encode_reply(
        Code.ACCESS_CHALLENGE,
        REQUEST_PACKET,
        [*eap_message_attributes(EAP_REQUEST), (Attr.STATE, STATE)],
        SECRET,
    )


def eapkit_accept() -> bytes:
    return encode_reply(
        Code.ACCESS_ACCEPT,
        REQUEST_PACKET,
        [
            (Attr.USER_NAME, b"alice"),
            *eap_message_attributes(b"\x03\x07\x00\x04"),
            *mppe_key_attributes(MSK, SECRET, REQUEST_PACKET.authenticator),
            (Attr.EAP_KEY_NAME, SESSION_ID),
        ],
        SECRET,
    )


# -- pyrad -------------------------------------------------------------------------------


def pyrad_decode_verify() -> bool:
    packet = AuthPacket(packet=REQUEST, secret=SECRET, dict=PYRAD_DICT)
    return bool(packet.verify_message_authenticator())


_PYRAD_REQUEST = AuthPacket(packet=REQUEST, secret=SECRET, dict=PYRAD_DICT)


def pyrad_challenge() -> bytes:
    reply = _PYRAD_REQUEST.CreateReply()
    reply.code = Code.ACCESS_CHALLENGE
    reply.AddAttribute("EAP-Message", EAP_REQUEST)
    reply.AddAttribute("State", STATE)
    raw: bytes = reply.ReplyPacket()
    return raw


def pyrad_accept() -> bytes:
    keys = mppe_keys_from_msk(MSK)
    reply = _PYRAD_REQUEST.CreateReply()
    reply.AddAttribute("User-Name", "alice")
    reply.AddAttribute("EAP-Message", b"\x03\x07\x00\x04")
    reply.AddAttribute("MS-MPPE-Send-Key", keys.send)
    reply.AddAttribute("MS-MPPE-Recv-Key", keys.recv)
    reply.AddAttribute("EAP-Key-Name", SESSION_ID)
    raw: bytes = reply.ReplyPacket()
    return raw


# -- floor -------------------------------------------------------------------------------


def floor_decode_verify() -> Any:
    return _HEADER.unpack_from(REQUEST), hmac.digest(SECRET, REQUEST, "md5")


_CHALLENGE = eapkit_challenge()
_ACCEPT = eapkit_accept()


def floor_challenge() -> Any:
    head = _HEADER.pack(11, 7, len(_CHALLENGE))
    return head, hmac.digest(SECRET, _CHALLENGE, "md5"), hashlib.md5(_CHALLENGE + SECRET).digest()


def floor_accept() -> Any:
    head = _HEADER.pack(2, 7, len(_ACCEPT))
    blocks = [hashlib.md5(SECRET + AUTH).digest() for _ in range(6)]  # 2 keys x 3 blocks
    return (
        head,
        blocks,
        hmac.digest(SECRET, _ACCEPT, "md5"),
        hashlib.md5(_ACCEPT + SECRET).digest(),
    )


def eapkit_round() -> bytes:
    eapkit_decode_verify()
    return eapkit_challenge()


def pyrad_round() -> bytes:
    pyrad_decode_verify()
    return pyrad_challenge()


def floor_round() -> Any:
    return floor_decode_verify(), floor_challenge()


# -- timing ------------------------------------------------------------------------------


def _per_call_us(fns: list[Callable[[], object]], quick: bool) -> list[float]:
    """Best time per call of each of ``fns``, measured in alternating rounds.

    Alternating keeps the ratios honest when other processes share the CPU.
    """
    timers = []
    for fn in fns:
        fn()  # warm caches the way a running server has them
        timer = timeit.Timer(fn)
        number, _ = timer.autorange()
        timers.append((timer, max(1, number // 4) if quick else number * 3))
    best = [float("inf")] * len(fns)
    for _ in range(3 if quick else 7):
        for i, (timer, number) in enumerate(timers):
            best[i] = min(best[i], timer.timeit(number) / number * 1e6)
    return best


def _check() -> None:
    # both codecs accept the request, and each side accepts the other's replies
    assert eapkit_decode_verify() and pyrad_decode_verify()
    for raw in (eapkit_challenge(), pyrad_challenge(), eapkit_accept(), pyrad_accept()):
        assert verify_reply(decode(raw), AUTH, SECRET) is None
        assert _PYRAD_REQUEST.VerifyReply(_PYRAD_REQUEST.CreateReply(packet=raw), raw)


def run(quick: bool = False) -> list[dict[str, object]]:
    _check()
    anchor = "pyrad 2.6"
    ops: list[tuple[str, Callable[[], object], Callable[[], object], Callable[[], object]]] = [
        (
            "Access-Request decode + Message-Authenticator verify",
            eapkit_decode_verify,
            pyrad_decode_verify,
            floor_decode_verify,
        ),
        (
            "Access-Challenge encode (EAP-Message, State, M-A)",
            eapkit_challenge,
            pyrad_challenge,
            floor_challenge,
        ),
        (
            "EAP round: Access-Request decode + Challenge encode",
            eapkit_round,
            pyrad_round,
            floor_round,
        ),
        (
            "Access-Accept encode (MPPE keys, EAP-Key-Name, M-A)",
            eapkit_accept,
            pyrad_accept,
            floor_accept,
        ),
    ]
    rows: list[dict[str, object]] = []
    for op, ours, theirs, floor in ops:
        eapkit_us, anchor_us, floor_us = _per_call_us([ours, theirs, floor], quick)
        rows.append(
            {
                "op": op,
                "eapkit_us": eapkit_us,
                "anchor": anchor,
                "anchor_us": anchor_us,
                "floor_us": floor_us,
            }
        )
    return rows


def main() -> None:
    standalone("radius", run)


if __name__ == "__main__":
    main()
