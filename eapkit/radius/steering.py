"""Which worker owns a RADIUS datagram, decided by the kernel (``--workers N``).

A worker writes ``0xEA, worker`` in front of the random octets of every State it sends
(RFC 2865 §5.24: the State is the server's to fill, the NAS echoes it), so the next
round names its owner.  A request without such a State belongs to the worker its
Request Authenticator names: random per request (RFC 2865 §3) and kept by a
retransmission (RFC 5080 §2.2.1).  :func:`steer` is that decision in Python,
:func:`steering_program` the same in classic BPF for SO_ATTACH_REUSEPORT_CBPF, and
:func:`attach_steering` attaches it to a SO_REUSEPORT group.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct

from eapkit.errors import ConfigError

__all__ = [
    "MAX_WORKERS",
    "STATE_MARKER",
    "STEER_STEPS",
    "attach_steering",
    "state_prefix",
    "steer",
    "steering_program",
]

log = logging.getLogger("eapkit.radius")

STATE_MARKER = 0xEA
MAX_WORKERS = 255
STEER_STEPS = 64  # attributes walked looking for State (BPF has no loops: unrolled)
_STATE = 24  # RFC 2865 §5.24
_SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)


def state_prefix(worker: int) -> bytes:
    """What worker ``worker`` puts in front of every State it sends."""
    return bytes((STATE_MARKER, worker))


def steer(data: bytes, workers: int) -> int:
    """The worker that owns this datagram: the one its State names, else Request
    Authenticator[0] mod ``workers``.

    Exactly what :func:`steering_program` computes in the kernel, including its
    answers for truncated input (a load past the end makes a BPF program return 0).
    """
    n = len(data)
    if n < 5:
        return 0
    limit = min((data[2] << 8) | data[3], n)
    x = 20
    for _ in range(STEER_STEPS):
        if limit <= x:
            break
        if data[x] == _STATE:
            if x + 1 >= n:
                return 0
            if data[x + 1] < 4:
                break
            if x + 2 >= n:
                return 0
            if data[x + 2] != STATE_MARKER:
                break
            if x + 3 >= n:
                return 0
            owner = data[x + 3]
            if owner >= workers:
                break
            return owner
        if x + 1 >= n:
            return 0
        length = data[x + 1]
        if length < 2:
            break
        x += length
    return data[4] % workers


# Classic BPF (linux/filter.h): class | size | mode, jumps compare A with k or X.
_LDH_ABS, _LDB_ABS, _LDB_IND, _LD_LEN, _LD_MEM = 0x28, 0x30, 0x50, 0x80, 0x60
_LDX_IMM, _STX, _TAX, _ADD_X, _MOD_K = 0x01, 0x03, 0x07, 0x0C, 0x94
_JA, _JEQ_K, _JGE_K, _JGT_X, _JGE_X, _RET_A = 0x05, 0x15, 0x35, 0x2D, 0x3D, 0x16

Insn = tuple[int, int, int, int]  # code, jt, jf, k


def steering_program(workers: int) -> list[Insn]:
    """The classic BPF program that picks the socket (= worker) for a datagram; it
    sees the UDP payload from offset 0 and walks at most :data:`STEER_STEPS` attributes.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"workers is 1..{MAX_WORKERS}")
    prog: list[Insn] = [
        (_LDH_ABS, 0, 0, 2),  # A = Length
        (_TAX, 0, 0, 0),
        (_LD_LEN, 0, 0, 0),  # A = datagram length
        (_JGE_X, 1, 0, 0),  # limit = min(Length, datagram length)
        (_TAX, 0, 0, 0),
        (_STX, 0, 0, 0),  # M[0] = limit
        (_LDX_IMM, 0, 0, 20),  # X = first attribute
    ]
    # Jumps to the two tails are patched once their place is known.
    to_nostate: list[int] = []
    to_found: list[int] = []
    for _ in range(STEER_STEPS):
        base = len(prog)
        prog += [
            (_LD_MEM, 0, 0, 0),  # A = limit
            (_JGT_X, 1, 0, 0),  # attribute starts before the end?
            (_JA, 0, 0, 0),  # -> nostate
            (_LDB_IND, 0, 0, 0),  # A = Type
            (_JEQ_K, 0, 1, _STATE),
            (_JA, 0, 0, 0),  # -> found
            (_LDB_IND, 0, 0, 1),  # A = attribute Length
            (_JGE_K, 1, 0, 2),
            (_JA, 0, 0, 0),  # -> nostate (malformed)
            (_ADD_X, 0, 0, 0),
            (_TAX, 0, 0, 0),  # X = next attribute
        ]
        to_nostate += [base + 2, base + 8]
        to_found.append(base + 5)
    to_nostate.append(len(prog))
    prog.append((_JA, 0, 0, 0))  # out of steps -> nostate
    found = len(prog)
    prog += [
        (_LDB_IND, 0, 0, 1),  # State's Length >= 4 (marker, worker, ...)
        (_JGE_K, 0, 5, 4),
        (_LDB_IND, 0, 0, 2),
        (_JEQ_K, 0, 3, STATE_MARKER),
        (_LDB_IND, 0, 0, 3),  # A = worker named by the State
        (_JGE_K, 1, 0, workers),
        (_RET_A, 0, 0, 0),
    ]
    nostate = len(prog)
    prog += [
        (_LDB_ABS, 0, 0, 4),  # Request Authenticator[0] mod workers
        (_MOD_K, 0, 0, workers),
        (_RET_A, 0, 0, 0),
    ]
    for at in to_nostate:
        prog[at] = (_JA, 0, 0, nostate - at - 1)
    for at in to_found:
        prog[at] = (_JA, 0, 0, found - at - 1)
    return prog


def attach_steering(sock: socket.socket, workers: int) -> bool:
    """Attach :func:`steering_program` to the SO_REUSEPORT group of ``sock``; False
    when the kernel refuses it (then the group spreads by 4-tuple hash)."""
    prog = steering_program(workers)
    raw = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        log.warning("SO_ATTACH_REUSEPORT_CBPF refused (%s): forwarding between workers", exc)
        return False
    return True
