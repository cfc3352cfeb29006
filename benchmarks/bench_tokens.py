"""Token drivers: what the host side adds on top of the card, measured in process.

The card is :mod:`tokens.sim` reached through :class:`~tokens.sim.card.SimLink` (no pcscd),
so the rows isolate the driver: APDU building, the transport's chaining and response
handling, TLV parsing.  ``anchor`` is the same virtual card answering the same command
bytes prepared in advance (the card's own cost); ``floor`` is the cryptography the card
must do (one HMAC for an OATH code, one ECDSA P-256 signature for PIV).  Round trips
through pcscd and vpcd are measured on the bench with ``eapkit token bench``, not here.

Run: ``.venv/bin/python -m benchmarks.bench_tokens`` (``--quick`` for a short run).
"""

from __future__ import annotations

import hmac
import sys
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from tokens.apdu import tlv
from tokens.oath import OathSession
from tokens.pcsc import ApduTransport
from tokens.piv import PivSession
from tokens.sim import make_card
from tokens.sim.card import SimLink


def _best_us(fn: Callable[[], object], n: int, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / n / 1000)
    return best


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 300 if quick else 2_000
    secret = b"12345678901234567890"
    card = make_card("oath", {"oath": {}})
    oath = OathSession(ApduTransport(SimLink(card)))
    cred = oath.put("bench", secret)
    raw = bytes.fromhex("00a20001") + bytes([len(tlv(0x71, cred.id) + tlv(0x74, bytes(8)))])
    raw += tlv(0x71, cred.id) + tlv(0x74, bytes(8))
    rows = [
        {
            "op": "oath calculate",
            "eapkit_us": _best_us(lambda: oath.calculate(cred, 1_700_000_000.0), n),
            "anchor": "sim card, raw APDU",
            "anchor_us": _best_us(lambda: card.transmit(raw), n),
            "floor_us": _best_us(lambda: hmac.digest(secret, bytes(8), "sha1"), n),
        }
    ]
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    pcard = make_card("piv", {"piv": {"keys": {"9a": pem}}})
    piv = PivSession(ApduTransport(SimLink(pcard)))
    piv.verify_pin("123456")
    public_key = key.public_key()
    digest = bytes(32)
    ga = tlv(0x7C, tlv(0x82) + tlv(0x81, digest))
    raw_ga = bytes.fromhex("0087119a") + bytes([len(ga)]) + ga
    m = max(50, n // 10)
    rows.append(
        {
            "op": "piv sign P-256",
            "eapkit_us": _best_us(lambda: piv.sign(0x9A, b"m", public_key=public_key), m),
            "anchor": "sim card, raw APDU",
            "anchor_us": _best_us(lambda: pcard.transmit(raw_ga), m),
            "floor_us": _best_us(lambda: key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))), m),
        }
    )
    return rows


def main(argv: list[str]) -> None:
    rows = run(quick="--quick" in argv)
    head = f"{'operation':18} {'driver+card us':>14} {'card us':>9} {'driver/card':>11}"
    print(head + f" {'floor us':>9}")
    for r in rows:
        print(
            f"{r['op']:18} {r['eapkit_us']:14.1f} {r['anchor_us']:9.1f} "
            f"{r['eapkit_us'] / r['anchor_us']:11.2f} {r['floor_us']:9.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
