"""Capture real EAP packets for ``vectors/eap_packets.json`` (not used by the tests).

Runs hostapd 2.10 as an integrated RADIUS/EAP server on 127.0.0.1 and ``eapol_test``
(wpa_supplicant 2.10) as the peer, both from Debian 12, for a few conversations; reads
the EAP packets each side logged, checks that both sides saw the same packets in the
same order, and writes them as vector cases (RFC 3748 §4 layout, sliced here without
eapkit so the vectors stay an independent check of the codec).

    .venv/bin/python -m scripts.capture_eap            # print the cases as JSON
    .venv/bin/python -m scripts.capture_eap --write    # replace the captured cases in
                                                       # vectors/eap_packets.json

Each conversation's raw logs are kept under ``--keep DIR`` when given.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCE = "eapol_test 2.10 (wpa_supplicant, Debian 12) against hostapd 2.10 integrated RADIUS server"
VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "eap_packets.json"
SECRET = "capture-secret"  # noqa: S105 - loopback only, throwaway


@dataclass
class Scenario:
    """One conversation: hostapd's eap_user line and eapol_test's network block."""

    name: str
    eap_user: str
    network: str
    eapol_args: list[str] = field(default_factory=list)
    expect_success: bool = True
    note: str = ""
    hostapd_extra: str = ""
    tls: bool = False  # give hostapd a throwaway certificate so TLS methods can start


SCENARIOS = [
    Scenario(
        "gtc",
        '"alice" GTC "wonderland"',
        'eap=GTC\n  identity="alice"\n  password="wonderland"',
        ["-n"],  # GTC derives no MSK (INTEROP.md)
    ),
    Scenario(
        "md5",
        '"alice" MD5 "wonderland"',
        'eap=MD5\n  identity="alice"\n  password="wonderland"',
        ["-n"],  # MD5-Challenge derives no MSK either
    ),
    Scenario(
        "nak",
        '"alice" TTLS,GTC "wonderland"',
        'eap=GTC\n  identity="alice"\n  password="wonderland"',
        ["-n"],
        note="hostapd proposes TTLS first; the peer allows only GTC and Naks it",
        tls=True,
    ),
    Scenario(
        "wsc",
        '"WFA-SimpleConfig-Enrollee-1-0" WSC',
        'eap=GTC\n  identity="WFA-SimpleConfig-Enrollee-1-0"\n  password="unused"',
        ["-n"],
        expect_success=False,
        note="hostapd starts EAP-WSC (Expanded Type, WFA 0x00372a/1); the peer allows only "
        "GTC and answers with an Expanded Nak",
        # WPS on, so hostapd's RADIUS server runs EAP-WSC for the WFA identity
        hostapd_extra="wps_state=2\nap_setup_locked=1\nuuid=12345678-9abc-def0-1234-56789abcdef0",
    ),
    Scenario(
        "gtc-reject",
        '"alice" GTC "wonderland"',
        'eap=GTC\n  identity="alice"\n  password="not-the-password"',
        ["-n"],
        expect_success=False,
    ),
]

HOSTAPD_CONF = """\
driver=none
interface=lo
eap_server=1
eap_user_file={dir}/eap_user
radius_server_clients={dir}/clients
radius_server_auth_port={port}
radius_server_acct_port=0
radius_server_ipv6=0
logger_stdout=-1
logger_stdout_level=0
{extra}
"""

_HEX = r" ((?:[0-9a-f]{2} ?)*)$"
# hostapd -dd, RADIUS server side (src/radius/radius_server.c)
_H_RX = re.compile(r"^RADIUS SRV: Received EAP data - hexdump\(len=(\d+)\):" + _HEX)
_H_TX = re.compile(r"^RADIUS SRV: EAP data from the state machine - hexdump\(len=(\d+)\):" + _HEX)
_H_RESP = re.compile(
    r"parseEapResp: rxResp=1 rxInitiate=0 respId=(\d+) respMethod=(\d+) "
    r"respVendor=(\d+) respVendorMethod=(\d+)"
)
# eapol_test (wpa_supplicant/eapol_test.c)
_E_TX = re.compile(r"^TX EAP -> RADIUS - hexdump\(len=(\d+)\):" + _HEX)
_E_ATTR = re.compile(r"^\s+Attribute 79 \(EAP-Message\) length=\d+")
_E_VALUE = re.compile(r"^\s+Value: ([0-9a-f]+)$")
_E_DECAP = re.compile(r"^decapsulated EAP packet \(code=(\d+) id=(\d+) len=(\d+)\)")
_E_REQ = re.compile(
    r"EAP: Received EAP-Request id=(\d+) method=(\d+) vendor=(\d+) vendorMethod=(\d+)"
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _hexdump(match: re.Match[str]) -> bytes:
    data = bytes.fromhex(match.group(2))
    if len(data) != int(match.group(1)):
        raise RuntimeError(f"hexdump shorter than its len=: {match.group(0)}")
    return data


def run(scenario: Scenario, keep: Path | None) -> tuple[str, str, list[str]]:
    """Run one conversation; the hostapd log, the eapol_test log and the commands used."""
    hostapd = shutil.which("hostapd") or "/usr/sbin/hostapd"
    eapol_test = shutil.which("eapol_test") or "/usr/sbin/eapol_test"
    with tempfile.TemporaryDirectory(prefix="eapcap-") as tmp:
        d = Path(tmp)
        port = free_udp_port()
        (d / "eap_user").write_text(scenario.eap_user + "\n")
        (d / "clients").write_text(f"127.0.0.1/32 {SECRET}\n")
        extra = scenario.hostapd_extra
        if scenario.tls:
            subprocess.run(  # noqa: S603
                [
                    shutil.which("openssl") or "openssl",
                    *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
                    *("-nodes", "-days", "1", "-subj", "/CN=eapkit capture"),
                    *("-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")),
                ],
                check=True,
                capture_output=True,
            )
            extra += f"\nca_cert={d}/cert.pem\nserver_cert={d}/cert.pem\nprivate_key={d}/key.pem"
        (d / "hostapd.conf").write_text(HOSTAPD_CONF.format(dir=d, port=port, extra=extra))
        (d / "net.conf").write_text(
            "network={\n  key_mgmt=IEEE8021X\n  " + scenario.network + "\n}\n"
        )
        h_cmd = [hostapd, "-dd", str(d / "hostapd.conf")]
        e_cmd = [
            eapol_test,
            *scenario.eapol_args,
            "-c",
            str(d / "net.conf"),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-s",
            SECRET,
            "-t",
            "15",
        ]
        h_log_path = d / "hostapd.log"
        with h_log_path.open("w") as h_out:
            server = subprocess.Popen(h_cmd, stdout=h_out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            deadline = time.monotonic() + 10
            while "Setup of interface done" not in h_log_path.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("hostapd did not start:\n" + h_log_path.read_text())
                time.sleep(0.05)
            peer = subprocess.run(  # noqa: S603
                e_cmd, capture_output=True, text=True, timeout=30, check=False
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        h_log = h_log_path.read_text()
        e_log = peer.stdout + peer.stderr
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for f in ("hostapd.conf", "net.conf", "eap_user"):
                shutil.copy(d / f, keep / f"{scenario.name}-{f}")
            (keep / f"{scenario.name}-hostapd.log").write_text(h_log)
            (keep / f"{scenario.name}-eapol_test.log").write_text(e_log)
        # eapol_test ends its output with SUCCESS or FAILURE; its exit status on FAILURE
        # varies (252, or 253 with -n), so read the verdict rather than the number
        verdict = peer.stdout.strip().splitlines()[-1] if peer.stdout.strip() else ""
        want = "SUCCESS" if scenario.expect_success else "FAILURE"
        if verdict != want or (peer.returncode == 0) != scenario.expect_success:
            raise RuntimeError(
                f"{scenario.name}: eapol_test said {verdict!r} (exit {peer.returncode}), "
                f"expected {want}\n{e_log[-3000:]}"
            )
        shown = [
            " ".join(c if c != str(d) else "$DIR" for c in cmd).replace(str(d), "$DIR")
            for cmd in (h_cmd, e_cmd)
        ]
        return h_log, e_log, shown


def hostapd_view(log: str) -> tuple[list[tuple[str, bytes]], list[tuple[int, ...]]]:
    """Packets as hostapd's RADIUS server handled them, and its own parse of each Response."""
    packets: list[tuple[str, bytes]] = []
    parsed: list[tuple[int, ...]] = []
    for line in log.splitlines():
        if m := _H_RX.match(line):
            packets.append(("peer", _hexdump(m)))
        elif m := _H_TX.match(line):
            packets.append(("server", _hexdump(m)))
        elif m := _H_RESP.search(line):
            parsed.append(tuple(int(g) for g in m.groups()))
    return packets, parsed


def eapol_test_view(
    log: str,
) -> tuple[list[tuple[str, bytes]], list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Packets as eapol_test sent them and received them in EAP-Message attributes, its
    (code, id, len) of each received packet, and its parse of each Request."""
    packets: list[tuple[str, bytes]] = []
    decap: list[tuple[int, ...]] = []
    requests: list[tuple[int, ...]] = []
    lines = log.splitlines()
    in_received = False
    pending = b""
    for i, line in enumerate(lines):
        if m := _E_TX.match(line):
            packets.append(("peer", _hexdump(m)))
        elif line.startswith("Received RADIUS message"):
            in_received, pending = True, b""
        elif in_received and _E_ATTR.match(line):
            # RFC 3579 §3.1: a long EAP packet spans consecutive EAP-Message attributes
            if value := _E_VALUE.match(lines[i + 1]):
                pending += bytes.fromhex(value.group(1))
        elif m := _E_DECAP.match(line):
            packets.append(("server", pending))
            decap.append(tuple(int(g) for g in m.groups()))
            in_received, pending = False, b""
        elif m := _E_REQ.search(line):
            requests.append(tuple(int(g) for g in m.groups()))
    return packets, decap, requests


_KINDS = {1: "request", 2: "response", 3: "success", 4: "failure"}
_TYPE_NAMES = {1: "identity", 2: "notification", 3: "nak", 4: "md5", 6: "gtc", 21: "ttls"}


def expected(packet: bytes) -> dict[str, Any]:
    """Class and fields of one packet, sliced by the RFC 3748 §4/§5 layout."""
    code, ident, length = packet[0], packet[1], int.from_bytes(packet[2:4])
    if length != len(packet):
        raise RuntimeError(f"captured packet with Length {length} != {len(packet)} bytes")
    if code in (3, 4):
        return {
            "class": "Success" if code == 3 else "Failure",
            "fields": {"code": code, "identifier": ident},
        }
    eap_type, rest = packet[4], packet[5:]
    fields: dict[str, Any] = {"code": code, "identifier": ident, "type": eap_type}
    if eap_type == 1:
        return {"class": "Identity", "fields": {**fields, "data": rest.hex()}}
    if eap_type == 2:
        return {"class": "Notification", "fields": {**fields, "data": rest.hex()}}
    if eap_type == 3:
        return {"class": "Nak", "fields": {**fields, "desired": list(rest)}}
    if eap_type == 254:
        vendor_id, vendor_type = int.from_bytes(rest[0:3]), int.from_bytes(rest[3:7])
        if vendor_id == 0 and vendor_type == 3:
            entries = [rest[7 + i : 15 + i] for i in range(0, len(rest) - 7, 8)]
            desired = [[int.from_bytes(e[1:4]), int.from_bytes(e[4:8])] for e in entries]
            return {"class": "ExpandedNak", "fields": {**fields, "desired": desired}}
        return {
            "class": "Expanded",
            "fields": {
                **fields,
                "vendor_id": vendor_id,
                "vendor_type": vendor_type,
                "data": rest[7:].hex(),
            },
        }
    return {"class": "MethodData", "fields": {**fields, "type_data": rest.hex()}}


def check_against_tools(
    packets: list[tuple[str, bytes]],
    h_parsed: list[tuple[int, ...]],
    decap: list[tuple[int, ...]],
    requests: list[tuple[int, ...]],
) -> None:
    """Each packet's header as we slice it must match what the tools said they parsed."""
    responses = [p for who, p in packets if who == "peer"]
    received = [p for who, p in packets if who == "server"]
    if len(h_parsed) != len(responses):
        raise RuntimeError(f"hostapd parsed {len(h_parsed)} responses, saw {len(responses)}")
    for p, (rid, method, vendor, vmethod) in zip(responses, h_parsed, strict=True):
        if p[0] != 2 or p[1] != rid or p[4] != method:
            raise RuntimeError(f"hostapd's parse {rid, method} disagrees with {p.hex()}")
        if method == 254 and (int.from_bytes(p[5:8]), int.from_bytes(p[8:12])) != (
            vendor,
            vmethod,
        ):
            raise RuntimeError(f"hostapd's vendor parse disagrees with {p.hex()}")
    for p, (code, ident, length) in zip(received, decap, strict=True):
        if (p[0], p[1], int.from_bytes(p[2:4])) != (code, ident, length):
            raise RuntimeError(f"eapol_test's parse {code, ident, length} != {p.hex()}")
    # eapol_test's first Request is its own fake Identity Request; then one per Request
    server_requests = [p for p in received if p[0] == 1]
    if len(requests) != len(server_requests) + 1:
        raise RuntimeError(f"{len(requests)} requests parsed, {len(server_requests)} received")
    for p, (rid, method, _vendor, _vmethod) in zip(server_requests, requests[1:], strict=True):
        if (p[1], p[4]) != (rid, method):
            raise RuntimeError(f"eapol_test's parse {rid, method} disagrees with {p.hex()}")


def capture(scenario: Scenario, keep: Path | None) -> tuple[list[dict[str, Any]], list[str]]:
    h_log, e_log, commands = run(scenario, keep)
    h_packets, h_parsed = hostapd_view(h_log)
    e_packets, decap, requests = eapol_test_view(e_log)
    if h_packets != e_packets:
        raise RuntimeError(
            f"{scenario.name}: hostapd and eapol_test disagree:\n{h_packets}\n{e_packets}"
        )
    if not h_packets:
        raise RuntimeError(f"{scenario.name}: no packets captured")
    check_against_tools(h_packets, h_parsed, decap, requests)
    cases: list[dict[str, Any]] = []
    # eapol_test opens with a Request/Identity it makes itself (send_eap_request_identity:
    # Code 1, the Identifier it logs, Length 5, Type 1); it never crosses RADIUS, so it is
    # rebuilt from the logged Identifier rather than read from a hexdump.
    fake_id = requests[0][0]
    conversation = [("eapol_test", bytes((1, fake_id, 0, 5, 1)))]
    conversation += [("hostapd" if who == "server" else "eapol_test", p) for who, p in h_packets]
    for n, (sender, packet) in enumerate(conversation, start=1):
        exp = expected(packet)
        code = packet[0]
        label = _KINDS[code]
        if code in (1, 2) and packet[4] == 254:
            label += "-expanded-nak" if packet[5:12] == bytes(6) + b"\x03" else "-expanded"
        elif code in (1, 2):
            label += "-" + _TYPE_NAMES.get(packet[4], f"type{packet[4]}")
        case: dict[str, Any] = {
            "name": f"{scenario.name}-{n:02d}-{label}",
            "source": SOURCE,
            "hex": packet.hex(),
            **exp,
        }
        if n == 1:
            case["note"] = (
                "eapol_test's own Request/Identity (it plays the authenticator's EAPOL side); "
                "rebuilt from the Identifier it logged, it never crosses RADIUS"
            )
        else:
            case["note"] = f"sent by {sender}" + (f"; {scenario.note}" if scenario.note else "")
        cases.append(case)
    return cases, commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update vectors/eap_packets.json")
    parser.add_argument("--keep", type=Path, help="keep configs and raw logs in this directory")
    args = parser.parse_args(argv)
    captured: list[dict[str, Any]] = []
    for scenario in SCENARIOS:
        cases, commands = capture(scenario, args.keep)
        captured += cases
        for c in commands:
            print(f"# {scenario.name}: {c}", file=sys.stderr)
    if not args.write:
        print(json.dumps(captured, indent=2))
        return 0
    doc = json.loads(VECTORS.read_text(encoding="utf-8"))
    doc["cases"] = [c for c in doc["cases"] if c["source"] != SOURCE] + captured
    VECTORS.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(captured)} captured cases to {VECTORS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
