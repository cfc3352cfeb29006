"""A third-party RADIUS client, the same requests to ``eapkit serve`` and to FreeRADIUS
3.2, answers compared (issue 23).

The issue asks for pyrad2 3.2; it requires Python >= 3.12 and this project runs on
3.11, so the client is pyrad 2.6 (already the codec oracle in tests/radius), which
builds every request, checks every reply's Response Authenticator and
Message-Authenticator, and decodes the attributes.  EAP payloads come from eapkit's
peer (pyrad speaks no EAP).  Attribute-level differences from FreeRADIUS that remain
are asserted, not hidden: see ``test_chap_is_refused_cleanly``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eapkit.crypto.mschap import (
    challenge_response,
    check_authenticator_response,
    generate_nt_response,
    nt_password_hash,
)
from eapkit.methods.gtc import gtc_peer
from eapkit.methods.mschapv2 import mschapv2_peer
from eapkit.radius.hiding import unhide_password
from eapkit.radius.mppe import recover_mppe_keys
from eapkit.radius.nas import RadiusClient, authenticate
from eapkit.radius.packet import decode
from eapkit.session import PeerSession
from tests.conftest import free_udp_port
from tests.interop.tools import EapkitServe, FreeRadius

pytestmark = pytest.mark.interop

pyrad_packet = pytest.importorskip("pyrad.packet")
pyrad_dictionary = pytest.importorskip("pyrad.dictionary")

SECRET = "pyrad-interop-secret"
USER, PASSWORD = "alice", "wonderland"
DICT = pyrad_dictionary.Dictionary(str(Path(__file__).parents[1] / "radius" / "dictionary.pyrad"))


@dataclass
class Server:
    name: str
    auth: int
    acct: int
    eapkit: EapkitServe | None = None


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    work = tmp_path_factory.mktemp("pyrad-interop")
    acct = free_udp_port()
    eapkit = EapkitServe(
        work / "eapkit",
        users=((USER, PASSWORD),),
        secret=SECRET,
        extra=("--listen", f"127.0.0.1:{acct}", "--accounting-port", str(acct)),
    )
    freeradius = FreeRadius(
        work / "freeradius",
        f'{USER} Cleartext-Password := "{PASSWORD}"\n',
        secret=SECRET,
        accounting=True,
        authorize=("chap",),
        authenticate=("Auth-Type CHAP {", "    chap", "}"),
    )
    with eapkit, freeradius:
        yield [
            Server("eapkit", eapkit.port, acct, eapkit),
            Server("freeradius", freeradius.port, freeradius.acct_port),
        ]


def _exchange(port: int, request: Any, server: str = "eapkit") -> Any:
    """Send a pyrad request, return the pyrad reply it verified (None: no answer).
    eapkit's replies to Access-Request and Status-Server must carry a
    Message-Authenticator; FreeRADIUS 3.2.1 adds none to replies without EAP (a
    difference that stays: 3.2.5 adds it too, for BlastRADIUS)."""
    raw = request.RequestPacket()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        for _ in range(3):
            s.sendto(raw, ("127.0.0.1", port))
            try:
                data = s.recv(4096)
            except TimeoutError:
                continue
            reply = request.CreateReply(packet=data)
            assert request.VerifyReply(
                reply, data, enforce_ma=server == "eapkit" and request.code in (1, 12)
            )
            return reply
    return None


def _auth(**attrs: Any) -> Any:
    pkt = pyrad_packet.AuthPacket(code=1, secret=SECRET.encode(), dict=DICT)
    pkt["User-Name"] = USER
    for name, value in attrs.items():
        pkt[name.replace("_", "-")] = value
    pkt.add_message_authenticator()
    return pkt


def _ms(reply: Any, name: str) -> bytes | None:
    return next(iter(reply.get(name, [])), None) if name in reply else None


@pytest.mark.parametrize("password,code", [(PASSWORD, 2), ("wrong", 3)])
def test_pap(servers: list[Server], password: str, code: int) -> None:
    for server in servers:
        request = _auth()
        request["User-Password"] = request.PwCrypt(password)
        reply = _exchange(server.auth, request, server.name)
        assert reply is not None and reply.code == code, server.name


def test_chap_is_refused_cleanly(servers: list[Server]) -> None:
    """A remaining difference: FreeRADIUS keeps cleartext passwords and accepts CHAP;
    eapkit keeps none and answers a clean Reject (``chap_unsupported``)."""
    codes = {}
    for server in servers:
        request = _auth()
        chap_id = b"\x07"

        challenge = request.authenticator
        request["CHAP-Password"] = (
            chap_id + hashlib.md5(chap_id + PASSWORD.encode() + challenge).digest()
        )
        reply = _exchange(server.auth, request, server.name)
        assert reply is not None
        codes[server.name] = reply.code
    assert codes == {"eapkit": 3, "freeradius": 2}
    eapkit = servers[0].eapkit
    assert eapkit is not None
    assert [d["reason"] for d in eapkit.decisions if d.get("method") == "pap"][-1] == (
        "chap_unsupported"
    )


def _mschapv2(password: str) -> tuple[Any, bytes, bytes, bytes]:
    challenge, peer_challenge = os.urandom(16), os.urandom(16)
    nt_response = generate_nt_response(challenge, peer_challenge, USER, password)
    request = _auth()
    request["MS-CHAP-Challenge"] = challenge
    request["MS-CHAP2-Response"] = b"\x05\x00" + peer_challenge + bytes(8) + nt_response
    return request, challenge, peer_challenge, nt_response


def test_mschapv2_over_plain_radius(servers: list[Server]) -> None:
    request, challenge, peer_challenge, nt_response = _mschapv2(PASSWORD)
    keys = {}
    for server in servers:
        request.id = (request.id + 1) & 0xFF
        reply = _exchange(server.auth, request, server.name)
        assert reply is not None and reply.code == 2, server.name
        success = _ms(reply, "MS-CHAP2-Success")
        assert success is not None and success[0] == 5, server.name
        # the client's check of the S= response (RFC 2759 §8.8)
        assert check_authenticator_response(
            nt_password_hash(PASSWORD), nt_response, peer_challenge, challenge, USER, success[1:]
        ), server.name
        packet = decode(bytes(reply.raw_packet))
        mppe = recover_mppe_keys(packet, SECRET.encode(), request.authenticator)
        assert mppe is not None
        keys[server.name] = (
            mppe,
            _ms(reply, "MS-MPPE-Encryption-Policy"),
            _ms(reply, "MS-MPPE-Encryption-Types"),
        )
    # the same challenge and response: the same 16-octet keys, Policy and Types
    assert keys["eapkit"] == keys["freeradius"]
    assert len(keys["eapkit"][0].recv) == len(keys["eapkit"][0].send) == 16


def test_mschapv2_wrong_password(servers: list[Server]) -> None:
    request = _mschapv2("wrong")[0]
    for server in servers:
        request.id = (request.id + 1) & 0xFF
        reply = _exchange(server.auth, request, server.name)
        assert reply is not None and reply.code == 3, server.name
        error = _ms(reply, "MS-CHAP-Error")
        assert error is not None, server.name
        assert (error if isinstance(error, bytes) else error.encode())[1:].startswith(b"E=691")


def test_mschap_v1_over_plain_radius(servers: list[Server]) -> None:
    """Both accept; the NT key in MS-CHAP-MPPE-Keys is the same.  A remaining
    difference: FreeRADIUS puts the LM hash's first 8 octets before it (it derives one from
    the cleartext password), eapkit keeps no LM hash and sends zeros."""
    challenge = os.urandom(8)
    nt_response = challenge_response(challenge, nt_password_hash(PASSWORD))
    request = _auth()
    request["MS-CHAP-Challenge"] = challenge
    request["MS-CHAP-Response"] = b"\x03\x01" + bytes(24) + nt_response
    nt_keys = {}
    for server in servers:
        request.id = (request.id + 1) & 0xFF
        reply = _exchange(server.auth, request, server.name)
        assert reply is not None and reply.code == 2, server.name
        packet = decode(bytes(reply.raw_packet))
        hidden = next(v for t, v in packet.vendor_attributes(311) if t == 12)
        keys = unhide_password(hidden, SECRET.encode(), request.authenticator)
        nt_keys[server.name] = keys[8:24]
    assert nt_keys["eapkit"] == nt_keys["freeradius"]


@pytest.mark.parametrize("port,code", [("auth", 2), ("acct", 5)])
def test_status_server(servers: list[Server], port: str, code: int) -> None:
    for server in servers:
        request = pyrad_packet.AuthPacket(code=12, secret=SECRET.encode(), dict=DICT)
        request.add_message_authenticator()
        reply = _exchange(getattr(server, port), request, server.name)
        assert reply is not None and reply.code == code, server.name


def test_accounting(servers: list[Server]) -> None:
    for server in servers:
        request = pyrad_packet.AcctPacket(code=4, secret=SECRET.encode(), dict=DICT)
        request["User-Name"] = USER
        request["Acct-Status-Type"] = 1
        request["Acct-Session-Id"] = "pyrad-1"
        reply = _exchange(server.acct, request, server.name)
        assert reply is not None and reply.code == 5, server.name


@pytest.mark.parametrize("method", ["mschapv2", "gtc"])
def test_eap_keys_as_freeradius_sends_them(servers: list[Server], method: str) -> None:
    async def run(port: int) -> Any:
        factory = (
            mschapv2_peer(PASSWORD) if method == "mschapv2" else gtc_peer(lambda prompt: PASSWORD)
        )
        async with RadiusClient(("127.0.0.1", port), SECRET.encode(), timeout=2.0) as client:
            return await authenticate(client, PeerSession([factory], USER))

    lengths = {}
    for server in servers:
        result = asyncio.run(run(server.auth))
        assert result.accepted, server.name
        if method == "mschapv2":
            assert result.keys_match, server.name  # decrypted and compared with the peer's
        mppe = result.mppe
        lengths[server.name] = None if mppe is None else (len(mppe.recv), len(mppe.send))
    assert lengths["eapkit"] == lengths["freeradius"]
