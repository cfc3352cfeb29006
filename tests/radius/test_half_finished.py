"""A server filled with half-finished EAP-TLS conversations stays bounded and answers.

10,000 conversations (``EapAccess.max_conversations``' default, as in ``eapkit serve``)
get their first Access-Request answered with an EAP-TLS Start (RFC 5216 §2.1.1) through
:meth:`RadiusCore.receive` and are never continued: a NAS that went away, or a
flood of EAP-Response/Identity.  The server must then

- hold them within the documented memory bound (docs/benchmarks.md: under 40 KiB of
  resident memory per conversation, OpenSSL's ``SSL`` object included; the measured
  figure is about 19 KiB after Start and 22 KiB mid-handshake, see
  ``python -m benchmarks.bench_memory``);
- make room for a 10,001st new conversation by evicting the oldest idle one rather than
  grow or refuse it (here one NAS may hold the whole table, ``client_share=1.0``; the
  per-client share is tested in tests/security/test_flood.py);
- still carry a conversation it holds to the end (Access-Accept with keys);
- forget conversations idle past ``ttl`` (oldest first), after which new ones complete.

Times are the ``now`` argument: nothing here sleeps or reads a clock.
"""

from __future__ import annotations

import gc
import io
import json
from pathlib import Path

from eapkit.methods.tls import tls_authenticator, tls_peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.packet import decode as eap_decode
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import Code, Packet, decode, eap_message_attributes, encode_request
from eapkit.rand import DeterministicRandom
from eapkit.session import Finished, PeerSession, Send
from eapkit.tlsio import TlsVersion
from tests.certs import IDENTITY, lab, peer_config, server_config
from tests.radius.helpers import datagram

SECRET = b"half-finished"
NAS = "127.0.0.1"
CAP = 10_000
TTL = 60.0
T0 = 1_000_000.0
# docs/benchmarks.md: the bound a held EAP-TLS conversation stays under
RSS_BOUND_PER_CONVERSATION = 40 * 1024


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Nas:
    """Builds the Access-Requests a NAS would send, with fresh authenticators."""

    def __init__(self) -> None:
        self.rand = DeterministicRandom(11)
        self.identifier = 0

    def request(self, eap: bytes, state: bytes | None = None) -> bytes:
        self.identifier = (self.identifier + 1) & 0xFF
        attrs = [(Attr.USER_NAME, IDENTITY.encode()), *eap_message_attributes(eap)]
        if state is not None:
            attrs.append((Attr.STATE, state))
        return encode_request(
            Code.ACCESS_REQUEST,
            self.identifier,
            attrs,
            SECRET,
            authenticator=self.rand.random_bytes(16),
        )


def answer(core: RadiusCore, raw: bytes, port: int, now: float) -> Packet:
    reply = datagram(core, raw, (NAS, port), now)
    assert reply is not None, "the server fell silent"
    return decode(reply)


def new_peer() -> PeerSession:
    return PeerSession([tls_peer(peer_config(lab("ec"), max_version=TlsVersion.TLS1_3))], IDENTITY)


def first_round(core: RadiusCore, nas: Nas, peer: PeerSession, port: int, now: float) -> Packet:
    """The peer's Identity Response, as the NAS relays it: the first Access-Request."""
    action = peer.receive(Identity(EapCode.REQUEST, 0).encode())
    assert isinstance(action, Send)
    return answer(core, nas.request(action.packet), port, now)


def finish(
    core: RadiusCore, nas: Nas, peer: PeerSession, reply: Packet, port: int, now: float
) -> Packet:
    """Carry a conversation from ``reply`` (a Challenge) to its last packet."""
    for _ in range(30):
        if reply.code != Code.ACCESS_CHALLENGE:
            break
        eap = reply.eap_message()
        assert eap is not None
        action = peer.receive(eap)
        assert isinstance(action, Send), action
        reply = answer(core, nas.request(action.packet, reply.get(Attr.STATE)), port, now)
    eap = reply.eap_message()
    assert eap is not None
    assert isinstance(peer.receive(eap), Finished)
    return reply


def test_ten_thousand_half_finished_tls_conversations() -> None:
    log = io.StringIO()
    eap = EapAccess(
        [tls_authenticator(server_config(lab("ec"), max_version=TlsVersion.TLS1_3))],
        ttl=TTL,
        max_conversations=CAP,
        client_share=1.0,
    )
    core = RadiusCore(
        ClientTable([Client.of(f"{NAS}/32", SECRET)]), eap, decisions=DecisionLog(log)
    )
    nas = Nas()
    identity = Identity(EapCode.RESPONSE, 0, IDENTITY.encode()).encode()
    held = new_peer()  # the last of the 10,000 is a real peer that will come back

    gc.collect()
    before = rss_bytes()
    for i in range(CAP - 1):  # one every millisecond
        reply = answer(core, nas.request(identity), 2000 + i % 50_000, T0 + i / 1000)
        assert reply.code == Code.ACCESS_CHALLENGE
        start = eap_decode(reply.eap_message() or b"")
        assert start.code == EapCode.REQUEST and getattr(start, "type_data", None) == b"\x20"
    last = T0 + (CAP - 1) / 1000
    held_reply = first_round(core, nas, held, 1999, last)
    assert held_reply.code == Code.ACCESS_CHALLENGE
    assert eap.live == CAP
    gc.collect()
    grown = rss_bytes() - before
    assert grown < CAP * RSS_BOUND_PER_CONVERSATION, f"{grown / CAP:.0f} bytes per conversation"

    # full: a new conversation evicts the oldest idle one, and nothing grows
    admitted = first_round(core, nas, new_peer(), 1998, last + 0.5)
    assert admitted.code == Code.ACCESS_CHALLENGE
    assert eap.live == CAP and eap.evicted == 1

    # a conversation the server holds still completes, keys and all
    done = finish(core, nas, held, held_reply, 1999, last + 1.0)
    assert done.code == Code.ACCESS_ACCEPT, json.loads(log.getvalue().splitlines()[-1])
    assert done.get_vendor(311, 16) is not None and done.get_vendor(311, 17) is not None
    assert held.result is not None and held.result.success
    assert eap.live == CAP - 1

    # idle past ttl, oldest first: at T0 + ttl + 4.9995 s the first 5,000 are gone
    fresh = new_peer()
    now = T0 + TTL + 4.9995
    reply = first_round(core, nas, fresh, 1997, now)
    assert reply.code == Code.ACCESS_CHALLENGE
    # (the first was evicted already; the newcomer admitted at ``last`` is still live)
    assert eap.live == (CAP - 1 - 5_000) + 2
    assert finish(core, nas, fresh, reply, 1997, now).code == Code.ACCESS_ACCEPT

    # and once every one has expired, the table is empty but for the newcomer
    late = new_peer()
    now = T0 + 10 * TTL
    reply = first_round(core, nas, late, 1996, now)
    assert eap.live == 1
    assert finish(core, nas, late, reply, 1996, now).code == Code.ACCESS_ACCEPT
    assert eap.live == 0


def test_a_stale_state_after_expiry_is_rejected_not_resumed() -> None:
    """A conversation continued after its ttl gets a Reject (unknown State)."""
    eap = EapAccess(
        [tls_authenticator(server_config(lab("ec"), max_version=TlsVersion.TLS1_3))],
        ttl=TTL,
        max_conversations=4,
    )
    core = RadiusCore(
        ClientTable([Client.of(f"{NAS}/32", SECRET)]), eap, decisions=DecisionLog(io.StringIO())
    )
    nas, peer = Nas(), new_peer()
    reply = first_round(core, nas, peer, 3000, T0)
    assert reply.code == Code.ACCESS_CHALLENGE and eap.live == 1
    action = peer.receive(reply.eap_message() or b"")
    assert isinstance(action, Send)
    late = answer(core, nas.request(action.packet, reply.get(Attr.STATE)), 3000, T0 + TTL)
    assert late.code == Code.ACCESS_REJECT
    assert eap.live == 0
