"""A virtual ISO 7816-4 card: applets selected by AID, chaining and GET RESPONSE.

The card does what the transport layer of a real token does, so that the drivers'
transport code is exercised for real: it reassembles command chains (ISO 7816-4
section 5.4.1, CLA bit b5), answers more than Ne bytes with ``61XX`` and hands out the
rest on GET RESPONSE (section 7.6.1; YubiKey applets also use their own "send
remaining" instruction), accepts extended-length APDUs when its ATR says so, and
dispatches each command to the applet last SELECTed by AID (section 11.2.2).

Applets keep their state as JSON-friendly dicts so a test can preload a card
(``--state FILE``) and the card writes changes back, like a real token keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eapkit.errors import DecodeError
from tokens.apdu import Apdu

__all__ = ["Applet", "CardResponse", "SimLink", "SwError", "VirtualCard"]

CardResponse = tuple[bytes, int]

SW_OK = 0x9000
INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0


class SwError(Exception):
    """Raised inside an applet to end a command with a status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


class Applet:
    """One application on the card.  Subclasses set ``aid`` and implement ``process``."""

    aid: bytes = b""
    name: str = "applet"
    #: an applet-specific GET RESPONSE instruction (OATH's SEND REMAINING is A5)
    send_remaining_ins: int | None = None

    def __init__(self) -> None:
        self.on_change: Callable[[], None] = lambda: None

    def select(self, p1: int, p2: int) -> bytes:
        """Called on SELECT; returns the response data (FCI or applet-specific)."""
        return b""

    def process(self, apdu: Apdu) -> CardResponse:
        raise SwError(0x6D00)

    def deselect(self) -> None:
        """Another applet was selected or the card was reset: drop security status."""

    def state(self) -> dict[str, Any]:
        return {}

    def changed(self) -> None:
        self.on_change()


class VirtualCard:
    """Applets behind one ATR, with ISO 7816-4 chaining and response chaining."""

    def __init__(self, applets: list[Applet], atr: bytes) -> None:
        self.applets = applets
        self.atr = atr
        self.selected: Applet | None = None
        self._chain: tuple[tuple[int, int, int, int], bytearray] | None = None
        self._pending = b""
        self.powered = True

    def power_off(self) -> None:
        self.powered = False
        self.reset()

    def power_on(self) -> None:
        self.powered = True
        self.reset()

    def reset(self) -> None:
        if self.selected is not None:
            self.selected.deselect()
        self.selected = None
        self._chain = None
        self._pending = b""

    def transmit(self, raw: bytes) -> bytes:
        """One APDU in, response data + SW out; never raises."""
        try:
            apdu = Apdu.decode(raw)
        except DecodeError:
            return b"\x67\x00"
        try:
            data, sw = self._dispatch(apdu, extended=len(raw) > 5 and raw[4] == 0)
        except SwError as err:
            data, sw = b"", err.sw
        return data + sw.to_bytes(2, "big")

    def _respond(self, data: bytes, sw: int, ne: int) -> CardResponse:
        if len(data) <= ne or sw != SW_OK:
            self._pending = b""
            return data, sw
        self._pending = data[ne:]
        return data[:ne], 0x6100 | min(len(self._pending), 256) & 0xFF

    def _dispatch(self, apdu: Apdu, extended: bool) -> CardResponse:
        ins = apdu.ins
        remaining_ins = {INS_GET_RESPONSE}
        if self.selected is not None and self.selected.send_remaining_ins is not None:
            remaining_ins.add(self.selected.send_remaining_ins)
        if ins in remaining_ins and self._pending and not apdu.chained:
            pending, self._pending = self._pending, b""
            return self._respond(pending, SW_OK, apdu.le or 256)
        self._pending = b""
        # Command chaining: collect parts that carry CLA b5, run the whole on the last.
        cla = apdu.cla & ~0x10
        header = (cla, ins, apdu.p1, apdu.p2)
        if self._chain is not None:
            if self._chain[0] != header:
                self._chain = None
                raise SwError(0x6883)  # last command of the chain expected
            self._chain[1].extend(apdu.data)
            if apdu.chained:
                return b"", SW_OK
            data = bytes(self._chain[1])
            self._chain = None
            apdu = Apdu(cla, ins, apdu.p1, apdu.p2, data, apdu.le)
        elif apdu.chained:
            self._chain = (header, bytearray(apdu.data))
            return b"", SW_OK
        ne = apdu.le or 256
        if extended:
            ne = apdu.le or 65536
        if cla & 0x0C:
            raise SwError(0x6882)  # secure messaging not supported
        if ins == INS_SELECT and apdu.p1 == 0x04:
            return self._respond(*self._select(apdu), ne)
        if self.selected is None:
            raise SwError(0x6985)  # no application selected
        try:
            data, sw = self.selected.process(apdu)
        except DecodeError:
            data, sw = b"", 0x6A80
        return self._respond(data, sw, ne)

    def _select(self, apdu: Apdu) -> CardResponse:
        for applet in self.applets:
            # partial DF name: the first applet whose AID starts with the given bytes
            if apdu.data and applet.aid.startswith(apdu.data):
                if self.selected is not None and self.selected is not applet:
                    self.selected.deselect()
                self.selected = applet
                return applet.select(apdu.p1, apdu.p2), SW_OK
        if self.selected is not None:
            self.selected.deselect()
        self.selected = None
        raise SwError(0x6A82)

    def state(self) -> dict[str, Any]:
        return {applet.name: applet.state() for applet in self.applets}


class SimLink:
    """A :class:`tokens.pcsc.CardLink` straight to a virtual card, with no pcscd between."""

    def __init__(self, card: VirtualCard) -> None:
        self.card = card
        self.transmitted: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def transmit(self, apdu: bytes) -> bytes:
        self.transmitted.append(apdu)
        return self.card.transmit(apdu)

    def begin_transaction(self) -> None:
        pass

    def end_transaction(self) -> None:
        pass

    def close(self) -> None:
        pass
