"""Memory: what a live EAP-TLS conversation and an enrolled TOTP user cost a server.

EAP-TLS conversations are held the way ``eapkit serve`` holds them: a
:class:`~eapkit.radius.core.RadiusCore` in front of an
:class:`~eapkit.radius.access.EapAccess` offering EAP-TLS (TLS 1.3, ECDSA P-256), fed
real Access-Requests through ``RadiusCore.receive``.  Two stages of a conversation that
never finishes (a NAS that went away, a peer that gave up):

- ``after Start``: the first Access-Request (EAP-Response/Identity) got its
  Access-Challenge (EAP-TLS Start, RFC 5216 §2.1.1); the server holds the session, the
  method and its OpenSSL ``SSL`` object.
- ``mid-handshake``: the peer's ClientHello got the first fragment of the server's
  flight; the server also holds the handshake state (key share, transcript) and the rest
  of its flight.

Both include the reply the server caches for duplicate detection (RFC 5080 §2.2.2, kept
``duplicate_ttl`` = 10 s).  Each figure is measured twice, in separate forked processes
so that one measurement's freed memory cannot hide the next one's: the growth of the
process's resident set (``VmRSS``, which sees OpenSSL's own allocations) and the Python
heap growth seen by :mod:`tracemalloc` (which does not).

TOTP users live in the SQLite store (:class:`~eapkit.store.SqliteStore`, secrets sealed
with AES-GCM): the file's size once ``N`` users are enrolled and once each has logged in
(its replay counter stored), and the RSS growth of a process whose
:class:`~eapkit.verify.otp.OtpVerifier` has every user's credential cached.  Figures are
per 100,000 users; ``--quick`` enrolls fewer users and scales linearly (the store's rows
are of fixed size), which the detail column says.

The bound: ``EapAccess.max_conversations`` (10,000 by default, as in ``eapkit serve``)
times the mid-handshake figure is what half-finished conversations can hold at most;
tests/radius/test_half_finished.py checks a server filled to the cap keeps answering.

Run: ``.venv/bin/python -m benchmarks.bench_memory`` (``--quick`` for a short run).
"""

from __future__ import annotations

import gc
import io
import multiprocessing
import sqlite3
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from eapkit.methods.base import MethodContext, Reply
from eapkit.methods.tls import TlsPeer, tls_authenticator
from eapkit.packet import Code as EapCode
from eapkit.packet import EapType, Identity, MethodData
from eapkit.packet import decode as eap_decode
from eapkit.radius import core as radius_core
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, Handled, RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import Code, decode, eap_message_attributes, encode_request
from eapkit.rand import DeterministicRandom
from eapkit.store import Sealer, SqliteStore
from eapkit.tlsio import TlsContext, TlsRole, TlsVersion
from eapkit.verify.otp import OtpCredential, OtpVerifier, hotp
from tests.certs import IDENTITY, lab, peer_config, server_config

Row = dict[str, Any]
SECRET = b"bench-secret"
NAS = "127.0.0.1"
NOW = 1_700_000_000.0
PER_USERS = 100_000


def rss_bytes() -> int:
    """The resident set of this process (``VmRSS`` in /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a forked process: each measurement starts from the same heap."""
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe(duplex=False)

    def target(conn: Connection) -> None:
        try:
            conn.send(("ok", fn(*args)))
        except BaseException as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            raise

    proc = ctx.Process(target=target, args=(theirs,))
    proc.start()
    theirs.close()
    try:
        status, value = ours.recv()
    finally:
        proc.join(600)
    if status != "ok":
        raise RuntimeError(f"memory measurement failed: {value}")
    return value


# -- half-finished EAP-TLS conversations -------------------------------------------------


class TlsServer:
    """A RADIUS core offering EAP-TLS 1.3, and the packets that start conversations."""

    def __init__(self, max_conversations: int) -> None:
        lb = lab("ec")
        self.eap = EapAccess(
            [tls_authenticator(server_config(lb, max_version=TlsVersion.TLS1_3))],
            max_conversations=max_conversations,
            client_share=1.0,  # one NAS holds them all (the default share is half)
            random=DeterministicRandom(7),
        )
        self.core = RadiusCore(
            ClientTable([Client.of(f"{NAS}/32", SECRET)]),
            self.eap,
            decisions=DecisionLog(io.StringIO()),
        )
        self._rand = DeterministicRandom(8)
        # One ClientHello serves every conversation: the server draws its own random and
        # key share for each, and a full handshake has no replay check.
        peer = TlsPeer(
            MethodContext(IDENTITY.encode()),
            TlsContext(peer_config(lb, max_version=TlsVersion.TLS1_3), TlsRole.PEER),
            None,
        )
        step = peer.receive(b"\x20")  # the Start flag (RFC 5216 §3.1)
        assert isinstance(step, Reply)
        self.client_hello = step.type_data

    def request(self, identifier: int, eap: bytes, state: bytes | None = None) -> bytes:
        attrs = [(Attr.USER_NAME, IDENTITY.encode()), *eap_message_attributes(eap)]
        if state is not None:
            attrs.append((Attr.STATE, state))
        return encode_request(
            Code.ACCESS_REQUEST,
            identifier & 0xFF,
            attrs,
            SECRET,
            authenticator=self._rand.random_bytes(16),
        )

    def first_requests(self, n: int) -> list[bytes]:
        identity = Identity(EapCode.RESPONSE, 0, IDENTITY.encode()).encode()
        return [self.request(i, identity) for i in range(n)]

    def open(self, packets: list[bytes], now: float, *, hello: bool) -> None:
        """Send each first Access-Request (the reply is an EAP-TLS Start) and, with
        ``hello``, the ClientHello that answers it; stop there."""
        handle = self.core.receive
        for i, raw in enumerate(packets):
            address = (NAS, 1024 + i)
            ident, state = _challenge(handle(raw, address, now))
            if hello:
                response = MethodData(EapCode.RESPONSE, ident, EapType.TLS, self.client_hello)
                _challenge(handle(self.request(i + 1, response.encode(), state), address, now))


def _challenge(handled: Handled) -> tuple[int, bytes]:
    """The EAP identifier and State of an Access-Challenge."""
    if not isinstance(handled, radius_core.Reply):
        raise AssertionError(f"no reply: {handled!r}")
    challenge = decode(handled.data)
    eap, state = challenge.eap_message(), challenge.get(Attr.STATE)
    if challenge.code != Code.ACCESS_CHALLENGE or eap is None or state is None:
        raise AssertionError(f"expected an Access-Challenge, got {challenge.code!r}")
    return eap_decode(eap).identifier, state


def _tls_growth(n: int, stage: str, heap: bool) -> float:
    """Bytes the server grew by while ``n`` conversations reached ``stage``.  Each
    conversation is taken to its stage before the next starts, so the packets made on
    the way are freed and reused rather than counted."""
    server = TlsServer(max_conversations=n)
    firsts = server.first_requests(n)
    gc.collect()
    if heap:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if heap else rss_bytes()
    server.open(firsts, NOW, hello=stage == "mid-handshake")
    del firsts
    gc.collect()
    assert server.eap.live == n
    after = tracemalloc.get_traced_memory()[0] if heap else rss_bytes()
    return after - before


def _bare_connections(n: int) -> float:
    """The floor: ``n`` bare pyOpenSSL ``Connection`` objects on the server's context."""
    ssl_context = TlsContext(
        server_config(lab("ec"), max_version=TlsVersion.TLS1_3), TlsRole.SERVER
    ).ssl_context
    gc.collect()
    before = rss_bytes()
    held = [SSL.Connection(ssl_context, None) for _ in range(n)]
    gc.collect()
    after = rss_bytes()
    assert len(held) == n
    return after - before


# -- enrolled TOTP users in SQLite -----------------------------------------------------------


def _db_size(path: Path) -> int:
    """The store's size on disk once its WAL is folded into the main file."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _user(i: int) -> str:
    return f"user{i:06d}@example.org"


def _secret(i: int) -> bytes:
    return DeterministicRandom(i).random_bytes(20)


def _sealer() -> Sealer:
    return Sealer({"bench": bytes(32)}, rand=DeterministicRandom(0))


def _enroll(n: int, path: Path) -> float:
    """Enroll ``n`` TOTP users into a new store at ``path``; its size on disk."""
    store = SqliteStore(path, durable=False)  # fsync does not change the size
    verifier = OtpVerifier(store, _sealer(), rand=DeterministicRandom(1))
    for i in range(n):
        verifier.enroll(_user(i), OtpCredential(_secret(i)), 0.0)
    store.close()
    return float(_db_size(path))


def _login(n: int, template: Path, heap: bool) -> tuple[float, float]:
    """Each of ``n`` users (in a copy of ``template``) logs in once: the growth of this
    process (RSS, or the Python heap with ``heap``) and the store's size afterwards."""
    step = int(NOW // 30)
    codes = [hotp(_secret(i), step) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / template.name
        path.write_bytes(template.read_bytes())
        store = SqliteStore(path, durable=False)
        verifier = OtpVerifier(store, _sealer(), rand=DeterministicRandom(1))
        gc.collect()
        if heap:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0] if heap else rss_bytes()
        for i, code in enumerate(codes):
            if not verifier.verify(_user(i), code, NOW).ok:
                raise AssertionError("an enrolled user's code was refused")
        del codes
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] if heap else rss_bytes()
        store.close()
        return float(after - before), float(_db_size(path))


def _totp_rows(n: int) -> list[Row]:
    scale = PER_USERS / n
    note = "" if n == PER_USERS else f" ({n:,} enrolled, scaled x{scale:g})"
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "eapkit.db"
        enrolled = _in_child(_enroll, n, template)
        rss, used = _in_child(_login, n, template, False)
        heap, _ = _in_child(_login, n, template, True)
    on_disk = "sealed secrets, WAL checkpointed" + note
    cached = "growth over each user's first verify" + note
    return [
        {
            "what": "SQLite file, 100k TOTP users enrolled",
            "bytes": enrolled * scale,
            "detail": on_disk,
        },
        {
            "what": "SQLite file, 100k TOTP users after one login each",
            "bytes": used * scale,
            "detail": on_disk,
        },
        {
            "what": "verifier with 100k users' credentials cached, RSS",
            "bytes": rss * scale,
            "detail": cached,
        },
        {
            "what": "verifier with 100k users' credentials cached, Python heap",
            "bytes": heap * scale,
            "detail": cached,
        },
    ]


def measure(quick: bool = False) -> list[Row]:
    """Rows of ``what`` (the quantity), ``bytes`` and ``detail`` (how it was measured)."""
    n_start, n_mid, n_users = (2_000, 500, 10_000) if quick else (10_000, 2_000, 100_000)
    rows: list[Row] = []
    for stage, n in (("after Start", n_start), ("mid-handshake", n_mid)):
        rss = _in_child(_tls_growth, n, stage, False) / n
        heap = _in_child(_tls_growth, n, stage, True) / n
        rows.append(
            {
                "what": f"EAP-TLS 1.3 conversation held {stage}, process RSS",
                "bytes": rss,
                "detail": f"per conversation, {n:,} held (OpenSSL included)",
            }
        )
        rows.append(
            {
                "what": f"EAP-TLS 1.3 conversation held {stage}, Python heap",
                "bytes": heap,
                "detail": f"per conversation, tracemalloc, {n:,} held",
            }
        )
        if stage == "mid-handshake":
            rows.append(
                {
                    "what": "floor: a bare pyOpenSSL Connection, process RSS",
                    "bytes": _in_child(_bare_connections, n_start) / n_start,
                    "detail": f"per connection, {n_start:,} held, same SSL context",
                }
            )
            rows.append(
                {
                    "what": "10,000 half-finished conversations (the default cap), RSS",
                    "bytes": 10_000 * rss,
                    "detail": "max_conversations x the mid-handshake figure",
                }
            )
    rows += _totp_rows(n_users)
    return rows


def human(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def main(argv: list[str]) -> None:
    rows = measure(quick="--quick" in argv)
    print(f"{'what':<66} {'size':>10}  how")
    for r in rows:
        print(f"{r['what']:<66} {human(r['bytes']):>10}  {r['detail']}")


if __name__ == "__main__":
    main(sys.argv[1:])
