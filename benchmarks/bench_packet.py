"""The EAP packet codec (RFC 3748 §4, §5): eapkit vs a straightforward struct codec vs
the floor.

Each operation decodes one packet and encodes it again, as a RADIUS server does with
every EAP-Message it relays to a method and back:

- an EAP-Response/Identity (§5.1), the first packet of every conversation;
- an EAP-TLS Request carrying a 1,024-octet fragment (§5.4 ff.: a method's Type-Data);
- an EAP-Response/Nak (§5.3.1) listing two types.

Columns:

- eapkit: :func:`eapkit.packet.decode` (typed, immutable message classes, every field
  checked, :class:`~eapkit.errors.DecodeError` for anything malformed) and the message's
  ``encode()``.
- anchor: there is no Python EAP codec a server would import instead, so the anchor is
  the straightforward codec written below, in this file: ``struct`` for the header, the
  same Length, Code and Type checks, a small mutable class per packet.  It is what a
  RADIUS server written without eapkit would carry.
- floor: what any codec must do at least: one ``struct`` unpack of the header, the
  Type-Data slice, one ``struct`` pack and the concatenation, no checks at all.

Run: ``.venv/bin/python -m benchmarks.bench_packet`` (``--quick`` for a short run).
"""

from __future__ import annotations

import struct
import sys
import timeit
from collections.abc import Callable

from eapkit.packet import Code, EapType, Identity, MethodData, Nak, decode

_HEADER = struct.Struct("!BBH")

IDENTITY = Identity(Code.RESPONSE, 1, b"alice@example.org").encode()
TLS_REQUEST = MethodData(Code.REQUEST, 7, EapType.TLS, b"\x00" + bytes(range(256)) * 4).encode()
NAK = Nak(2, (EapType.TTLS, EapType.PEAP)).encode()


# -- the anchor: a straightforward codec, written here ----------------------------------


class PlainEapPacket:
    """One EAP packet as a hand-written codec holds it (RFC 3748 §4)."""

    __slots__ = ("code", "data", "identifier", "type")

    def __init__(self, code: int, identifier: int, type_: int | None, data: bytes) -> None:
        self.code = code
        self.identifier = identifier
        self.type = type_
        self.data = data

    @classmethod
    def decode(cls, raw: bytes) -> PlainEapPacket:
        if len(raw) < 4:
            raise ValueError("short EAP packet")
        code, identifier, length = _HEADER.unpack(raw[:4])
        if length < 4 or length > len(raw):
            raise ValueError("bad EAP Length")
        if code in (3, 4):
            if length != 4:
                raise ValueError("Success/Failure with data")
            return cls(code, identifier, None, b"")
        if code not in (1, 2) or length == 4:
            raise ValueError("bad EAP Code or missing Type")
        type_ = raw[4]
        if type_ == 0 or (type_ == 3 and (code != 2 or length == 5)):
            raise ValueError("bad EAP Type")
        return cls(code, identifier, type_, raw[5:length])

    def encode(self) -> bytes:
        if self.type is None:
            return _HEADER.pack(self.code, self.identifier, 4)
        return (
            _HEADER.pack(self.code, self.identifier, 5 + len(self.data))
            + bytes((self.type,))
            + self.data
        )


# -- the three contenders ----------------------------------------------------------------


def eapkit_round_trip(raw: bytes) -> Callable[[], bytes]:
    return lambda: decode(raw).encode()


def anchor_round_trip(raw: bytes) -> Callable[[], bytes]:
    return lambda: PlainEapPacket.decode(raw).encode()


def floor_round_trip(raw: bytes) -> Callable[[], bytes]:
    unpack, pack = _HEADER.unpack_from, _HEADER.pack

    def once() -> bytes:
        code, identifier, length = unpack(raw)
        return pack(code, identifier, length) + raw[4:length]

    return once


def _measure(fns: list[Callable[[], object]], quick: bool) -> list[float]:
    """Best per-call time of each function in microseconds, timed in interleaved rounds
    so that load from elsewhere on the machine hits them alike.  Each timing lasts about
    20 ms (quick) or 100 ms, calibrated on 200 calls: these calls take microseconds."""
    slice_s, rounds = (0.02, 5) if quick else (0.1, 9)
    timers = []
    for fn in fns:
        timer = timeit.Timer(fn)
        per_call = max(timer.timeit(200) / 200, 1e-8)
        timers.append((timer, max(1, int(slice_s / per_call))))
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, (timer, number) in enumerate(timers):
            best[i] = min(best[i], timer.timeit(number) / number * 1e6)
    return best


PACKETS = [
    ("EAP-Response/Identity decode + encode", IDENTITY),
    ("EAP-TLS Request, 1 KiB fragment, decode + encode", TLS_REQUEST),
    ("EAP-Response/Nak decode + encode", NAK),
]
ANCHOR = "struct codec (hand-written, in the benchmark)"


def run(quick: bool = False) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for op, raw in PACKETS:
        # all three must give the packet back before they are timed
        fns = [eapkit_round_trip(raw), anchor_round_trip(raw), floor_round_trip(raw)]
        if any(fn() != raw for fn in fns):
            raise AssertionError(f"{op}: a codec did not round-trip the packet")
        eapkit_us, anchor_us, floor_us = _measure(list(fns), quick)
        rows.append(
            {
                "op": op,
                "eapkit_us": eapkit_us,
                "anchor": ANCHOR,
                "anchor_us": anchor_us,
                "floor_us": floor_us,
            }
        )
    return rows


def main() -> None:
    rows = run("--quick" in sys.argv)
    print(
        f"{'operation':<50} {'eapkit us':>9} {'anchor us':>9} {'floor us':>9} "
        f"{'eapkit/anchor':>13} {'eapkit/floor':>12}"
    )
    for r in rows:
        e, a, f = r["eapkit_us"], r["anchor_us"], r["floor_us"]
        assert isinstance(e, float) and isinstance(a, float) and isinstance(f, float)
        print(f"{r['op']:<50} {e:9.2f} {a:9.2f} {f:9.2f} {e / a:12.2f}x {e / f:11.2f}x")
    print(f"anchor: {ANCHOR}; floor: header unpack + pack + Type-Data slice, no checks")


if __name__ == "__main__":
    main()
