"""EAP-MSCHAPv2 conversations captured from eapol_test 2.10 (peer) against hostapd 2.10's
integrated RADIUS/EAP server, replayed through eapkit.

Given the captured challenges, eapkit's functions must produce the captured NT-Response,
authenticator response, master key and MSK; each eapkit role, fed the other side's
captured messages and the captured random values, must send byte for byte what hostapd
or eapol_test sent.

The vectors come from ``vectors/mschap_eapol_test.json``; to capture them again (needs
the Debian packages ``hostapd`` and ``eapoltest``)::

    .venv/bin/python -m tests.methods.test_mschapv2_vectors --capture
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import pytest

from eapkit.crypto.mschap import (
    challenge_hash,
    generate_authenticator_response,
    generate_nt_response,
    get_asymmetric_start_key,
    get_master_key,
    hash_nt_password_hash,
    mschapv2_msk,
    nt_hash_keys,
    nt_password_hash,
)
from eapkit.methods.base import Done, MethodContext, Reply
from eapkit.methods.mschapv2 import (
    MsChapV2Authenticator,
    MsChapV2Challenge,
    MsChapV2FailureRequest,
    MsChapV2Peer,
    MsChapV2Response,
    MsChapV2SuccessRequest,
    decode_request,
    decode_response,
)
from eapkit.packet import Code, MethodData, decode
from eapkit.testing import StaticNtHashes
from tests.vectorlib import VECTORS, Case, hexbytes, ids, load

SOURCE = "eapol_test 2.10 / hostapd 2.10 (Debian 12)"
CASES = load("mschap_eapol_test")


class ScriptedRandom:
    """Hands out the captured random values in the order a method asks for them."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)

    def random_bytes(self, n: int) -> bytes:
        chunk = self._chunks.pop(0)
        assert len(chunk) == n, f"asked for {n} bytes, script has {len(chunk)}"
        return chunk


def _mschap_messages(case: Case) -> list[tuple[Code, bytes]]:
    """(EAP Code, EAP-MSCHAPv2 Type-Data) of the captured method packets, in order."""
    out = []
    for packet in case["eap_packets"]:
        msg = decode(hexbytes(packet))
        if isinstance(msg, MethodData) and msg.type == 26:
            out.append((msg.code, msg.type_data))
    return out


def _nt_hash(case: Case) -> bytes:
    return nt_password_hash(case["password"])


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_primitives_reproduce_the_capture(case: Case) -> None:
    assert case["source"] == SOURCE
    ac, pc = hexbytes(case["authenticator_challenge"]), hexbytes(case["peer_challenge"])
    name = case["identity"]
    nt_response = hexbytes(case["nt_response"])
    if case["expect_success"]:
        assert generate_nt_response(ac, pc, name, password=case["password"]) == nt_response
        assert (
            generate_authenticator_response(_nt_hash(case), nt_response, pc, ac, name)
            == case["authenticator_response"]
        )
        master = get_master_key(hash_nt_password_hash(_nt_hash(case)), nt_response)
        assert master == hexbytes(case["master_key"])
        msk = mschapv2_msk(master)
        # hostapd's 32-byte key, then [MS-CHAP] §3.1.5.1's 32 zero bytes
        assert msk[:32] == hexbytes(case["eapol_test_msk"])
        assert msk[32:] == bytes(32)
        # what hostapd's RADIUS server sent: Recv-Key = MSK[0:16], Send-Key = MSK[16:32]
        assert msk[:16] == hexbytes(case["ms_mppe_recv_key"])
        assert msk[16:32] == hexbytes(case["ms_mppe_send_key"])
        assert msk[:16] == get_asymmetric_start_key(master, 16, is_send=False, is_server=True)
        assert case["mppe_keys_ok"]
    else:
        # the peer used another password: the stored hash refuses it
        keys = nt_hash_keys(_nt_hash(case))
        assert not keys.verify_nt_response(ac, pc, name, nt_response)
        wrong = nt_password_hash(case["peer_password"])
        assert generate_nt_response(ac, pc, name, nt_hash=wrong) == nt_response
        assert keys.challenge_response(challenge_hash(pc, ac, name)) != nt_response


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_every_captured_message_decodes_and_reencodes(case: Case) -> None:
    messages = _mschap_messages(case)
    assert messages
    for code, data in messages:
        if code is Code.REQUEST:
            req = decode_request(data)
            assert req.encode() == data
        else:
            resp = decode_response(data)
            assert resp.encode() == data


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_our_authenticator_sends_what_hostapd_sent(case: Case) -> None:
    messages = _mschap_messages(case)
    requests = [d for c, d in messages if c is Code.REQUEST]
    responses = [d for c, d in messages if c is Code.RESPONSE]
    challenge = decode_request(requests[0])
    assert isinstance(challenge, MsChapV2Challenge)
    failure_c = b""
    final = decode_request(requests[-1])
    if isinstance(final, MsChapV2FailureRequest):
        assert final.challenge is not None
        failure_c = final.challenge
    rand = ScriptedRandom(
        bytes([challenge.ms_chap_id]), challenge.challenge, *([failure_c] if failure_c else [])
    )
    ctx = MethodContext(identity=case["identity"].encode(), random=rand)
    table = StaticNtHashes({case["identity"]: _nt_hash(case)})
    auth = MsChapV2Authenticator(
        ctx,
        table,
        server_name=challenge.name,  # "hostapd"
        success_message="OK",
        failure_message="FAILED",
    )
    assert auth.start() == requests[0]
    step = auth.receive(responses[0])
    assert isinstance(step, Reply)
    assert step.type_data == requests[1]
    done = auth.receive(responses[1])
    assert isinstance(done, Done)
    assert done.outcome.success == case["expect_success"]
    if case["expect_success"]:
        assert done.outcome.keys is not None
        assert done.outcome.keys.msk[:32] == hexbytes(case["eapol_test_msk"])


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_our_peer_sends_what_eapol_test_sent(case: Case) -> None:
    messages = _mschap_messages(case)
    requests = [d for c, d in messages if c is Code.REQUEST]
    responses = [d for c, d in messages if c is Code.RESPONSE]
    response = decode_response(responses[0])
    assert isinstance(response, MsChapV2Response)
    ctx = MethodContext(
        identity=case["identity"].encode(), random=ScriptedRandom(response.peer_challenge)
    )
    peer = MsChapV2Peer(ctx, password=case["peer_password"])
    step = peer.receive(requests[0])
    assert isinstance(step, Reply)
    assert step.type_data == responses[0]
    done = peer.receive(requests[1])
    assert isinstance(done, Done)
    assert done.type_data == responses[1]
    assert done.outcome.success == case["expect_success"]
    if case["expect_success"]:
        assert isinstance(decode_request(requests[1]), MsChapV2SuccessRequest)
        assert done.outcome.keys is not None
        assert done.outcome.keys.msk[:32] == hexbytes(case["eapol_test_msk"])
    else:
        assert done.outcome.reason == "authentication_failure"


# -- capture ---------------------------------------------------------------------------

# (name, identity, password in hostapd's eap_user file, password eapol_test uses)
_CAPTURES = [
    ("alice-ok", "alice", "correct horse", "correct horse"),
    ("domain-and-non-ascii-password", "CORP\\bob", "p@ssw0rd-ünï €", "p@ssw0rd-ünï €"),
    ("long-password", "carol", "x" * 40 + "Tr0ub4dor&3", "x" * 40 + "Tr0ub4dor&3"),
    ("wrong-password", "alice", "correct horse", "incorrect horse"),
]


def _hex_after(label: str, text: str) -> str:
    found = re.findall(re.escape(label) + r" - hexdump\(len=\d+\): ((?:[0-9a-f]{2} ?)+)", text)
    return found[-1].replace(" ", "") if found else ""


def capture() -> None:  # pragma: no cover - run by hand
    from tests.interop.tools import HostapdRadius, eapol_test

    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, identity, stored, used in _CAPTURES:
            work = Path(tmp) / name
            users = f'"{identity}" MSCHAPV2 "{stored}"\n'
            with HostapdRadius(work, users, secret="s3cret") as server:
                network = (
                    f'key_mgmt=IEEE8021X\neap=MSCHAPV2\nidentity="{identity}"\npassword="{used}"'
                )
                result = eapol_test(network, server.port, work / "peer", secret="s3cret")
            out = result.output
            packets = re.findall(r"Attribute 79 \(EAP-Message\) length=\d+\n\s+Value: (\w+)", out)
            case = {
                "name": name,
                "source": SOURCE,
                "identity": identity,
                "password": stored,
                "peer_password": used,
                "expect_success": stored == used,
                "eapol_test_result": "SUCCESS" if result.success else "FAILURE",
                "eap_packets": packets,
                "authenticator_challenge": _hex_after("MSCHAPV2: auth_challenge", out),
                "peer_challenge": _hex_after("MSCHAPV2: peer_challenge", out),
                "nt_response": _hex_after("MSCHAPV2: NT Response", out),
            }
            if stored == used:
                s_msgs = [
                    decode(bytes.fromhex(p))
                    for p in packets
                    if bytes.fromhex(p)[0] == 1 and bytes.fromhex(p)[5] == 3
                ]
                assert s_msgs and isinstance(s_msgs[0], MethodData)
                s_req = decode_request(s_msgs[0].type_data)
                assert isinstance(s_req, MsChapV2SuccessRequest)
                case["authenticator_response"] = "S=" + s_req.authenticator_response.hex().upper()
                case["master_key"] = _hex_after("MSCHAPV2: Master Key", out)
                case["eapol_test_msk"] = _hex_after("EAP-MSCHAPV2: Derived key", out)
                case["ms_mppe_send_key"] = _hex_after("MS-MPPE-Send-Key (sign)", out)
                case["ms_mppe_recv_key"] = _hex_after("MS-MPPE-Recv-Key (crypt)", out)
                case["mppe_keys_ok"] = result.mppe_ok
            cases.append(case)
    doc = {
        "description": (
            "Bare EAP-MSCHAPv2 between eapol_test 2.10 (peer) and hostapd 2.10's integrated "
            'RADIUS/EAP server (driver=none, eap_server=1, eap_user_file \'"<identity>" '
            "MSCHAPV2 \"<password>\"'), read from eapol_test's debug output: the EAP packets "
            "carried in RADIUS, the challenges, the NT-Response, the master key and the "
            "32-byte key eapol_test derived, and the MS-MPPE keys hostapd sent. Regenerate "
            "with: .venv/bin/python -m tests.methods.test_mschapv2_vectors --capture"
        ),
        "cases": cases,
    }
    path = VECTORS / "mschap_eapol_test.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":  # pragma: no cover
    if "--capture" in sys.argv:
        capture()
