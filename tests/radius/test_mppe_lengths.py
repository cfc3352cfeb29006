"""MS-MPPE key lengths per method, as FreeRADIUS and hostapd send them (issue 23)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from eapkit.directory import LocalDirectory
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.mppe import mppe_keys_from_msk
from eapkit.radius.nas import RadiusClient, authenticate
from eapkit.session import PeerSession
from tests.radius.test_server import running

SECRET = b"mppe-secret"


def test_mppe_keys_from_msk_with_16_octet_keys() -> None:
    msk = bytes(range(32)) + bytes(32)
    keys = mppe_keys_from_msk(msk, 16)
    assert keys.recv == bytes(range(16)) and keys.send == bytes(range(16, 32))


def test_eap_mschapv2_accept_carries_16_octet_master_keys(tmp_path: Path) -> None:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("nora", "pencil", iterations=1000)
    core = RadiusCore(
        ClientTable([Client.of("127.0.0.0/8", SECRET, "gw")]),
        EapAccess([mschapv2_authenticator(users.nt_hash)]),
        decisions=DecisionLog(io.StringIO()),
    )

    async def run() -> tuple[bool, bytes, bytes, bytes]:
        with running(core) as addr:
            async with RadiusClient(addr, SECRET, timeout=1.0, retries=2) as client:
                peer = PeerSession([mschapv2_peer("pencil")], "nora")
                result = await authenticate(client, peer)
        assert result.mppe is not None and result.peer is not None
        assert result.peer.keys is not None
        return result.accepted, result.mppe.recv, result.mppe.send, result.peer.keys.msk

    accepted, recv, send, msk = asyncio.run(run())
    assert accepted
    # RFC 3079 §3 / [MS-CHAP] §3.1.5.1: 16 octets each, never 32 zeros for Send-Key.
    assert len(recv) == 16 and len(send) == 16
    assert recv + send == msk[:32]
    assert send != bytes(16)
