"""The virtual card's side of the vpcd protocol (vsmartcard's ``vpcd`` reader driver).

pcscd loads vpcd as a reader driver; vpcd listens on TCP (35963 for reader
``Virtual PCD 00 00``, 35964 for ``... 00 01``) and the virtual card connects to it.
Every message, both ways, is a 2-byte big-endian length followed by the payload.  A
one-byte payload from vpcd is a control code (0 power off, 1 power on, 2 reset: no
reply; 4 get ATR: reply with the ATR); a longer payload is a command APDU, answered
with response data + SW1 SW2.  (Facts from vsmartcard's ``vpcd.c`` and checked against
Debian 12's ``vsmartcard-vpcd`` 3.3; see /work/shared/INTEROP.md.)
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from tokens.sim.card import VirtualCard

__all__ = ["VPCD_PORTS", "serve"]

VPCD_PORTS = (35963, 35964)
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4

log = logging.getLogger(__name__)


def _read_exact(sock: socket.socket, count: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < count:
        chunk = sock.recv(count - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(2, "big") + payload)


def run_connection(sock: socket.socket, card: VirtualCard, stop: threading.Event) -> None:
    """Serve vpcd on one connected socket until it closes or ``stop`` is set."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            head = _read_exact(sock, 2)
        except TimeoutError:
            continue
        if head is None:
            return
        sock.settimeout(None)
        payload = _read_exact(sock, int.from_bytes(head, "big"))
        sock.settimeout(0.2)
        if payload is None:
            return
        if len(payload) == 1:
            code = payload[0]
            if code == CTRL_OFF:
                card.power_off()
            elif code == CTRL_ON:
                card.power_on()
            elif code == CTRL_RESET:
                card.reset()
            elif code == CTRL_ATR:
                _send(sock, card.atr)
            else:
                log.debug("unknown vpcd control code %d", code)
            continue
        _send(sock, card.transmit(payload))


def serve(
    card: VirtualCard,
    host: str = "127.0.0.1",
    port: int = VPCD_PORTS[0],
    stop: threading.Event | None = None,
) -> None:
    """Connect the card to vpcd and keep it inserted (reconnecting) until ``stop``."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=2)
        except OSError:
            # pcscd not up yet (or restarting): a real card waits in the reader too
            time.sleep(0.2)
            continue
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            log.info("card inserted into vpcd at %s:%d", host, port)
            try:
                run_connection(sock, card, stop)
            except OSError as exc:
                log.info("vpcd connection lost: %s", exc)
        card.power_off()
        if not stop.is_set():
            time.sleep(0.2)
