"""Light tunnel rounds (issue 21): with local backends, the rounds of an EAP-TTLS or PEAP
conversation that can reach no password check run on the event loop like EAP-TLS's
(:meth:`RadiusCore.light` → :meth:`AuthenticatorSession.light` → the tunnel's own
``light``), and every round that may reach one (TTLS AVPs, an inner GTC Response) still
goes to the pool: a PBKDF2 (31 ms at the default cost) must never hold the loop.

The promise is checked on real conversations (eapkit's peer, TLS 1.2 and 1.3, small
fragments, resumption, and a peer that cuts its TLS records across EAP messages) by
counting ``hashlib.pbkdf2_hmac`` calls in each round the core says is light, and
property-tested on :class:`~eapkit.tlsio.records.RecordBoundary`, which decides from
the record headers in the clear whether a flight may carry tunnel data.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit import pki
from eapkit.directory import LocalDirectory
from eapkit.packet import Code as EapCode
from eapkit.packet import EapType, Identity, MethodData, decode_frame
from eapkit.probe import ProbeOptions, build_peer_methods
from eapkit.radius.clients import Client
from eapkit.radius.core import Admitted, RadiusCore, Reply
from eapkit.radius.dictionary import Attr
from eapkit.radius.front import Front
from eapkit.radius.packet import Attribute, Code, decode, eap_message_attributes, encode_request
from eapkit.rand import DeterministicRandom
from eapkit.serve import ServeConfig, build_core
from eapkit.session import PeerSession, Send
from eapkit.tlsio import SessionCache
from eapkit.tlsio.framing import Fragment
from eapkit.tlsio.records import APPLICATION_DATA, HANDSHAKE, RecordBoundary
from tests.radius.test_fastpath import CountingPool

SECRET = b"secret-of-nas-a"
PASSWORD = "wonderland-pass"
NAS = ("127.0.0.1", 40100)
_SEEDS = itertools.count(21)  # fresh Request Authenticators for every conversation


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiFiles:
    import datetime as dt

    return pki.write_pki(
        tmp_path_factory.mktemp("pki"),
        now=dt.datetime.now(dt.UTC),
        ca_name="light CA",
        server_names=["radius.light.test"],
    )


@contextmanager
def _counting_pbkdf2() -> Iterator[list[int]]:
    """One entry per ``hashlib.pbkdf2_hmac`` call (every stored-password check)."""
    calls: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counted(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    with mock.patch.object(hashlib, "pbkdf2_hmac", counted):
        yield calls


@pytest.fixture
def pbkdf2_calls() -> Iterator[list[int]]:
    with _counting_pbkdf2() as calls:
        yield calls


def _core(tmp_path: Path, p: pki.PkiFiles, method: str) -> RadiusCore:
    """The core ``eapkit serve`` builds over a fresh SQLite user file: light rounds on."""
    users = LocalDirectory(tmp_path / "users.db")
    users.add("alice", PASSWORD, nt_hash=True, iterations=1000)
    cfg = ServeConfig()
    cfg.db = tmp_path / "users.db"
    cfg.methods = [method]
    cfg.tls.cert, cfg.tls.key, cfg.tls.ca = p.server_cert, p.server_key, p.ca
    cfg.clients = [Client.of(NAS[0], SECRET.decode(), "nas-a")]
    core = build_core(cfg, users, log_stream=io.StringIO(), warn=lambda _m: None)
    assert core.light_methods, "a local directory and store: light rounds on"
    return core


def _peer(p: pki.PkiFiles, method: str, tls: str, **extra: Any) -> ProbeOptions:
    return ProbeOptions(
        server=NAS,
        secret=SECRET,
        identity="alice",
        password=PASSWORD,
        method=method,
        tls=tls,
        ca=p.ca,
        **extra,
    )


@dataclass
class Round:
    light: bool
    pbkdf2: int
    code: int


@dataclass
class Conversation:
    """Drives one login through ``core`` round by round (no front), recording for each
    round whether the core called it light and how many PBKDF2s it ran."""

    core: RadiusCore
    calls: list[int]
    rounds: list[Round] = field(default_factory=list)
    identifier: int = 0
    random: DeterministicRandom = field(default_factory=lambda: DeterministicRandom(next(_SEEDS)))

    def send(self, eap: bytes, state: bytes | None) -> Any:
        self.identifier = (self.identifier + 1) & 0xFF
        attributes: list[Attribute] = [
            (Attr.USER_NAME, b"alice"),
            *eap_message_attributes(eap),
            *([] if state is None else [(Attr.STATE, state)]),
        ]
        data = encode_request(
            Code.ACCESS_REQUEST,
            self.identifier,
            attributes,
            SECRET,
            authenticator=self.random.random_bytes(16),
            message_authenticator=True,
        )
        now = time.time()
        admitted = self.core.admit(data, NAS, now)
        assert isinstance(admitted, Admitted)
        light = self.core.light(admitted)
        before = len(self.calls)
        handled = self.core.run(admitted, now)
        assert isinstance(handled, Reply)
        reply = decode(handled.data)
        self.rounds.append(Round(light, len(self.calls) - before, reply.code))
        return reply

    def login(
        self,
        peer: PeerSession,
        cut: Callable[[bytes], list[bytes]] | None = None,
    ) -> int:
        """One login to its end; ``cut`` may send a peer's Response as several."""
        action = peer.receive(Identity(EapCode.REQUEST, 0).encode())
        state: bytes | None = None
        for _ in range(60):
            assert isinstance(action, Send)
            packets = cut(action.packet) if cut is not None else [action.packet]
            reply = self.send(packets[0], state)
            for part in packets[1:]:  # each answers the server's Request to the one before
                if reply.code != Code.ACCESS_CHALLENGE:
                    break  # the server ended it at the part before
                state = reply.get(Attr.STATE)
                asked = reply.eap_message() or b""
                reply = self.send(part[:1] + asked[1:2] + part[2:], state)
            if reply.code != Code.ACCESS_CHALLENGE:
                peer.receive(reply.eap_message() or b"")  # the Success or Failure
                return int(reply.code)
            state = reply.get(Attr.STATE)
            action = peer.receive(reply.eap_message() or b"")
        raise AssertionError("the conversation did not end")

    def assert_no_light_round_checked_a_password(self) -> None:
        for n, r in enumerate(self.rounds):
            assert not (r.light and r.pbkdf2), f"round {n} ran a PBKDF2 on the event loop"


@dataclass(frozen=True)
class Case:
    server: str  # eapkit serve's method
    method: str  # the peer's, with its inner method
    tls: str
    least: int  # light rounds at least, in a first login
    password: bool  # a PBKDF2 is due (inner PAP or GTC)

    def __str__(self) -> str:
        return f"{self.method}-{self.tls}"


CASES = [
    Case("ttls", "ttls-pap", "1.2", 2, True),
    Case("ttls", "ttls-pap", "1.3", 2, True),
    Case("ttls", "ttls-eap-mschapv2", "1.2", 3, False),
    Case("ttls", "ttls-gtc", "1.3", 2, True),
    Case("peap", "peap-mschapv2", "1.2", 6, False),
    Case("peap", "peap-mschapv2", "1.3", 4, False),
    Case("peap", "peap-gtc", "1.2", 4, True),
]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("fragment_size", [None, 200])
def test_light_tunnel_rounds_reach_no_password_check(
    tmp_path: Path,
    certificates: pki.PkiFiles,
    pbkdf2_calls: list[int],
    case: Case,
    fragment_size: int | None,
) -> None:
    """Every round the core runs light does no PBKDF2; the handshake (and PEAP's phase
    2 with inner MS-CHAPv2) is light; the round that checks a password is not.  Two
    logins, the second resuming the first's TLS session where the server allows it."""
    core = _core(tmp_path, certificates, case.server)
    opts = _peer(certificates, case.method, case.tls, fragment_size=fragment_size, reauth=1)
    methods = build_peer_methods(opts, SessionCache())  # built once: the cache resumes
    logins = []
    for _ in range(2):
        conv = Conversation(core, pbkdf2_calls)
        peer = PeerSession(methods, "alice")
        assert conv.login(peer) == Code.ACCESS_ACCEPT
        conv.assert_no_light_round_checked_a_password()
        logins.append(conv.rounds)
        assert peer.result is not None and peer.result.outcome is not None
        resumed = peer.result.outcome.attributes.get("tls_resumed")
    first, again = logins
    assert sum(r.light for r in first) >= case.least, first
    assert sum(r.pbkdf2 for r in first) == (1 if case.password else 0)
    assert resumed == "yes" and not any(r.pbkdf2 for r in again)


def _cut_at(offset: int, times: int) -> Callable[[bytes], list[bytes]]:
    """Sends the first ``times`` unfragmented TLS messages of the peer as two EAP
    Responses each, the TLS bytes cut at ``offset``: a TLS record may then begin in one
    Response and end in the next (nothing in RFC 5216 stops a peer from doing so)."""

    fragmented = False  # the peer's last Response said more fragments follow

    def cut(packet: bytes) -> list[bytes]:
        nonlocal fragmented, times
        msg, _ = decode_frame(packet)
        if not isinstance(msg, MethodData) or msg.type not in (EapType.TTLS, EapType.PEAP):
            return [packet]
        frag = Fragment.decode(msg.type_data)
        whole, fragmented = not (fragmented or frag.more), frag.more
        if not whole or frag.length is not None or len(frag.data) <= offset or not times:
            return [packet]
        times -= 1
        return [
            MethodData(
                msg.code, msg.identifier, msg.type, replace(frag, data=part).encode()
            ).encode()
            for part in (frag.data[:offset], frag.data[offset:])
        ]

    return cut


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(CASES),
    st.one_of(st.none(), st.integers(64, 1400)),
    st.one_of(st.integers(1, 8), st.integers(9, 300)),
    st.sampled_from([1, 99]),
)
def test_records_cut_across_responses_never_run_a_password_check_light(
    certificates: pki.PkiFiles,
    case: Case,
    fragment_size: int | None,
    offset: int,
    times: int,
) -> None:
    """A peer that cuts its TLS records (headers included) across EAP Responses: no
    round the core called light ran a PBKDF2 (after a header cut in two the record
    boundary is lost: no handshake round is light from then on).  With tunnel data cut
    in two it ends in a Reject (``empty Response where AVPs were due``, ``no inner
    message in the tunnel``); an Accept has its one password check."""
    opts = _peer(certificates, case.method, case.tls, fragment_size=fragment_size)
    with tempfile.TemporaryDirectory() as work, _counting_pbkdf2() as calls:
        conv = Conversation(_core(Path(work), certificates, case.server), calls)
        code = conv.login(PeerSession(build_peer_methods(opts), "alice"), _cut_at(offset, times))
    conv.assert_no_light_round_checked_a_password()
    assert code in (Code.ACCESS_ACCEPT, Code.ACCESS_REJECT)
    if code == Code.ACCESS_ACCEPT:
        assert sum(r.pbkdf2 for r in conv.rounds) == (1 if case.password else 0)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("offset", [1, 3, 5, 6, 40])
def test_a_handshake_flight_cut_in_two_still_logs_in(
    tmp_path: Path, certificates: pki.PkiFiles, pbkdf2_calls: list[int], case: Case, offset: int
) -> None:
    """The peer's first whole TLS message after its (fragmented) ClientHello is its
    second handshake flight: cut in two, at a header octet or in a body, the login
    still succeeds, with its one password check, never on the loop."""
    conv = Conversation(_core(tmp_path, certificates, case.server), pbkdf2_calls)
    peer = PeerSession(build_peer_methods(_peer(certificates, case.method, case.tls)), "alice")
    assert conv.login(peer, _cut_at(offset, 1)) == Code.ACCESS_ACCEPT
    conv.assert_no_light_round_checked_a_password()
    assert sum(r.pbkdf2 for r in conv.rounds) == (1 if case.password else 0)


@pytest.mark.parametrize(
    ("server", "method", "tls", "pooled"),
    [
        ("ttls", "ttls-pap", "1.2", 1),  # the AVPs: a PBKDF2
        ("ttls", "ttls-pap", "1.3", 2),  # the client's Finished (outer type 23), the AVPs
        ("peap", "peap-mschapv2", "1.2", 0),
        ("peap", "peap-gtc", "1.2", 1),  # the GTC Response: a PBKDF2
    ],
)
def test_a_front_runs_light_tunnel_rounds_on_its_loop(
    tmp_path: Path, certificates: pki.PkiFiles, server: str, method: str, tls: str, pooled: int
) -> None:
    """Through a :class:`Front`: only the rounds that may check a password reach the
    pool; the others are answered before ``receive`` returns."""
    from tests.radius.test_fastpath import SECRET_A, Login

    assert SECRET_A == SECRET
    pool = CountingPool()
    # routing is under test, not the stall pause: a cold first handshake (certificate
    # files, OpenSSL's first context) may take over 10 ms and wait for the disk
    front = Front(_core(tmp_path, certificates, server), lambda: 1000.0, pool, light_budget=5.0)

    async def scenario() -> None:
        login = Login(front, NAS[0], SECRET, "alice", NAS[1])
        login.peer = PeerSession(build_peer_methods(_peer(certificates, method, tls)), "alice")
        login.peer.receive(Identity(EapCode.REQUEST, 0).encode())
        for _ in range(20):
            reply = login.take(await asyncio.wait_for(login.send(), 10))
            if reply.code != Code.ACCESS_CHALLENGE:
                break
        assert reply.code == Code.ACCESS_ACCEPT

    try:
        asyncio.run(scenario())
    finally:
        front.close()
    assert pool.submitted.get("nas-a", 0) == pooled
    assert front.light >= 2 and front.light_pauses == 0


def _records(stream: bytes) -> list[int]:
    """The ContentType of the record each octet of ``stream`` belongs to, reading the
    headers from the start; -1 for octets after a header cut short."""
    owner: list[int] = []
    pos = 0
    while pos < len(stream):
        if pos + 5 > len(stream):
            owner += [-1] * (len(stream) - pos)
            break
        size = 5 + int.from_bytes(stream[pos + 3 : pos + 5], "big")
        owner += [stream[pos]] * min(size, len(stream) - pos)
        pos += size
    return owner


@st.composite
def _peer_bytes(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """Records, some of whose bodies hold more records (a peer controls the bytes of
    its application_data: it has the keys), and the offset of every header octet at any
    depth: where a cut can make a misread boundary show "handshake records" inside an
    application_data record.  The version octets may look like a ContentType too."""

    def records(depth: int) -> tuple[bytes, list[int]]:
        out = bytearray()
        marks: list[int] = []
        for _ in range(draw(st.integers(0, 3))):
            inner: list[int] = []
            if depth < 2 and draw(st.booleans()):
                body, inner = records(depth + 1)
            else:
                body = draw(st.binary(max_size=12))
            kind = draw(st.sampled_from([20, 21, 22, 23, 24, 0]))
            version = draw(st.sampled_from([b"\x03\x03", b"\x16\x03", b"\x17\x16"]))
            marks += [len(out) + k for k in range(6)] + [len(out) + 5 + m for m in inner]
            out += bytes([kind]) + version + len(body).to_bytes(2, "big") + body
        return bytes(out), marks

    return records(0)


@settings(max_examples=300)
@given(st.one_of(_peer_bytes(), st.binary(max_size=300).map(lambda b: (b, []))), st.data())
def test_record_boundary_says_no_only_when_no_application_data_comes(
    peer_bytes: tuple[bytes, list[int]], data: st.DataObject
) -> None:
    """Soundness: whatever the peer sends (records, or arbitrary bytes) and wherever it
    cuts them into messages, a message said to hold no application data holds only
    octets of change_cipher_spec, alert and handshake records."""
    stream, marks = peer_bytes
    owner = _records(stream)
    anywhere = st.integers(1, max(1, len(stream)))
    cut = st.one_of(st.sampled_from(marks), anywhere) if marks else anywhere
    cuts = data.draw(st.lists(cut, max_size=6))
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(stream)}), len(stream)]
    tracker = RecordBoundary()
    for start, end in itertools.pairwise(bounds):
        message = stream[start:end]
        if not tracker.holds_application_data(message):
            assert all(owner[i] in (20, 21, HANDSHAKE) for i in range(start, end))
        tracker.feed(message)


@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from([20, 21, 22]), st.binary(max_size=60)),
            min_size=1,
            max_size=4,
        ),
        max_size=5,
    )
)
def test_whole_handshake_flights_hold_no_application_data(
    flights: list[list[tuple[int, bytes]]],
) -> None:
    """Completeness where it matters: flights of whole change_cipher_spec, alert and
    handshake records, each in its own message, are all said to hold none."""
    tracker = RecordBoundary()
    for flight in flights:
        message = b"".join(bytes([t, 3, 3]) + len(b).to_bytes(2, "big") + b for t, b in flight)
        assert not tracker.holds_application_data(message)
        tracker.feed(message)
        assert not tracker.lost


def test_a_header_cut_in_two_loses_the_boundary_for_good() -> None:
    tracker = RecordBoundary()
    hello = bytes([HANDSHAKE, 3, 3, 0, 2, 1, 0])
    tracker.feed(hello[:3])
    assert tracker.lost and tracker.holds_application_data(hello[3:])
    tracker.feed(hello[3:])
    assert tracker.holds_application_data(hello)  # even a whole record: no trust again
    assert tracker.holds_application_data(bytes([APPLICATION_DATA, 3, 3, 0, 0]))
