"""The per-request path in one process, for deterministic measures (issue 21).

Runs ``COUNT`` logins (after 30 to warm up) through :meth:`RadiusCore.receive` of the
core ``eapkit serve`` builds (:func:`eapkit.serve.build_core`, a fresh SQLite user
file), no sockets: ``pap`` (User-Password, RFC 2865 §5.2), ``mschapv2``
(EAP-MSCHAPv2 driven by eapkit's own peer, RFC 3579 over RFC 2759), ``tls13``
(EAP-TLS 1.3, RFC 9190) or ``ttls-pap13`` (TTLS/PAP over TLS 1.3, RFC 5281; both with
``eapkit.pki`` ECDSA P-256 certificates and eapkit's peer).  Every server call
goes through :func:`operator.call`, so callgrind can count the server alone::

    valgrind --tool=callgrind --toggle-collect=_operator_call \\
        python -m benchmarks.lean_path pap 120

Instructions per login = (total at COUNT=b - total at COUNT=a) / (b - a), which
removes the warm-up; PBKDF2 (1,000 iterations here) is reported by callgrind_annotate
as ``PKCS5_PBKDF2_HMAC`` and subtracted for PAP.  A wall-clock figure is printed too,
but on a shared machine only the instruction counts compare across runs.

``--front pool`` sends every request through a :class:`~eapkit.radius.front.Front`
with a 4-thread :class:`~eapkit.radius.fairpool.FairPool` on an event loop, every
Access-Request to the pool (the path before issue 21's fast path); ``--front fast``
the same front with its rule for inline rounds; ``EAPKIT_EVENT_LOOP=uvloop`` runs that
loop on uvloop.  The server work then runs on pool threads too, so count the whole
process (no ``--toggle-collect``; the driver is the same in every mode) and compare the
modes' totals; the context switches of every
thread (``/proc/self/task/*/status``) per login are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import operator
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from benchmarks.bench_serve import _options, make_pki
from eapkit.directory import LocalDirectory
from eapkit.methods.base import MethodFactory, Peer
from eapkit.methods.mschapv2 import mschapv2_peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.probe import build_peer_methods
from eapkit.radius.core import Handled, RadiusCore, Reply
from eapkit.radius.dictionary import Attr
from eapkit.radius.fairpool import FairPool
from eapkit.radius.front import Front, run_event_loop
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import Attribute, Code, decode, eap_message_attributes, encode_request
from eapkit.rand import DeterministicRandom
from eapkit.serve import ServeConfig, build_core, open_directory
from eapkit.session import PeerSession, Send

SECRET = b"testing123"
PASSWORD = "wonderland-pass"
WARM_UP = 30
# lean_path name -> (bench_serve row, eapkit serve method)
TLS_METHODS = {
    "tls13": ("EAP-TLS 1.3", "tls"),
    "ttls-pap13": ("TTLS/PAP TLS 1.3", "ttls"),
    "ttls-pap12": ("TTLS/PAP TLS 1.2", "ttls"),
    "peap12": ("PEAP/MSCHAPv2 TLS 1.2", "peap"),
}


def _fixed(attributes: list[Attribute], _authenticator: bytes) -> list[Attribute]:
    return attributes


class Driver:
    """A NAS in front of ``core``: fresh authenticators, one source port per login."""

    def __init__(self, core: RadiusCore) -> None:
        self.core = core
        self.random = DeterministicRandom(5)
        self.identifier = 0
        self.port = 10_000

    def request(self, attributes: Callable[[bytes], list[Attribute]]) -> bytes:
        """The next Access-Request: a new Identifier and Request Authenticator."""
        self.identifier = (self.identifier + 1) & 0xFF
        authenticator = self.random.random_bytes(16)
        return encode_request(
            Code.ACCESS_REQUEST,
            self.identifier,
            attributes(authenticator),
            SECRET,
            authenticator=authenticator,
            message_authenticator=True,
        )

    async def send(self, attributes: Callable[[bytes], list[Attribute]], now: float) -> Handled:
        data = self.request(attributes)
        return operator.call(self.core.receive, data, ("127.0.0.1", self.port), now)

    async def pap(self, now: float) -> None:
        self.port += 1
        handled = await self.send(
            lambda a: [
                (Attr.USER_NAME, b"alice"),
                (Attr.USER_PASSWORD, hide_password(PASSWORD.encode(), SECRET, a)),
            ],
            now,
        )
        assert isinstance(handled, Reply) and decode(handled.data).code == Code.ACCESS_ACCEPT

    async def mschapv2(self, now: float) -> None:
        await self.eap(PeerSession([mschapv2_peer(PASSWORD)], "alice"), now)

    async def eap(self, peer: PeerSession, now: float) -> None:
        """One EAP login of ``peer`` (any method) to its Access-Accept."""
        self.port += 1
        action = peer.receive(Identity(EapCode.REQUEST, 0).encode())
        state: bytes | None = None
        for _ in range(40):
            assert isinstance(action, Send)
            attributes: list[Attribute] = [
                (Attr.USER_NAME, b"alice"),
                *eap_message_attributes(action.packet),
                *([] if state is None else [(Attr.STATE, state)]),
            ]
            handled = await self.send(functools.partial(_fixed, attributes), now)
            assert isinstance(handled, Reply)
            reply = decode(handled.data)
            if reply.code != Code.ACCESS_CHALLENGE:
                assert reply.code == Code.ACCESS_ACCEPT, reply.code
                return
            state = reply.get(Attr.STATE)
            action = peer.receive(reply.eap_message() or b"")
        raise AssertionError("the conversation did not end")


class FrontDriver(Driver):
    """The same NAS in front of a :class:`Front` with a pool, on the running loop."""

    def __init__(self, core: RadiusCore, inline: bool) -> None:
        super().__init__(core)
        self.front = Front(core, time.time, FairPool(4), inline_per_tick=8 if inline else 0)

    async def send(self, attributes: Callable[[bytes], list[Attribute]], now: float) -> Handled:
        # one request per loop iteration, as a socket delivers datagrams (the front's
        # per-client inline share is per iteration)
        await asyncio.sleep(0)
        data = self.request(attributes)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.front.receive(data, ("127.0.0.1", self.port), future.set_result)
        return Reply(await future)


def context_switches() -> int:
    """Voluntary and involuntary context switches of every thread of this process."""
    total = 0
    for status in Path("/proc/self/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[-1])
    return total


async def _logins(login: Callable[[float], Awaitable[None]], count: int) -> tuple[float, int]:
    now = time.time()
    for i in range(WARM_UP):
        await login(now + i * 0.001)
    switches = context_switches()
    started = time.process_time()
    for i in range(count):
        await login(now + (WARM_UP + i) * 0.001)
    return time.process_time() - started, context_switches() - switches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lean_path")
    parser.add_argument("method", choices=("pap", "mschapv2", *TLS_METHODS))
    parser.add_argument("count", type=int)
    parser.add_argument("--front", choices=("none", "pool", "fast"), default="none")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        db = Path(work) / "users.db"
        users = LocalDirectory(db)
        users.add("alice", PASSWORD, nt_hash=args.method != "pap", iterations=1000)
        users.close()
        cfg = ServeConfig()
        cfg.db = db
        cfg.methods = ["mschapv2" if args.method == "mschapv2" else "gtc"]
        peer_methods: list[MethodFactory[Peer]] = []
        if args.method in TLS_METHODS:
            p = make_pki(Path(work))
            cfg.tls.cert, cfg.tls.key, cfg.tls.ca = p.server_cert, p.server_key, p.ca
            cfg.methods = [TLS_METHODS[args.method][1]]
            opts = _options(TLS_METHODS[args.method][0], 0, "", p)
            opts = replace(opts, password=PASSWORD)
            peer_methods = build_peer_methods(opts)
        with open(os.devnull, "w") as log:
            core = build_core(cfg, open_directory(cfg), log_stream=log, warn=lambda _m: None)
            driver = (
                Driver(core) if args.front == "none" else FrontDriver(core, args.front == "fast")
            )
            login: Callable[[float], Awaitable[None]]
            login = driver.pap if args.method == "pap" else driver.mschapv2
            if peer_methods:

                def login(now: float) -> Awaitable[None]:
                    return driver.eap(PeerSession(peer_methods, "alice"), now)

            spent, switches = run_event_loop(_logins(login, args.count))
            if isinstance(driver, FrontDriver):
                driver.front.close()
                front = driver.front
                rounds = (front.inline + front.pooled) / (WARM_UP + args.count)
                inline = front.inline / (WARM_UP + args.count)
                print(f"{rounds:.2f} Access-Requests per login, {inline:.2f} of them inline")
    per = spent / max(args.count, 1) * 1e6
    print(
        f"{args.method} (front {args.front}): {per:.1f} us of CPU per login (driver included),"
        f" {switches / max(args.count, 1):.2f} context switches per login"
    )


if __name__ == "__main__":
    main()
