"""The virtual card's transport layer and its vpcd protocol, without pcscd."""

from __future__ import annotations

import socket
import threading

from tests.tokens.cards import oath_state
from tokens.sim import ATR, make_card
from tokens.sim.vpcd import run_connection

SELECT_OATH = bytes.fromhex("00a4040007a0000005272101")


def test_unknown_applet_and_no_selection() -> None:
    card = make_card("oath", {})
    assert card.transmit(bytes.fromhex("00a4040005a000000999")) == b"\x6a\x82"
    assert card.transmit(bytes.fromhex("00a1000000")) == b"\x69\x85"
    assert card.transmit(b"\x00") == b"\x67\x00"


def test_chain_must_not_change_command() -> None:
    card = make_card("oath", {"oath": oath_state()})
    card.transmit(SELECT_OATH)
    assert card.transmit(bytes.fromhex("10010000020102")) == b"\x90\x00"
    assert card.transmit(bytes.fromhex("00a1000000"))[-2:] == b"\x68\x83"


def test_power_cycle_forgets_selection() -> None:
    card = make_card("oath", {"oath": oath_state()})
    card.transmit(SELECT_OATH)
    assert card.transmit(bytes.fromhex("00a1000000"))[-2:] == b"\x90\x00"
    card.power_off()
    card.power_on()
    assert card.transmit(bytes.fromhex("00a1000000"))[-2:] == b"\x69\x85"


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


def _read(sock: socket.socket) -> bytes:
    head = sock.recv(2)
    size = int.from_bytes(head, "big")
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def test_vpcd_protocol_over_a_socket_pair() -> None:
    ours, theirs = socket.socketpair()
    card = make_card("oath", {"oath": oath_state()})
    stop = threading.Event()
    thread = threading.Thread(target=run_connection, args=(ours, card, stop))
    thread.start()
    try:
        theirs.sendall(_frame(b"\x04"))  # get ATR
        assert _read(theirs) == ATR
        theirs.sendall(_frame(b"\x00") + _frame(b"\x01"))  # power off, on: no reply
        theirs.sendall(_frame(SELECT_OATH))
        answer = _read(theirs)
        assert answer[-2:] == b"\x90\x00" and answer[:2] == b"\x79\x03"
    finally:
        theirs.close()
        thread.join(timeout=5)
        stop.set()
        ours.close()
    assert not thread.is_alive()
