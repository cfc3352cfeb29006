"""Capture EAP-TLS conversations of eapol_test against hostapd's RADIUS/EAP server.

How ``vectors/eap_tls_hostapd.json`` was made (run as root on Debian 12 with the
``eapoltest`` and ``hostapd`` packages)::

    .venv/bin/python -m tests.tlsio.capture_hostapd > vectors/eap_tls_hostapd.json

A UDP relay on 127.0.0.1 sits between eapol_test and hostapd and copies the
EAP-Message attributes (RFC 3579 §3.1) of every RADIUS packet; the JSON keeps each EAP
packet whole, with its direction, so the tests can run the fragments through our
reassembly.  Certificates are RSA-2048 from :mod:`eapkit.pki` (a server flight
that needs fragments) and eapol_test uses ``fragment_size=500`` so that the peer
fragments too.
"""

from __future__ import annotations

import datetime as dt
import json
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eapkit import pki

SECRET = "testing123"
DESCRIPTION = (
    "EAP-TLS over TLS 1.2 and 1.3 as eapol_test and hostapd frame it (RFC 5216 §3.1, "
    "RFC 9190): whole EAP packets in order, RSA-2048 certificates, hostapd fragment_size "
    "1398 (counts flags and length: 1393 TLS bytes in a first fragment), eapol_test "
    "fragment_size=500 (counts TLS bytes only); made by tests/tlsio/capture_hostapd.py"
)
TOOLS = "eapol_test 2.10 (wpa_supplicant, Debian eapoltest) against hostapd 2.10 (Debian)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _eap_messages(radius: bytes) -> bytes:
    """The concatenated EAP-Message attributes (type 79) of a RADIUS packet."""
    out = b""
    pos = 20
    while pos + 2 <= len(radius):
        kind, size = radius[pos], radius[pos + 1]
        if size < 2:
            break
        if kind == 79:
            out += radius[pos + 2 : pos + size]
        pos += size
    return out


def _annotate(eap: bytes) -> dict[str, object]:
    """Framing facts of one EAP packet, so a reader need not decode the hex."""
    facts: dict[str, object] = {"code": eap[0], "identifier": eap[1], "length": len(eap)}
    if len(eap) > 5 and eap[4] == 13:
        facts["flags"] = f"{eap[5]:02x}"
        if eap[5] & 0x80:
            facts["tls_message_length"] = int.from_bytes(eap[6:10], "big")
            facts["tls_data_length"] = len(eap) - 10
        else:
            facts["tls_data_length"] = len(eap) - 6
    return facts


def _files(tmp: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("capture CA", now=now, key_type="rsa")
    server = pki.make_server(ca, ["radius.example.org"], now=now, key_type="rsa")
    client = pki.make_client(ca, "alice", email="alice@example.org", now=now, key_type="rsa")
    (tmp / "ca.pem").write_bytes(ca.cert_pem)
    (tmp / "server.pem").write_bytes(server.chain_pem)
    (tmp / "server.key").write_bytes(server.key_pem)
    (tmp / "client.pem").write_bytes(client.chain_pem)
    (tmp / "client.key").write_bytes(client.key_pem)
    (tmp / "users").write_text("* TLS\n")
    (tmp / "clients").write_text(f"127.0.0.1/32 {SECRET}\n")


def _capture(tmp: Path, tls13: bool) -> tuple[list[dict[str, str]], str]:
    server_port, relay_port = _free_port(), _free_port()
    (tmp / "hostapd.conf").write_text(
        "\n".join(
            [
                "driver=none",
                "interface=lo",
                "eap_server=1",
                f"eap_user_file={tmp}/users",
                f"ca_cert={tmp}/ca.pem",
                f"server_cert={tmp}/server.pem",
                f"private_key={tmp}/server.key",
                f"radius_server_clients={tmp}/clients",
                f"radius_server_auth_port={server_port}",
                "radius_server_acct_port=0",
                "radius_server_ipv6=0",
                "tls_flags=[ENABLE-TLSv1.3]",
                "",
            ]
        )
    )
    phase1 = "tls_disable_tlsv1_3=0" if tls13 else "tls_disable_tlsv1_3=1"
    (tmp / "peer.conf").write_text(
        'network={\n key_mgmt=IEEE8021X\n eap=TLS\n identity="alice@example.org"\n'
        f' ca_cert="{tmp}/ca.pem"\n client_cert="{tmp}/client.pem"\n'
        f' private_key="{tmp}/client.key"\n phase1="{phase1}"\n fragment_size=500\n}}\n'
    )
    hostapd = subprocess.Popen(
        ["/usr/sbin/hostapd", str(tmp / "hostapd.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay.bind(("127.0.0.1", relay_port))
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.connect(("127.0.0.1", server_port))
    packets: list[dict[str, str]] = []
    try:
        time.sleep(1.0)
        peer = subprocess.Popen(
            [
                "eapol_test",
                "-c",
                str(tmp / "peer.conf"),
                "-a",
                "127.0.0.1",
                "-p",
                str(relay_port),
                "-s",
                SECRET,
                "-t",
                "15",
            ],
            stdout=(tmp / "peer.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        client: tuple[str, int] | None = None
        while peer.poll() is None:
            ready, _, _ = select.select([relay, upstream], [], [], 0.2)
            for sock in ready:
                if sock is relay:
                    data, client = relay.recvfrom(65535)
                    packets.append({"from": "peer", "eap": _eap_messages(data).hex()})
                    upstream.send(data)
                elif client is not None:
                    data = upstream.recv(65535)
                    packets.append({"from": "authenticator", "eap": _eap_messages(data).hex()})
                    relay.sendto(data, client)
        output = (tmp / "peer.log").read_text(errors="replace")
        return packets, output
    finally:
        relay.close()
        upstream.close()
        hostapd.terminate()
        try:
            hostapd.wait(5)
        except subprocess.TimeoutExpired:
            hostapd.kill()


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        _files(tmp)
        doc = {"description": DESCRIPTION, "cases": []}
        for tls13 in (False, True):
            packets, output = _capture(tmp, tls13)
            print(output[-600:], file=sys.stderr)
            doc["cases"].append(  # type: ignore[attr-defined]
                {
                    "name": "eap-tls-1.3" if tls13 else "eap-tls-1.2",
                    "source": TOOLS,
                    "tls_version": "TLSv1.3" if tls13 else "TLSv1.2",
                    "packets": [{**p, **_annotate(bytes.fromhex(p["eap"]))} for p in packets],
                }
            )
        print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
