"""A RadSec read holding many records (one NAS, many requests in flight on one
connection) keeps the rounds that may run inline on the event loop (issue 21): after
each ``inline_per_tick`` records the connection lets the loop go round, so the share
starts afresh, instead of sending the rest of the burst to the pool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius import radsec
from eapkit.radius.dictionary import Attr
from eapkit.radius.fairpool import FairPool
from eapkit.radius.packet import Code, eap_message_attributes
from tests.radius.test_radsec import Pki, TlsNas, gw1, pki, running  # noqa: F401


class CountingPool(FairPool):
    submitted = 0

    def submit(self, client: str, run: Callable[[], None], expired: Callable[[], None]) -> bool:
        CountingPool.submitted += 1
        return super().submit(client, run, expired)


def test_a_burst_of_identity_rounds_on_one_connection_stays_inline(
    tmp_path: Path,
    pki: Pki,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(radsec, "FairPool", CountingPool)
    CountingPool.submitted = 0
    with running(tmp_path, pki) as server:

        async def run() -> None:
            nas = await TlsNas.connect(server.addr, server.nas_context(gw1(pki), "gw1"))
            identity = Identity(EapCode.RESPONSE, 0, b"alice").encode()
            attrs = [(Attr.USER_NAME, b"alice"), *eap_message_attributes(identity)]
            replies = await asyncio.gather(*(nas.request(attrs) for _ in range(40)))
            assert all(r.code == Code.ACCESS_CHALLENGE for r, _ in replies)
            await nas.close()

        asyncio.run(run())
    assert CountingPool.submitted == 0
