"""Worker processes on one port: the steering decision (in Python and in the kernel's
BPF program), the forwarding channel, and two worker fronts handing each other the
rounds that reach the wrong one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.credentials import PasswordThenCode, Verdict
from eapkit.errors import DecodeError
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.nas import RadiusClient, authenticate
from eapkit.radius.packet import Code, Packet, decode, encode_request, new_request_authenticator
from eapkit.radius.pap import PapAccess
from eapkit.radius.steering import (
    STATE_MARKER,
    STEER_STEPS,
    attach_steering,
    state_prefix,
    steer,
    steering_program,
)
from eapkit.radius.workers import (
    WorkerFront,
    bind_group,
    decode_forward,
    encode_forward,
    set_owner,
)
from eapkit.session import PeerSession
from eapkit.testing import InMemoryPasswords

SECRET = b"workers-secret"


def _request(attrs: Sequence[tuple[int, bytes]], ident: int = 1) -> bytes:
    return encode_request(Code.ACCESS_REQUEST, ident, attrs, SECRET, message_authenticator=True)


# -- the decision ---------------------------------------------------------------------


def test_state_names_its_worker_wherever_it_sits() -> None:
    for owner in range(3):
        state = state_prefix(owner) + os.urandom(16)
        for before in (0, 1, 7, STEER_STEPS - 2):
            attrs = [(Attr.NAS_PORT, b"\x00\x00\x00\x01")] * before + [(Attr.STATE, state)]
            assert steer(_request(attrs), 3) == owner


def test_without_our_state_the_request_authenticator_decides() -> None:
    foreign = [(Attr.STATE, b"\x01\x02" + os.urandom(16))]  # another server's State
    beyond = [(Attr.STATE, state_prefix(7) + os.urandom(16))]  # worker 7 of 3?
    late = [(Attr.NAS_PORT, b"\x00\x00\x00\x01")] * STEER_STEPS + [
        (Attr.STATE, state_prefix(1) + os.urandom(16))
    ]
    for attrs in ([], foreign, beyond, late, [(Attr.STATE, bytes([STATE_MARKER]))]):
        wire = _request(attrs)
        assert steer(wire, 3) == wire[4] % 3


@given(st.binary(max_size=600), st.integers(1, 255))
def test_steer_takes_any_bytes(data: bytes, workers: int) -> None:
    assert 0 <= steer(data, workers) < workers


def test_program_jumps_stay_inside_it() -> None:
    for workers in (1, 2, 255):
        prog = steering_program(workers)
        assert len(prog) <= 4096  # the kernel's limit for classic BPF
        for at, (code, jt, jf, k) in enumerate(prog):
            if code & 0x07 == 0x05:  # a jump
                targets = [at + 1 + k] if code == 0x05 else [at + 1 + jt, at + 1 + jf]
                assert all(at < t < len(prog) for t in targets)
        assert prog[-1][0] == 0x16  # ret A


@given(st.integers(0, 255), st.tuples(st.text(max_size=60), st.integers(0, 65535)), st.binary())
def test_forward_round_trip(index: int, addr: tuple[str, int], data: bytes) -> None:
    host = addr[0].encode("ascii", "ignore").decode()
    assert decode_forward(encode_forward(index, (host, addr[1]), data)) == (
        index,
        (host, addr[1]),
        data,
    )


@given(st.binary(max_size=300))
def test_forward_decoder_takes_any_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        index, (host, port), rest = decode_forward(data)
        assert encode_forward(index, (host, port), rest) == data


# -- the kernel agrees ----------------------------------------------------------------


@pytest.fixture(scope="module")
def steered_group() -> Iterator[tuple[list[socket.socket], socket.socket]]:
    group = bind_group("127.0.0.1", 0, 3)
    if not attach_steering(group[0], 3):
        for s in group:
            s.close()
        pytest.skip("this kernel refuses SO_ATTACH_REUSEPORT_CBPF")
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(group[0].getsockname())
    yield group, sender
    sender.close()
    for s in group:
        s.close()


def _landing(group: list[socket.socket], sender: socket.socket, data: bytes) -> int:
    sender.send(data)
    readable, _, _ = select.select(group, [], [], 2.0)
    assert len(readable) == 1, "the datagram should reach exactly one worker socket"
    got = readable[0].recv(65535)
    assert got == data
    return group.index(readable[0])


_values = st.binary(max_size=20)
_attribute = st.tuples(st.integers(1, 255).filter(lambda t: t != Attr.STATE), _values)
_states = st.one_of(
    st.tuples(st.integers(0, 5), st.binary(max_size=16)).map(lambda w: state_prefix(w[0]) + w[1]),
    st.binary(max_size=20),
)


@given(
    st.lists(_attribute, max_size=STEER_STEPS + 4),
    st.none() | _states,
    st.integers(0, STEER_STEPS + 4),
)
def test_kernel_steers_requests_as_steer_says(
    steered_group: tuple[list[socket.socket], socket.socket],
    attrs: list[tuple[int, bytes]],
    state: bytes | None,
    position: int,
) -> None:
    group, sender = steered_group
    if state is not None:
        attrs = [*attrs[:position], (Attr.STATE, state), *attrs[position:]]
    body = b"".join(bytes((t, len(v) + 2)) + v for t, v in attrs)
    wire = bytes((1, 7)) + (20 + len(body)).to_bytes(2, "big") + os.urandom(16) + body
    assert _landing(group, sender, wire) == steer(wire, 3)


@given(st.binary(max_size=400))
def test_kernel_steers_any_datagram_as_steer_says(
    steered_group: tuple[list[socket.socket], socket.socket], data: bytes
) -> None:
    group, sender = steered_group
    assert _landing(group, sender, data) == steer(data, 3)


# -- two fronts, no kernel steering: forwarding keeps rounds with their owner ---------


def _core(index: int) -> RadiusCore:
    used: set[str] = set()

    def code(user: str, value: str, now: float, /) -> Verdict:
        if value != "424242" or (user + value) in used:
            return Verdict.reject("bad_code")
        used.add(user + value)
        return Verdict.accept(user)

    passwords = InMemoryPasswords({f"user{i}": "wonderland" for i in range(40)})
    log = DecisionLog(open(os.devnull, "w"))  # noqa: SIM115
    log.records = []
    core = RadiusCore(
        ClientTable([Client.of("127.0.0.0/8", SECRET)]),
        EapAccess([gtc_authenticator(passwords)]),
        plain=PapAccess(PasswordThenCode(passwords, code, lambda u: True)),
        decisions=log,
    )
    set_owner(core, index)
    return core


async def _exchange(server: tuple[str, int], wire: bytes) -> Packet:
    """One request from a new UDP socket (a new source port), one reply."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.connect(server)
        await loop.sock_sendall(s, wire)
        return decode(await asyncio.wait_for(loop.sock_recv(s, 4096), 2.0))


def _pap(user: str, password: str, state: bytes | None = None) -> bytes:
    authenticator = new_request_authenticator()
    attrs = [
        (Attr.USER_NAME, user.encode()),
        (Attr.USER_PASSWORD, hide_password(password.encode(), SECRET, authenticator)),
    ]
    if state is not None:
        attrs.append((Attr.STATE, state))
    return encode_request(
        Code.ACCESS_REQUEST,
        1,
        attrs,
        SECRET,
        authenticator=authenticator,
        message_authenticator=True,
    )


async def _pap_with_challenge(server: tuple[str, int], user: str) -> int:
    """RFC 2865 challenge-response, each request from a new source port."""
    first = await _exchange(server, _pap(user, "wonderland"))
    assert first.code == Code.ACCESS_CHALLENGE
    state = first.get(Attr.STATE)
    assert state is not None and state[:1] == bytes([STATE_MARKER])
    return (await _exchange(server, _pap(user, "424242", state))).code


def test_two_fronts_forward_rounds_to_their_owner() -> None:
    async def scenario() -> tuple[list[WorkerFront], list[bool], list[int]]:
        group = bind_group("127.0.0.1", 0, 2)  # no BPF: the kernel hashes the 4-tuple
        channels = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(2)]
        fronts = [
            WorkerFront(_core(i), i, 2, [group[i]], channels[i][0], [b for _, b in channels])
            for i in range(2)
        ]
        stop = asyncio.Event()
        ready = asyncio.Event()
        count = 0

        def one_ready() -> None:
            nonlocal count
            count += 1
            if count == 2:
                ready.set()

        tasks = [asyncio.create_task(f.run(stop, one_ready)) for f in fronts]
        await asyncio.wait_for(ready.wait(), 5)
        server = group[0].getsockname()

        async def gtc(user: str, password: str) -> bool:
            async with RadiusClient(server, SECRET, timeout=2.0, fresh_socket=True) as client:
                peer = PeerSession([gtc_peer(lambda prompt: password)], user)
                return (await authenticate(client, peer)).accepted

        try:
            eap = await asyncio.gather(
                *(gtc(f"user{i}", "wonderland" if i % 5 else "guess") for i in range(30))
            )
            pap = [await _pap_with_challenge(server, f"user{i}") for i in range(10)]
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for a, b in channels:
                a.close()
                b.close()
        return fronts, eap, pap

    fronts, eap, pap = asyncio.run(scenario())
    assert eap == [bool(i % 5) for i in range(30)]
    assert pap == [Code.ACCESS_ACCEPT] * 10
    a, b = (f.stats for f in fronts)
    # Half the datagrams reach the wrong worker: they were handed over, not lost.
    assert a.forwarded > 0 and b.forwarded > 0
    assert (a.forwarded, b.forwarded) == (b.taken, a.taken)
    assert a.dropped == b.dropped == 0
    # Every conversation ended at its owner, and both owned some.
    for i, front in enumerate(fronts):
        records = front.core.decisions.records or []
        assert records and all(r["worker"] == i for r in records)
    results = [r["result"] for f in fronts for r in f.core.decisions.records or []]
    assert results.count("accept") == 24 + 10 and results.count("reject") == 6


def test_pap_challenge_state_names_the_worker() -> None:
    core = _core(1)
    assert isinstance(core.plain, PapAccess)
    assert core.plain.state_prefix == state_prefix(1)
    assert core.eap is not None and core.eap.state_prefix == state_prefix(1)
