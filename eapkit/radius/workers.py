"""``eapkit serve --workers N``: one process per core, all on the same RADIUS port.

An EAP conversation lives in the memory of the process that started it (its TLS state
cannot move), so every round must reach that process, whatever the NAS's source port
(a gateway may open a new socket per Access-Request).  How it gets there::

    NAS ──UDP──> kernel: N sockets bound to one address:port with SO_REUSEPORT
                   │  a classic BPF program (SO_ATTACH_REUSEPORT_CBPF) picks the socket:
                   │    State = 0xEA, w, ...  ->  worker w (w < N)
                   │    otherwise             ->  Request Authenticator[0] mod N
                   ▼
                worker w ──(rare) Unix datagram──> worker v, when w is not the owner
                   │
                   └──UDP reply from its own socket on the same address:port──> NAS

- Each worker writes its number in the State it sends (``0xEA, worker`` in front of
  the random octets, :meth:`RadiusCore.set_state_prefix`), so the State names the
  owner of the conversation (or of a pending PAP challenge).
- A request without (our) State belongs to the worker its Request Authenticator
  names.  That authenticator is random per request (RFC 2865 §3) and kept by a
  retransmission (RFC 5080 §2.2.1), so new conversations spread evenly over the
  workers even from a single NAS socket, and a retransmitted request reaches the worker
  that answered it; that worker's duplicate cache (RFC 5080 §2.2.2, keyed by source
  address, port, Identifier and Authenticator) answers it without running anything
  twice.  A retransmission from a *different* source port is, for that cache, a new
  request: the owner runs it again (a second conversation that expires unused after
  ``conversation_ttl``; for PAP with a one-time code, the code is then refused as
  replayed), exactly as a single-process server does.
- :func:`~eapkit.radius.steering.steer` is the same decision in Python.  Every worker
  checks it on every datagram and forwards what is not its own to the owner over a
  Unix datagram socket, with the NAS's address; the owner answers from its own socket,
  bound to the same address and port, so the reply's source is what the NAS expects.  With the BPF
  program attached this never fires; without it (a kernel that refuses the program)
  the kernel spreads by 4-tuple hash and forwarding keeps every round with its owner.
- The parent process binds every socket before forking (so port 0 works and the
  socket order, which the BPF program's answer indexes, is the worker order), then
  only waits: SIGTERM or SIGINT to it stops every worker; a worker that dies stops the
  rest (exit status 1).  Workers also get SIGTERM if the parent dies (PR_SET_PDEATHSIG).
- Each worker opens its own database connections and decision log after the fork; the
  log is opened for append (O_APPEND) and written a whole line per write, so the lines
  of several workers never mix.  Every line carries ``"worker": w``.
- A worker sends, settles held Accepts (the approval bridge) and counts through the
  same :class:`~eapkit.radius.front.Front` as the single-process server; a held
  Accept waits in the worker that holds it (the gate's state is in the shared store,
  so the approval page may run in any one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from eapkit.errors import ConfigError, DecodeError
from eapkit.radius.core import RadiusCore
from eapkit.radius.fairpool import FairPool
from eapkit.radius.front import Front, run_event_loop
from eapkit.radius.steering import MAX_WORKERS, attach_steering, state_prefix, steer

__all__ = [
    "WorkerFront",
    "bind_group",
    "decode_forward",
    "encode_forward",
    "run_workers",
    "set_owner",
]


def bind_group(host: str, port: int, workers: int) -> list[socket.socket]:
    """``workers`` UDP sockets bound to host:port with SO_REUSEPORT, in worker order
    (the first one picks the port when ``port`` is 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(workers):
            s = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((host, socks[0].getsockname()[1] if len(socks) > 1 else port))
            s.setblocking(False)
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


_FORWARD = struct.Struct("!BBH")


def encode_forward(listen_index: int, address: tuple[str, int], data: bytes) -> bytes:
    """A datagram handed to its owner: which listen socket, the NAS's address, the bytes."""
    host = address[0].encode("ascii")
    return _FORWARD.pack(listen_index, len(host), address[1]) + host + data


def decode_forward(message: bytes) -> tuple[int, tuple[str, int], bytes]:
    """The inverse of :func:`encode_forward`; DecodeError on anything else."""
    if len(message) < _FORWARD.size:
        raise DecodeError("truncated forward header", offset=0, expected="4 bytes")
    listen_index, host_len, port = _FORWARD.unpack_from(message)
    end = _FORWARD.size + host_len
    if len(message) < end:
        raise DecodeError("truncated forward address", offset=_FORWARD.size)
    try:
        host = message[_FORWARD.size : end].decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("forward address is not ASCII", offset=_FORWARD.size) from None
    return listen_index, (host, port), message[end:]


@dataclass
class WorkerStats:
    received: int = 0  # datagrams from the network
    forwarded: int = 0  # ... of which handed to their owner
    taken: int = 0  # datagrams handed to this worker by another
    dropped: int = 0  # forwards that could not be sent or decoded

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("received", "forwarded", "taken", "dropped")}


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, front: WorkerFront, index: int) -> None:
        self.front, self.index = front, index

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.front.from_network(self.index, data, addr)


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self, front: WorkerFront) -> None:
        self.front = front

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.front.from_worker(data)


@dataclass
class WorkerFront:
    """One worker's sockets around its :class:`RadiusCore`: ``sockets`` are its UDP
    sockets (one per listen address), ``inbox`` its end of the forwarding channel,
    ``outboxes[v]`` the way to worker v."""

    core: RadiusCore
    index: int
    workers: int
    sockets: Sequence[socket.socket]
    inbox: socket.socket
    outboxes: Sequence[socket.socket]
    clock: Callable[[], float] = time.time
    stats: WorkerStats = field(default_factory=WorkerStats)
    pool: FairPool | None = None  # where checks run (None: inline)
    _transports: list[asyncio.DatagramTransport] = field(default_factory=list, repr=False)
    _ports: list[int] = field(default_factory=list, repr=False)
    _inbox: asyncio.DatagramTransport | None = field(default=None, repr=False)
    _front: Front = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._front = Front(self.core, self.clock, self.pool)

    def from_network(self, listen_index: int, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.stats.received += 1
        owner = steer(data, self.workers) if self.workers > 1 else self.index
        if owner != self.index:
            self.stats.forwarded += 1
            try:
                self.outboxes[owner].send(
                    encode_forward(listen_index, (str(addr[0]), int(addr[1])), data)
                )
            except OSError:  # the owner's queue is full: the NAS retransmits
                self.stats.dropped += 1
            return
        self._handle(listen_index, data, (str(addr[0]), int(addr[1])))

    def from_worker(self, message: bytes) -> None:
        try:
            listen_index, addr, data = decode_forward(message)
        except DecodeError:
            self.stats.dropped += 1
            return
        if listen_index >= len(self._transports):
            self.stats.dropped += 1
            return
        self.stats.taken += 1
        self._handle(listen_index, data, addr)

    def _handle(self, listen_index: int, data: bytes, addr: tuple[str, int]) -> None:
        transport = self._transports[listen_index]

        def send(reply: bytes) -> None:
            if not transport.is_closing():
                transport.sendto(reply, addr)

        self._front.receive(data, addr, send, local_port=self._ports[listen_index])

    async def run(
        self, stop: asyncio.Event, ready: Callable[[], None] | None = None
    ) -> WorkerStats:
        """Serve until ``stop`` is set (or SIGTERM/SIGINT, when on the main thread)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        for out in self.outboxes:
            out.setblocking(False)
        try:
            for i, sock in enumerate(self.sockets):
                transport, _ = await loop.create_datagram_endpoint(
                    lambda i=i: _Udp(self, i),  # type: ignore[misc]
                    sock=sock,
                )
                self._transports.append(transport)
                self._ports.append(int(sock.getsockname()[1]))
            self._inbox, _ = await loop.create_datagram_endpoint(
                lambda: _Inbox(self), sock=self.inbox
            )
            expiry = loop.create_task(self._front.expire_periodically(stop))
            if ready is not None:
                ready()
            await stop.wait()
            await expiry
        finally:
            for transport in self._transports:
                transport.close()
            if self._inbox is not None:
                self._inbox.close()
            self._front.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
        return self.stats


def set_owner(core: RadiusCore, worker: int) -> None:
    """Make ``core``'s States name ``worker`` and stamp its log lines with it."""
    core.set_state_prefix(state_prefix(worker))
    core.decisions.stamp = {"worker": worker}


def _die_with_parent() -> None:
    """SIGTERM when the parent goes (Linux PR_SET_PDEATHSIG), so no worker is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


# Runs a worker's front (the awaitable) together with what else that worker serves,
# e.g. the approval bridge's web page in worker 0.
Around = Callable[[int, RadiusCore, Awaitable[Any]], Awaitable[Any]]


def _worker_main(
    index: int,
    parent: int,
    groups: list[list[socket.socket]],
    channels: list[tuple[socket.socket, socket.socket]],
    ready_fd: int,
    make_core: Callable[[int], RadiusCore],
    around: Around | None = None,
) -> int:
    _die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what worker 0's RadSec listener takes
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    if os.getppid() != parent:
        return 1
    workers = len(channels)
    for group in groups:
        for j, s in enumerate(group):
            if j != index:
                s.close()
    for j, (inbox, _) in enumerate(channels):
        if j != index:
            inbox.close()
    core = make_core(index)
    set_owner(core, index)
    front = WorkerFront(
        core,
        index,
        workers,
        [group[index] for group in groups],
        channels[index][0],
        [out for _, out in channels],
        pool=FairPool(),
    )

    def ready() -> None:
        print(f"eapkit serve: worker {index} (pid {os.getpid()}) ready", file=sys.stderr)
        sys.stderr.flush()
        os.write(ready_fd, b"r")

    async def main() -> None:
        running = front.run(asyncio.Event(), ready)
        await (running if around is None else around(index, core, running))

    run_event_loop(main())
    summary = {**front.stats.as_dict(), **core.stats}
    print(f"eapkit serve: worker {index} stopped: {summary}", file=sys.stderr)
    return 0


def run_workers(
    listen: Sequence[tuple[str, int]],
    workers: int,
    make_core: Callable[[int], RadiusCore],
    *,
    ready: Callable[[list[tuple[str, int]]], None] | None = None,
    steering: bool = True,
    start_timeout: float = 120.0,
    around: Around | None = None,
) -> int:
    """Fork ``workers`` processes serving ``listen`` with the cores ``make_core(w)``
    builds (called in each worker, after the fork); wait until told to stop.
    ``around(w, core, front)``, when given, runs worker w's front (an awaitable) beside
    whatever else that worker serves.  Returns 0 after SIGTERM/SIGINT, 1 when a worker
    failed."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers is 1..{MAX_WORKERS}")
    groups: list[list[socket.socket]] = []
    channels: list[tuple[socket.socket, socket.socket]] = []
    pids: list[int] = []
    read_fd, write_fd = os.pipe()
    blocked = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    stopping = False

    asked: set[int] = set()  # workers sent SIGTERM once (a second one would kill a
    # worker that is already stopping: its handler is gone by then, so no summary line)

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in pids:
            if pid not in asked:
                asked.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def on_hangup(signum: int, frame: object) -> None:
        # SIGHUP asks for a reload (RadSec clients in worker 0), not for the end
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    try:
        for host, port in listen:
            groups.append(bind_group(host, port, workers))
        bound = [cast(tuple[str, int], tuple(g[0].getsockname()[:2])) for g in groups]
        steered = steering and all(attach_steering(g[0], workers) for g in groups)
        channels = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(workers)]
        for inbox, _ in channels:
            inbox.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals wait until every worker exists and the handler knows their pids.
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGHUP, on_hangup)
        signal.signal(signal.SIGINT, on_signal)
        parent = os.getpid()
        for i in range(workers):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                try:
                    os.close(read_fd)
                    code = _worker_main(i, parent, groups, channels, write_fd, make_core, around)
                except BaseException:
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            pids.append(pid)
    finally:
        for group in groups:
            for s in group:
                s.close()
        for a, b in channels:
            a.close()
            b.close()
        os.close(write_fd)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
    live = set(pids)
    failed = False
    try:
        started = 0
        deadline = time.monotonic() + start_timeout
        while started < workers and not stopping:
            readable, _, _ = select.select([read_fd], [], [], 0.2)
            if readable:
                started += len(os.read(read_fd, workers))
            if _reap(live) or time.monotonic() > deadline:
                failed = True
                break
        if not failed and not stopping:
            if ready is not None:
                ready(bound)
            if not steered and workers > 1:
                print("eapkit serve: kernel steering unavailable; forwarding", file=sys.stderr)
        while live and not (failed or stopping):
            if _reap(live):
                failed = True
            else:
                time.sleep(0.2)
    finally:
        os.close(read_fd)
        _stop_all(live, asked)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    return 1 if failed else 0


def _reap(live: set[int]) -> bool:
    """Collect exited workers; True when one was found (it was not asked to stop)."""
    gone = False
    for pid in list(live):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            live.discard(pid)
            gone = True
    return gone


def _stop_all(live: set[int], asked: set[int], grace: float = 10.0) -> None:
    """SIGTERM each live worker not yet asked, wait ``grace`` seconds, then SIGKILL."""
    for pid in live - asked:
        asked.add(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        _reap(live)
        if live:
            time.sleep(0.05)
    for pid in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    live.clear()
