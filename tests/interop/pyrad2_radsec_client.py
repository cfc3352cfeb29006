"""pyrad2's ``RadSecClient`` against a RadSec server: run in pyrad2's own virtualenv
(pyrad2 needs Python >= 3.12; eapkit runs on 3.11), by
tests/interop/test_pyrad2_radsec.py.

Reads one JSON object on stdin (server, port, ca, cert, key, dictionary, alpn
("radius/1.0" or "radius/1.1" offered with 1.0 as well, "radius/1.1-only"), user,
password, cases) and prints one JSON object: per case the reply's code, the version
the connection negotiated, and what the test checks (MS-MPPE keys, the NT-Response
they were derived from, Message-Authenticator present).  Cases:

- ``pap``, ``pap-wrong``: Access-Request with User-Password;
- ``status``: Status-Server (RFC 5997);
- ``eap-mschapv2``, ``eap-gtc``: pyrad2's own EAP drivers, in a loop that drops the
  User-Password pyrad2 leaves beside EAP-Message (RFC 3579 §3.3 forbids the pair)
  and gives each round a new Identifier and Request Authenticator (pyrad2 keeps both);
- ``eap-mschapv2-as-shipped``: ``RadSecClient.send_packet`` as pyrad2 ships it,
  which sends User-Password beside EAP-Message.

pyrad2 is not imported by eapkit's own tests or checked by eapkit's mypy (it is not
installed in eapkit's environment): this file only runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

from pyrad2 import eap  # type: ignore[import-not-found, unused-ignore]
from pyrad2.constants import PacketType  # type: ignore[import-not-found, unused-ignore]
from pyrad2.dictionary import Dictionary  # type: ignore[import-not-found, unused-ignore]
from pyrad2.radsec.client import RadSecClient  # type: ignore[import-not-found, unused-ignore]
from pyrad2.radsec.v11 import RadiusVersion  # type: ignore[import-not-found, unused-ignore]

MESSAGE_AUTHENTICATOR = 80
VERSIONS = {
    "radius/1.0": (RadiusVersion.V1_0,),
    "radius/1.1": (RadiusVersion.V1_0, RadiusVersion.V1_1),
    "radius/1.1-only": (RadiusVersion.V1_1,),
}


def _attr(reply: Any, name: str) -> Any:
    try:
        values = reply[name]
    except KeyError:
        return None
    return values[0] if values else None


EAP_TYPES = {"eap-mschapv2": 26, "eap-gtc": 6}  # RFC 3748 §5, draft-kamath
EAP_MESSAGE, STATE = 79, 24


async def _eap(client: Any, packet: Any, user: bytes) -> Any:
    """pyrad2's challenge loop (``RadSecClient._send_auth_packet``) without the
    User-Password it leaves on the packet next to EAP-Message, and with the Legacy-Nak
    (RFC 3748 §5.3.1) pyrad2's drivers do not send when the server proposes another
    method first (eapkit serve proposes EAP-TLS)."""
    method = eap.get_method(packet.auth_type)
    method.start(packet)
    password = packet[2]  # the raw value, as pyrad2 stored it
    del packet["User-Password"]
    identity = b"".join(packet[EAP_MESSAGE])[5:]
    if identity != user:  # EAP-GTC's (and EAP-MD5's) driver sends the password
        packet[EAP_MESSAGE] = [bytes([2, 0, 0, 5 + len(user), 1]) + user]
    wanted = EAP_TYPES[packet.auth_type]
    reply = await client._send_packet(packet)
    while reply is not None and reply.code == PacketType.AccessChallenge:
        request = b"".join(reply[EAP_MESSAGE])
        if len(request) >= 5 and request[4] != wanted:
            packet[EAP_MESSAGE] = [bytes([2, request[1], 0, 6, 3, wanted])]
            packet[STATE] = reply[STATE]
        else:  # EAP-GTC's driver reads the password each round: lend it, take it back
            packet[2] = password
            method.respond(packet, reply)
            del packet[2]
        # A new request: a new Token (RFC 9765 §4.1), Identifier and Request
        # Authenticator.  pyrad2 keeps the packet's Authenticator across rounds; with a
        # random Identifier that repeats one of an earlier round (1 in 256 per pair),
        # the request is a retransmission by RFC 5080 §2.2.2's duplicate key and the
        # server rightly answers it with the earlier round's cached reply.
        packet.token = None
        packet.id = packet.create_id()
        packet.authenticator = None
        reply = await client._send_packet(packet)
    return reply, method, identity


def _collect_log() -> list[str]:
    """pyrad2's own log (loguru), kept so a case that fails shows what it read."""
    from loguru import logger  # type: ignore[import-not-found, unused-ignore]

    lines: list[str] = []
    logger.remove()
    logger.add(lambda message: lines.append(str(message).rstrip()), level="DEBUG")
    return lines


async def run(args: dict[str, Any]) -> dict[str, Any]:
    log = _collect_log()
    client = RadSecClient(
        server=args["server"],
        port=args["port"],
        secret=b"radsec",
        dict=Dictionary(args["dictionary"]),
        certfile=args["cert"],
        keyfile=args["key"],
        certfile_server=args["ca"],
        check_hostname=True,
        minimum_tls_version=ssl.TLSVersion.TLSv1_2,
        radius_versions=VERSIONS[args["alpn"]],
        retries=1,
        timeout=10,
    )
    out: dict[str, Any] = {}
    async with client:
        for case in args["cases"]:
            log.clear()
            method, identity_sent = None, None
            if case == "status":
                reply = await client.send_packet(client.create_status_packet())
            elif case.startswith("eap-"):
                # pyrad2's EAP drivers read the password from User-Password
                packet = client.create_auth_packet(
                    User_Name=args["user"], User_Password=args["password"].encode()
                )
                packet.auth_type = case.removesuffix("-as-shipped")
                if case.endswith("-as-shipped"):
                    reply = await client.send_packet(packet)
                else:
                    reply, method, identity = await _eap(client, packet, args["user"].encode())
                    identity_sent = identity.decode("utf-8", "replace")
            else:
                packet = client.create_auth_packet(User_Name=args["user"])
                password = args["password"] if case == "pap" else "not " + args["password"]
                # hidden under 1.0, clear under 1.1 (RFC 9765 §5.1.1): pyrad2's way
                packet.set_obfuscated("User-Password", password.encode())
                reply = await client.send_packet(packet)
            result: dict[str, Any] = {
                "code": None if reply is None else int(reply.code),
                "version": "1.1" if client._negotiated_version == RadiusVersion.V1_1 else "1.0",
                "error": None if client.last_error is None else str(client.last_error),
            }
            if reply is not None:
                result["message_authenticator"] = MESSAGE_AUTHENTICATOR in reply
                recv, send = _attr(reply, "MS-MPPE-Recv-Key"), _attr(reply, "MS-MPPE-Send-Key")
                result["mppe"] = None if recv is None else [recv.hex(), send.hex()]
                result["reply_message"] = _attr(reply, "Reply-Message")
            if reply is not None and case.startswith("eap-"):
                result["raw_reply"] = bytes(reply.raw_packet).hex()
                result["request_authenticator"] = bytes(packet.authenticator or b"").hex()
                result["identity"] = identity_sent  # what pyrad2's driver put in Identity
            if reply is None:
                result["log"] = log[-20:]
            if method is not None and hasattr(method, "_nt_response"):
                result["nt_response"] = method._nt_response.hex()
            out[case] = result
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.stdin.read())))))
