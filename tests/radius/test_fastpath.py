"""A round that needs no check stays on the event loop (issue 21), a slow check still
cannot stall other clients, and a burst of inline-able rounds from one client cannot
starve the others (:mod:`eapkit.radius.front`, ``Front.inline_per_tick``).

In process: the core ``eapkit serve`` builds (EAP-MSCHAPv2 against a fresh SQLite
user file), a :class:`Front` with a :class:`FairPool`, eapkit's own peer as the NAS's
user.  Submissions to the pool are counted by wrapping ``FairPool.submit``.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eapkit.directory import LocalDirectory
from eapkit.methods.mschapv2 import mschapv2_peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius.clients import Client
from eapkit.radius.core import RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.fairpool import FairPool
from eapkit.radius.front import Front
from eapkit.radius.packet import (
    Attribute,
    Code,
    Packet,
    decode,
    eap_message_attributes,
    encode_request,
)
from eapkit.rand import DeterministicRandom
from eapkit.serve import ServeConfig, build_core
from eapkit.session import PeerSession, Send

SECRET_A, SECRET_B = b"secret-of-nas-a", b"secret-of-nas-b"
PASSWORD = "wonderland-pass"


class CountingPool(FairPool):
    """A FairPool that counts what it is given, per client."""

    def __init__(self, threads: int = 2) -> None:
        super().__init__(threads)
        self.submitted: dict[str, int] = {}

    def submit(self, client: str, run: Callable[[], None], expired: Callable[[], None]) -> bool:
        self.submitted[client] = self.submitted.get(client, 0) + 1
        return super().submit(client, run, expired)


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[LocalDirectory]:
    users = LocalDirectory(tmp_path / "users.db")
    for name in ("alice", "slow"):
        users.add(name, PASSWORD, nt_hash=True, iterations=1000)
    yield users
    users.close()


def _core(directory: LocalDirectory, tmp_path: Path, *, light: bool = False) -> RadiusCore:
    """The core of ``eapkit serve``; ``light=False``: without light rounds, as with an
    LDAP directory or a Redis store (test_light_rounds.py has them)."""
    cfg = ServeConfig()
    cfg.db = tmp_path / "users.db"
    cfg.methods = ["mschapv2"]
    cfg.clients = [
        Client.of("127.0.0.1", SECRET_A.decode(), "nas-a"),
        Client.of("127.0.0.2", SECRET_B.decode(), "nas-b"),
    ]
    core = build_core(cfg, directory, log_stream=io.StringIO(), warn=lambda _m: None)
    assert core.light_methods, "a local directory and store: light rounds on"
    if not light:
        core.light_methods = frozenset()
    return core


class Login:
    """One EAP-MSCHAPv2 login of ``user`` behind the NAS at ``host``."""

    def __init__(self, front: Front, host: str, secret: bytes, user: str, port: int) -> None:
        self.front, self.host, self.secret, self.port = front, host, secret, port
        self.user = user
        self.random = DeterministicRandom(port)
        self.peer = PeerSession([mschapv2_peer(PASSWORD)], user)
        action = self.peer.receive(Identity(EapCode.REQUEST, 0).encode())
        assert isinstance(action, Send)
        self.eap = action.packet
        self.state: bytes | None = None
        self.identifier = 0
        self.replies: list[Packet] = []

    def request(self) -> bytes:
        self.identifier += 1
        attributes: list[Attribute] = [
            (Attr.USER_NAME, self.user.encode()),
            *eap_message_attributes(self.eap),
            *([] if self.state is None else [(Attr.STATE, self.state)]),
        ]
        return encode_request(
            Code.ACCESS_REQUEST,
            self.identifier,
            attributes,
            self.secret,
            authenticator=self.random.random_bytes(16),
            message_authenticator=True,
        )

    def send(self, data: bytes | None = None) -> asyncio.Future[bytes]:
        """Send one round; the future has the reply's bytes."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def answer(reply: bytes) -> None:
            if not future.done():
                future.set_result(reply)

        self.front.receive(data or self.request(), (self.host, self.port), answer)
        return future

    def take(self, reply: bytes) -> Packet:
        """The reply to the last round: the peer's next Response is ready to send."""
        packet = decode(reply)
        self.replies.append(packet)
        if packet.code == Code.ACCESS_CHALLENGE:
            self.state = packet.get(Attr.STATE)
            action = self.peer.receive(packet.eap_message() or b"")
            assert isinstance(action, Send)
            self.eap = action.packet
        return packet

    async def run(self) -> Packet:
        for _ in range(6):
            packet = self.take(await asyncio.wait_for(self.send(), 10))
            if packet.code != Code.ACCESS_CHALLENGE:
                return packet
        raise AssertionError("the login did not end")


def test_a_round_that_needs_no_check_never_enters_the_pool(
    directory: LocalDirectory, tmp_path: Path
) -> None:
    """(a) The Identity round of EAP-MSCHAPv2 (its answer is the Challenge, RFC 2759 §4)
    runs inline: answered before ``receive`` returns, no pool submission; the round with
    the peer's Response (the NT hash read, the check) goes to the pool, and so does the
    acknowledgement of the Success (it ends the conversation: authorization)."""
    pool = CountingPool()
    front = Front(_core(directory, tmp_path), lambda: 1000.0, pool)

    async def scenario() -> None:
        login = Login(front, "127.0.0.1", SECRET_A, "alice", 40000)
        first = login.send()
        assert first.done(), "the Identity round was not answered inline"
        assert pool.submitted == {}
        login.take(first.result())
        second = login.send()
        assert not second.done()  # the check runs in the pool
        assert pool.submitted == {"nas-a": 1}
        login.take(await asyncio.wait_for(second, 10))
        third = login.take(await asyncio.wait_for(login.send(), 10))
        assert third.code == Code.ACCESS_ACCEPT
        assert pool.submitted == {"nas-a": 2} and front.inline == 1 and front.pooled == 2

    try:
        asyncio.run(scenario())
    finally:
        front.close()


def test_a_slow_directory_does_not_stall_other_clients(
    directory: LocalDirectory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(b) nas-a's check waits on the directory (the read of ``slow``'s record blocks);
    meanwhile nas-b's whole login (inline rounds and pooled ones) completes."""
    release, blocked = threading.Event(), threading.Event()
    get = directory.get

    def slow_get(name: str) -> object:
        if name == "slow":
            blocked.set()
            release.wait(10)
        return get(name)

    monkeypatch.setattr(directory, "get", slow_get)
    front = Front(_core(directory, tmp_path), lambda: 1000.0, CountingPool(threads=2))

    async def scenario() -> None:
        stuck = Login(front, "127.0.0.1", SECRET_A, "slow", 40001)
        stuck.take(await asyncio.wait_for(stuck.send(), 10))
        waiting = stuck.send()  # its Response: the check blocks in a pool thread
        assert await asyncio.to_thread(blocked.wait, 10)
        other = Login(front, "127.0.0.2", SECRET_B, "alice", 40002)
        assert (await asyncio.wait_for(other.run(), 10)).code == Code.ACCESS_ACCEPT
        assert not waiting.done()
        release.set()
        stuck.take(await asyncio.wait_for(waiting, 10))
        assert (await asyncio.wait_for(stuck.run(), 10)).code == Code.ACCESS_ACCEPT

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        front.close()


def test_a_burst_of_inline_rounds_from_one_client_does_not_starve_another(
    directory: LocalDirectory, tmp_path: Path
) -> None:
    """(c) nas-a delivers 60 Identity rounds in one loop iteration (as RadSec does
    when one read holds many records); only ``inline_per_tick`` of them run inline,
    the rest queue in the pool behind the other clients.  nas-b's round, right behind
    the burst, is still answered inline, before nas-a's pooled rounds; in the next
    iteration nas-a has a fresh share."""
    pool = CountingPool(threads=1)
    front = Front(_core(directory, tmp_path), lambda: 1000.0, pool, inline_per_tick=4)

    async def scenario() -> None:
        burst = [Login(front, "127.0.0.1", SECRET_A, "alice", 41000 + i) for i in range(60)]
        futures = [login.send() for login in burst]
        other = Login(front, "127.0.0.2", SECRET_B, "alice", 40003)
        answered = other.send()
        assert answered.done(), "nas-b waited behind nas-a's burst"
        assert sum(f.done() for f in futures) == 4
        assert pool.submitted == {"nas-a": 56}
        await asyncio.sleep(0)  # the next loop iteration: shares start afresh
        later = Login(front, "127.0.0.1", SECRET_A, "alice", 42000).send()
        assert later.done()
        replies = await asyncio.wait_for(asyncio.gather(*futures), 10)
        assert all(decode(r).code == Code.ACCESS_CHALLENGE for r in replies)

    try:
        asyncio.run(scenario())
    finally:
        front.close()
