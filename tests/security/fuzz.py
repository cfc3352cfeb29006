"""A fuzzer for a running RADIUS/EAP server, past the first round.

Each *case* is one conversation.  eapkit's own peer (:class:`~eapkit.session.PeerSession`
and the catalog's peer methods) runs a real login to a round picked at random; from there
on, the Access-Requests keep valid RADIUS framing (RFC 2865 §3 Request Authenticator,
RFC 3579 §3.2 Message-Authenticator under the client's secret, the conversation's State)
but carry a mutated EAP packet:

- EAP header (RFC 3748 §4): wrong Code, Identifier, Length; truncated or overlong
  Type-Data; other Types, Nak lists (§5.3.1), Expanded Types and Expanded Naks (§5.7);
- TLS framing (RFC 5216 §3.1, RFC 5281 §9.1): L/M/S flags, TLS Message Length, fragments
  that lie, acknowledgements out of turn;
- TLS records (RFC 8446 §5.1): bit flips, record length, content type and version, extra
  records after the handshake;
- inside a tunnel (TTLS AVPs, RFC 5281 §10; PEAP's inner EAP and TLVs): the peer's
  plaintext is mutated before the peer's own TLS connection encrypts it, so the server
  decrypts it and parses garbage;
- State (RFC 2865 §5.24): unknown, missing, or another conversation's;
- EAP-Message split at odd attribute boundaries (RFC 3579 §3.1: still valid).

Every request the fuzzer sends is paced: the next one goes only when the server has
dealt with it, shown by its reply or, for a request it answers with silence, by the
``dropped`` or ``discarded`` line it writes to the decision log (read as it grows,
:class:`DecisionTail`).  A Status-Server (RFC 5997) barrier would not do: the server
answers Status-Server on its receiving thread at once, while Access-Requests wait their
turn in the fair pool.  The ledger counts every datagram and every reply, so the test can
check that each unanswered request left exactly one such line.

Decisions are taken by :class:`random.Random` seeded per case (``seed``), so a failing case
is printed with the seed that replays its mutations (TLS randomness is OpenSSL's own).
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eapkit.methods.base import MethodFactory, Peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.probe import ProbeOptions, build_peer_methods
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import (
    Attribute,
    Code,
    Packet,
    decode,
    encode_request,
    new_request_authenticator,
)
from eapkit.session import PeerSession, Send
from tests.security.mutations import mutate, mutate_plaintext

__all__ = ["PEER_METHODS", "Fuzzer", "Ledger", "NasLink", "eap_attributes"]

# What the peer says it is, for each case: catalog peer names (eapkit probe --method).
PEER_METHODS = (
    "tls",
    "ttls-pap",
    "ttls-mschapv2",
    "ttls-eap-mschapv2",
    "ttls-gtc",
    "peap-mschapv2",
    "peap-gtc",
    "mschapv2",
    "gtc",
)
# EAP-Message attributes within a request of at most 4,096 octets (RFC 2865 §3): the
# header, Message-Authenticator, User-Name and State take the rest
EAP_BUDGET = 3950


# -- the NAS side: valid framing, paced, counted -------------------------------------------------


@dataclass
class Ledger:
    """What was sent and what came back."""

    sent: int = 0  # Access-Requests (legitimate and mutated)
    mutated: int = 0
    replied: int = 0
    barriers: int = 0
    barrier_replies: int = 0
    by_mutation: dict[str, int] = field(default_factory=dict)
    by_reply: dict[str, int] = field(default_factory=dict)

    @property
    def datagrams(self) -> int:
        return self.sent + self.barriers

    @property
    def unanswered(self) -> int:
        return self.sent - self.replied


class DecisionTail:
    """The ``dropped``/``discarded`` lines of a decision log, counted as the file grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.silent = 0

    def poll(self) -> int:
        """Read what was appended; the number of silent-request lines so far."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.silent
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if b'"event":"dropped"' in line or b'"event":"discarded"' in line:
                self.silent += 1
        return self.silent


class NasLink:
    """One UDP socket to the server, as a NAS: Access-Requests with Message-Authenticator,
    each followed by a Status-Server barrier when its reply is slow."""

    def __init__(
        self,
        server: tuple[str, int],
        secret: bytes,
        *,
        timeout: float = 10.0,
        decisions: DecisionTail | None = None,
    ) -> None:
        self.server = server
        self.decisions = decisions
        self.secret = secret
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(server)
        self.ledger = Ledger()
        self._next = 0
        self._pending: dict[int, tuple[bytes, bool]] = {}  # id -> (authenticator, barrier)
        self._got: dict[int, Packet] = {}

    def close(self) -> None:
        self.sock.close()

    def _send(self, code: int, attrs: list[Attribute], authenticator: bytes | None = None) -> int:
        ident = self._next
        self._next = (self._next + 1) & 0xFF
        self._pending.pop(ident, None)  # an old request never answered
        self._got.pop(ident, None)
        auth = authenticator or new_request_authenticator()
        self.sock.send(encode_request(code, ident, attrs, self.secret, authenticator=auth))
        self._pending[ident] = (auth, code == Code.STATUS_SERVER)
        return ident

    def _read(self, wait: float) -> None:
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(8192)
        except TimeoutError:
            return
        reply = decode(data)
        entry = self._pending.get(reply.identifier)
        if entry is None:
            return
        auth, barrier = entry
        assert reply.verify_response_authenticator(self.secret, auth), "forged reply"
        del self._pending[reply.identifier]
        if barrier:
            self.ledger.barrier_replies += 1
        else:
            self.ledger.replied += 1
            try:
                name = Code(reply.code).name
            except ValueError:
                name = str(reply.code)
            self.ledger.by_reply[name] = self.ledger.by_reply.get(name, 0) + 1
        self._got[reply.identifier] = reply

    def request(
        self, attrs: list[Attribute], *, authenticator: bytes | None = None
    ) -> Packet | None:
        """Send one Access-Request; its reply, or None when the server dealt with it
        (a Status-Server sent after it was answered first) and sent nothing."""
        silent = self.decisions.poll() if self.decisions is not None else 0
        ident = self._send(Code.ACCESS_REQUEST, attrs, authenticator)
        self.ledger.sent += 1
        self._read(0.02)
        if ident in self._got:
            return self._got.pop(ident)
        if self.decisions is not None:  # the reply, or the line saying there is none
            deadline = time.monotonic() + self.timeout
            while ident not in self._got and self.decisions.poll() == silent:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no reply and no decision line from {self.server}")
                self._read(0.005)
            return self._got.pop(ident, None)
        barrier = self._send(Code.STATUS_SERVER, [])
        self.ledger.barriers += 1
        while barrier in self._pending:
            before = len(self._pending)
            self._read(self.timeout)
            if len(self._pending) == before and barrier in self._pending:
                raise TimeoutError(f"no answer to Status-Server from {self.server}")
        return self._got.pop(ident, None)

    def pap(self, user: str, password: str) -> Packet | None:
        auth = new_request_authenticator()
        attrs: list[Attribute] = [
            (Attr.USER_NAME, user.encode()),
            (Attr.USER_PASSWORD, hide_password(password.encode(), self.secret, auth)),
        ]
        return self.request(attrs, authenticator=auth)


def eap_attributes(r: random.Random | None, eap: bytes) -> list[Attribute]:
    """EAP-Message attributes (RFC 3579 §3.1), at 253 octets or, fuzzing, at odd cuts."""
    size = 253 if r is None or r.random() < 0.8 else r.randrange(1, 254)
    if len(eap) + 2 * -(-len(eap) // size) > EAP_BUDGET:  # keep the request within 4,096
        size = 253
        eap = eap[: EAP_BUDGET - 2 * 16]
    if not eap:
        return [(Attr.EAP_MESSAGE, b"")]
    return [(Attr.EAP_MESSAGE, eap[i : i + size]) for i in range(0, len(eap), size)]


# -- the conversations ------------------------------------------------------------------------


@dataclass
class Finding:
    """Something the server did that it must not: the case that did it and what."""

    seed: int
    method: str
    what: str
    mutations: list[str]

    def __str__(self) -> str:
        return f"seed {self.seed} ({self.method}, {' '.join(self.mutations)}): {self.what}"


class _TunnelTap:
    """Wraps a peer method's TLS engine so that, once armed, the next application data
    it writes (the inner AVPs / inner EAP) is mutated before encryption."""

    def __init__(self) -> None:
        self.armed: random.Random | None = None
        self.fired = False

    def factory(self, f: MethodFactory[Peer]) -> MethodFactory[Peer]:
        def create(ctx: Any) -> Peer:
            method = f.create(ctx)
            engine = getattr(method, "_engine", None)
            if engine is not None:
                write = engine.write

                def tapped(data: bytes) -> None:
                    if self.armed is not None and not self.fired:
                        self.fired = True
                        data = mutate_plaintext(self.armed, data)
                    write(data)

                engine.write = tapped
            return method

        return MethodFactory(f.method, create, f.name)


@dataclass
class Fuzzer:
    """Runs cases against ``link``'s server with the demo PKI in ``pki``."""

    link: NasLink
    pki: Path
    user: str = "alice"
    password: str = "wonderland"
    findings: list[Finding] = field(default_factory=list)
    states: list[bytes] = field(default_factory=list)  # of earlier conversations

    def peer(self, r: random.Random, method: str) -> tuple[PeerSession, _TunnelTap]:
        opts = ProbeOptions(
            server=self.link.server,
            secret=self.link.secret,
            method=method,
            identity=self.user,
            password=self.password,
            cert=self.pki / "alice.pem" if method == "tls" else None,
            key=self.pki / "alice.key" if method == "tls" else None,
            ca=self.pki / "ca.pem",
            tls=r.choice([None, "1.2", "1.3"]),
            fragment_size=r.choice([None, None, 300, 1000]),
        )
        tap = _TunnelTap()
        methods = [tap.factory(f) for f in build_peer_methods(opts)]
        return PeerSession(methods, self.user), tap

    def _round(
        self, eap: bytes, state: bytes | None, r: random.Random | None = None
    ) -> Packet | None:
        attrs: list[Attribute] = [(Attr.USER_NAME, self.user.encode())]
        attrs += eap_attributes(r, eap)
        if state is not None:
            attrs.append((Attr.STATE, state))
        return self.link.request(attrs)

    def login(self, method: str, r: random.Random | None = None) -> bool:
        """A whole legitimate login: True on Access-Accept."""
        r = r or random.Random(0)
        peer, _ = self.peer(r, method)
        first = peer.receive(Identity(EapCode.REQUEST, 0).encode())
        assert isinstance(first, Send)
        eap, state = first.packet, None
        for _ in range(60):
            reply = self._round(eap, state)
            if reply is None or reply.code != Code.ACCESS_CHALLENGE:
                return reply is not None and reply.code == Code.ACCESS_ACCEPT
            state = reply.get(Attr.STATE)
            eap_in = reply.eap_message()
            action = peer.receive(eap_in or b"")
            if not isinstance(action, Send):
                return False
            eap = action.packet
        return False

    def case(self, seed: int, names: list[str]) -> None:
        """One conversation: legitimate to a random round, then mutated; ``names`` gets
        the mutations made, in order."""
        r = random.Random(seed)
        method = r.choice(PEER_METHODS)
        peer, tap = self.peer(r, method)
        first = peer.receive(Identity(EapCode.REQUEST, 0).encode())
        assert isinstance(first, Send)
        eap, state = first.packet, None
        inner = method.startswith(("ttls", "peap")) and r.random() < 0.2
        if inner:
            tap.armed = r  # the first inner write is mutated; the rest runs as usual
            names.append("inner")
        deep = r.choice([0.25, 0.5, 0.8])  # chance to start mutating at each round
        try:
            for round_no in range(60):
                # the Identity round less often: the TLS rounds after it are the point
                if not inner and r.random() < (deep / 4 if round_no == 0 else deep):
                    break
                reply = self._round(eap, state)
                if reply is None or reply.code != Code.ACCESS_CHALLENGE:
                    return
                state = reply.get(Attr.STATE)
                action = peer.receive(reply.eap_message() or b"")
                if not isinstance(action, Send):
                    return
                eap = action.packet
                if inner and tap.fired and r.random() < 0.5:
                    return  # the mutated inner data went out (and was answered)
            if inner:
                return
            self._mutated_rounds(r, eap, state, names)
        finally:
            if tap.fired:
                ledger = self.link.ledger
                ledger.by_mutation["inner"] = ledger.by_mutation.get("inner", 0) + 1
            if state is not None:
                self.states.append(state)
                del self.states[:-64]

    def _mutated_rounds(
        self, r: random.Random, eap: bytes, state: bytes | None, names: list[str]
    ) -> None:
        ledger = self.link.ledger
        for _ in range(r.randrange(1, 7)):
            name, packets = mutate(r, eap)
            send_state = state
            s = r.random()
            if s < 0.04:
                name, send_state = name + "+no_state", None
            elif s < 0.08:
                name, send_state = name + "+random_state", r.randbytes(16)
            elif s < 0.12 and self.states:
                name, send_state = name + "+old_state", r.choice(self.states)
            names.append(name)
            ledger.by_mutation[name] = ledger.by_mutation.get(name, 0) + 1
            for packet in packets:
                ledger.mutated += 1
                reply = self._round(packet, send_state, r)
                if reply is not None and reply.code == Code.ACCESS_CHALLENGE:
                    state = reply.get(Attr.STATE) or state
                elif reply is not None:
                    return  # the conversation is over
            if r.random() < 0.3:
                # the legitimate packet after the mutation: the server must not be confused
                reply = self._round(eap, state)
                if reply is None or reply.code != Code.ACCESS_CHALLENGE:
                    return

    def run(self, datagrams: int, seed: int, check: Callable[[], str | None]) -> tuple[int, int]:
        """Cases from ``seed`` on until ``datagrams`` datagrams went out; ``check`` after
        each case says what went wrong on the server (a traceback, a dead process), which
        becomes a :class:`Finding` naming the case's seed.  Returns (first seed, cases)."""
        cases = 0
        while self.link.ledger.datagrams < datagrams:
            case_seed = seed * 1_000_003 + cases
            names: list[str] = []
            method = random.Random(case_seed).choice(PEER_METHODS)
            try:
                self.case(case_seed, names)
            except TimeoutError as exc:
                self.findings.append(Finding(case_seed, method, f"server silent: {exc}", names))
                return seed, cases + 1
            cases += 1
            problem = check()
            if problem is not None:
                self.findings.append(Finding(case_seed, method, problem, names))
                if "exited" in problem:
                    break
        return seed, cases
