"""Virtual cards for tests and benches without hardware (see :mod:`tokens.sim.card`).

``python -m tokens.sim --card {oath,piv,fido2,yubikey}`` inserts one into pcscd's vpcd
reader.  :func:`make_card` builds the same cards in-process, for unit tests that talk to
them without pcscd.
"""

from __future__ import annotations

from typing import Any

from tokens.sim.card import Applet, VirtualCard

__all__ = ["ATR", "CARD_KINDS", "build_atr", "make_card"]

CARD_KINDS = ("oath", "piv", "fido2", "yubikey")


def build_atr(historical: bytes) -> bytes:
    """An ISO 7816-3 ATR (section 8.2) offering T=1, with these historical bytes and TCK."""
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes((0x80 | len(historical), 0x80, 0x01)) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


# Compact-TLV historical bytes (ISO 7816-4 section 8.1.1): category 80, card
# capabilities 73 C0 21 C0 (command chaining and extended Lc/Le), issuer data "EAPKT".
ATR = build_atr(bytes.fromhex("8073c021c0") + b"\x55EAPKT")


def make_card(kind: str, state: dict[str, Any] | None = None) -> VirtualCard:
    """A virtual card of ``kind`` (one of :data:`CARD_KINDS`) holding ``state``."""
    from tokens.sim.fido2 import Fido2Applet
    from tokens.sim.oath import OathApplet
    from tokens.sim.otp import OtpApplet
    from tokens.sim.piv import PivApplet

    state = state or {}
    applets: list[Applet] = []
    if kind in ("oath", "yubikey"):
        applets += [OathApplet(state.get("oath")), OtpApplet(state.get("otp"))]
    if kind in ("piv", "yubikey"):
        applets.append(PivApplet(state.get("piv")))
    if kind in ("fido2", "yubikey"):
        applets.append(Fido2Applet(state.get("fido2")))
    if not applets:
        raise ValueError(f"unknown card kind {kind!r}; choose from {', '.join(CARD_KINDS)}")
    return VirtualCard(applets, ATR)
