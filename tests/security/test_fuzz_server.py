"""The fuzzer (:mod:`tests.security.fuzz`) against ``eapkit serve`` as a real process.

Short mode (the default suite): ``EAPKIT_FUZZ_DATAGRAMS`` defaults to 3,000 datagrams.
Long mode: ``EAPKIT_FUZZ_DATAGRAMS=100000`` (and ``EAPKIT_FUZZ_SEED=N`` for another
sequence of cases).  After the run the server must be alive, have written no traceback,
have answered every request or logged why not, still log in a valid user (PAP and EAP),
and, once its conversations expired, be back near the memory it started with.
"""

from __future__ import annotations

import io
import os
import random
import time
from collections.abc import Callable

import pytest

from eapkit.radius.packet import Code
from tests.security.conftest import Served
from tests.security.fuzz import DecisionTail, Fuzzer, NasLink, eap_attributes
from tests.security.mutations import (
    EAP_MUTATORS,
    TLS_MUTATORS,
    TlsMessage,
    mutate,
    tls_fragments,
)

DATAGRAMS = int(os.environ.get("EAPKIT_FUZZ_DATAGRAMS", "3000"))
SEED = int(os.environ.get("EAPKIT_FUZZ_SEED", "15"))
TTL = 2.0  # conversation_ttl of the fuzzed server: expired ones free their memory
# 100,000 datagrams take many minutes on a loaded machine: scale the test's timeout
TIMEOUT = max(300, DATAGRAMS // 40)
# Memory.  The allocator keeps the high-water mark of live conversations (about 100 KiB
# each while TLS runs, a few hundred live with a 2 s TTL) and caches fill once (OpenSSL's
# session cache, the 10 s duplicate cache), so RSS does not fall back to the start: it
# levels off.  Checked: the end (conversations expired) within RSS_BOUND_KIB of the start,
# and at most RSS_LEAK_KIB more than half-way through.  A leak of 1 KiB per datagram
# over the second half of the long mode (50,000 datagrams) is 50 MiB.
RSS_BOUND_KIB = 64 * 1024
RSS_LEAK_KIB = 12 * 1024


@pytest.mark.timeout(TIMEOUT)
def test_fuzz_server_past_the_first_round(served: Callable[..., Served]) -> None:
    srv = served(f"conversation_ttl = {TTL}\n")
    link = NasLink(
        ("127.0.0.1", srv.port),
        srv.secret,
        decisions=DecisionTail(srv.workdir / "decisions.log"),
    )
    fuzzer = Fuzzer(link, srv.pki)
    try:
        # Warm up (imports, the TLS context) before the baseline
        for method in ("tls", "ttls-pap", "peap-mschapv2", "mschapv2", "gtc"):
            assert fuzzer.login(method), f"{method} does not log in before fuzzing"
        time.sleep(TTL + 0.5)
        rss_start = srv.rss_kib()
        seen = len(srv.output())

        rss_half = 0

        def check() -> str | None:
            nonlocal seen, rss_half
            if not rss_half and link.ledger.datagrams >= DATAGRAMS // 2 and srv.alive():
                rss_half = srv.rss_kib()
            out = srv.output()
            new, seen = out[seen:], len(out)
            if not srv.alive():
                return f"server exited with {srv.proc.returncode}: {new[-2000:]}"
            if "Traceback" in new:
                return new[new.index("Traceback") - 200 :][:3000]
            return None

        started = time.monotonic()
        _, cases = fuzzer.run(DATAGRAMS, SEED, check)
        duration = time.monotonic() - started
        rss_peak = srv.rss_kib("VmHWM")
        ledger = link.ledger
        print(
            f"fuzz: seed {SEED}, {cases} cases, {ledger.datagrams} datagrams "
            f"({ledger.sent} Access-Requests, {ledger.mutated} mutated, "
            f"{ledger.barriers} Status-Server barriers) in {duration:.1f} s; "
            f"replies {ledger.by_reply}; mutations {sorted(ledger.by_mutation.items())}"
        )
        assert not fuzzer.findings, "\n".join(map(str, fuzzer.findings))
        assert srv.alive()

        # Every request was answered, or the decision log says why not.
        assert ledger.barrier_replies == ledger.barriers
        unanswered = [d for d in srv.decisions() if d.get("event") in ("dropped", "discarded")]
        assert len(unanswered) == ledger.unanswered, (len(unanswered), ledger.unanswered)
        assert ledger.mutated > DATAGRAMS // 5, "too few mutated datagrams to mean much"

        # Still serves: a valid user logs in, a wrong password is refused.
        time.sleep(TTL + 0.5)
        ok = link.pap("alice", "wonderland")
        assert ok is not None and ok.code == Code.ACCESS_ACCEPT
        bad = link.pap("alice", "wonderland!")
        assert bad is not None and bad.code == Code.ACCESS_REJECT
        assert fuzzer.login("peap-mschapv2")
        assert fuzzer.login("ttls-pap")
        rss_end = srv.rss_kib()
        print(
            f"fuzz: RSS start {rss_start} KiB, half-way {rss_half} KiB, "
            f"peak {rss_peak} KiB, end {rss_end} KiB"
        )
        assert rss_end < rss_start + RSS_BOUND_KIB, (rss_start, rss_peak, rss_end)
        assert rss_end < rss_half + RSS_LEAK_KIB, (rss_half, rss_end)
        assert "Traceback" not in srv.output()
    finally:
        link.close()


# -- the mutator itself ---------------------------------------------------------------------


def test_mutations_replay_from_their_seed() -> None:
    """A case's seed gives the same mutations again (what a failure report relies on)."""
    packet = bytes.fromhex("0207000a15800000000016")
    for seed in range(200):
        assert mutate(random.Random(seed), packet) == mutate(random.Random(seed), packet)


def test_every_mutator_changes_the_packet() -> None:
    """Each mutator, over a few seeds, sends something other than the valid packet."""
    tls = bytes.fromhex("0209001b0d80000000111603030006") + bytes(6) + b"\x17\x03\x03\x00\x00"
    for name, mutator in EAP_MUTATORS:
        assert any(mutator(random.Random(s), tls) != tls for s in range(20)), name
    for name, tls_mutator in TLS_MUTATORS:
        changed = False
        for s in range(20):
            m = TlsMessage.parse(tls)
            assert m is not None
            tls_mutator(random.Random(s), m)
            changed |= m.encode() != tls
        assert changed, name
    assert any(tls_fragments(random.Random(s), tls) != [tls] for s in range(20))


def test_a_discarded_eap_packet_is_logged() -> None:
    """RFC 3579 §2.6.2: an EAP packet that does not fit the conversation (here a wrong
    Identifier) is discarded and not answered; the decision log says so, so that every
    request is accounted for (the fuzzer's ledger relies on it)."""
    from eapkit.methods.gtc import gtc_authenticator
    from eapkit.packet import Code as EapCode
    from eapkit.packet import Identity
    from eapkit.radius.access import EapAccess
    from eapkit.radius.clients import Client, ClientTable
    from eapkit.radius.core import DecisionLog, Drop, RadiusCore, Reply
    from eapkit.radius.dictionary import Attr
    from eapkit.radius.packet import decode, eap_message_attributes, encode_request
    from eapkit.testing.passwords import InMemoryPasswords

    secret = b"s3cret"
    decisions = DecisionLog(io.StringIO())
    decisions.records = []
    core = RadiusCore(
        ClientTable([Client.of("192.0.2.1/32", secret, "nas")]),
        EapAccess([gtc_authenticator(InMemoryPasswords({"alice": "wonderland"}))]),
        decisions=decisions,
    )

    def send(eap: bytes, ident: int, state: bytes | None = None) -> Reply | Drop:
        attrs = [*eap_message_attributes(eap)] + ([(Attr.STATE, state)] if state else [])
        wire = encode_request(Code.ACCESS_REQUEST, ident, attrs, secret)
        handled = core.receive(wire, ("192.0.2.1", 1812), 1000.0)
        assert isinstance(handled, Reply | Drop)
        return handled

    first = send(Identity(EapCode.RESPONSE, 0, b"alice").encode(), 1)
    assert isinstance(first, Reply)
    challenge = decode(first.data)
    request_id = (challenge.eap_message() or b"\x00\x00")[1]
    state = challenge.get(Attr.STATE)
    wrong = bytes([2, (request_id + 1) & 0xFF, 0, 6, 6]) + b"x"
    handled = send(wrong, 2, state)
    assert handled == Drop("silently_discarded")
    assert decisions.records[-1] == {"time": 1000.0, "event": "discarded", "client": "nas"}


def test_eap_attributes_fit_in_one_request() -> None:
    """However the fuzzer cuts a long EAP packet into EAP-Message attributes, the request
    stays within RFC 2865's 4,096 octets (so what reaches the server is valid framing)."""
    from eapkit.radius.dictionary import Attr
    from eapkit.radius.packet import encode_request

    eap = bytes(5000)
    for seed in range(50):
        attrs = [(Attr.USER_NAME, b"alice"), *eap_attributes(random.Random(seed), eap)]
        attrs.append((Attr.STATE, bytes(16)))
        assert len(encode_request(Code.ACCESS_REQUEST, 1, attrs, b"s")) <= 4096
