"""EapAccess's conversation table under any mix of new conversations from several
NASes (hypothesis): it never holds more than ``max_conversations``, no NAS holds more
than its share, every new conversation is admitted (never refused) and lives, and with
two NASes neither can evict the other's latest conversation, however it floods."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.credentials import Verdict
from eapkit.methods.gtc import gtc_authenticator
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius.access import EapAccess
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import Code, decode, encode_request

SECRET = b"share"


def _check(user: str, response: str, now: float) -> Verdict:
    return Verdict(False, "bad_password")


def _identity() -> bytes:
    eap = Identity(EapCode.RESPONSE, 1, b"someone").encode()
    return encode_request(
        Code.ACCESS_REQUEST, 1, [(Attr.EAP_MESSAGE, eap)], SECRET, authenticator=os.urandom(16)
    )


@settings(max_examples=100, deadline=None)
@given(
    cap=st.integers(2, 12),
    nases=st.sampled_from([("nas-a", "nas-b"), ("nas-a", "nas-b", "nas-c")]),
    data=st.data(),
)
def test_the_table_is_bounded_shared_and_always_admits(
    cap: int, nases: tuple[str, ...], data: st.DataObject
) -> None:
    arrivals = data.draw(st.lists(st.sampled_from(nases), min_size=1, max_size=60))
    eap = EapAccess([gtc_authenticator(_check)], max_conversations=cap)
    share = max(1, int(cap * eap.client_share))
    latest: dict[str, bytes] = {}
    for i, nas in enumerate(arrivals):
        reply = eap.handle(decode(_identity()), SECRET, nas, 1000.0 + i)
        assert reply is not None and reply.code == Code.ACCESS_CHALLENGE  # never refused
        state = dict(reply.attributes)[Attr.STATE]
        latest[nas] = state
        assert eap.live <= cap
        owned = {c: sum(1 for v in eap._table.values() if v.client == c) for c in latest}
        assert all(n <= share for n in owned.values()), owned
        assert state in eap._table
        if len(nases) == 2:
            assert all(s in eap._table for s in latest.values())  # each NAS's newest lives
