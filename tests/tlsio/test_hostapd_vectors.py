"""EAP-TLS framing as eapol_test 2.10 and hostapd 2.10 put it on the wire, through our
reassembly and fragmentation (vectors/eap_tls_hostapd.json)."""

from __future__ import annotations

import pytest

from eapkit.packet import Code, MethodData, decode
from eapkit.tlsio.framing import Fragment, Reassembler, fragments
from tests.vectorlib import Case, hexbytes, ids, load

CASES = load("eap_tls_hostapd")
# eapol_test's fragment_size=500 counts TLS bytes; hostapd's 1398 counts the flags
# octet and the length field too, so its first fragment holds 1393 TLS bytes.
FRAGMENT_SIZE = {"peer": 500, "authenticator": 1393}


def _tls_records(message: bytes) -> list[tuple[int, int]]:
    """(content type, length) of each TLS record; the message must be whole records."""
    out = []
    pos = 0
    while pos < len(message):
        assert pos + 5 <= len(message), "truncated record header"
        kind = message[pos]
        assert kind in (20, 21, 22, 23), f"content type {kind}"
        assert message[pos + 1] == 3 and message[pos + 2] in (1, 3)
        size = int.from_bytes(message[pos + 3 : pos + 5], "big")
        pos += 5 + size
        out.append((kind, size))
    assert pos == len(message), "the last record runs past the message"
    return out


def _messages(case: Case) -> list[tuple[str, list[bytes], bytes]]:
    """Per direction, the fragments of each TLS message and the reassembled message."""
    out: list[tuple[str, list[bytes], bytes]] = []
    joiners = {"peer": Reassembler(), "authenticator": Reassembler()}
    pending: dict[str, list[bytes]] = {"peer": [], "authenticator": []}
    for packet in case["packets"]:
        msg = decode(hexbytes(packet["eap"]))
        if not isinstance(msg, MethodData) or msg.method.vendor_type != 13:
            continue
        side = packet["from"]
        frag = Fragment.decode(msg.type_data)
        assert f"{msg.type_data[0]:02x}" == packet["flags"]
        if frag.start or (frag.is_ack and not pending[side]):
            continue
        pending[side].append(msg.type_data)
        whole = joiners[side].feed(frag)
        if whole is not None:
            out.append((side, pending[side], whole))
            pending[side] = []
    assert not any(pending.values()), "a message was left unfinished"
    return out


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_reassembly_of_captured_conversation(case: Case) -> None:
    messages = _messages(case)
    assert len(messages) >= 4
    fragmented = {side for side, frags, _ in messages if len(frags) > 1}
    assert fragmented == {"peer", "authenticator"}
    for side, frags, whole in messages:
        records = _tls_records(whole)
        assert records
        first = Fragment.decode(frags[0])
        if len(frags) > 1:
            # RFC 5216 §3.1: L on the first fragment only, M on all but the last
            assert first.length == len(whole)
            assert all(Fragment.decode(f).length is None for f in frags[1:])
            assert all(Fragment.decode(f).more for f in frags[:-1])
        else:
            assert first.length is None
        # our fragmenter, at the sender's fragment size, produces the very same bytes
        ours = [f.encode() for f in fragments(whole, FRAGMENT_SIZE[side])]
        assert ours == frags, side


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_every_fragment_is_acknowledged(case: Case) -> None:
    packets = case["packets"]
    for i, packet in enumerate(packets[:-1]):
        flags = int(packet.get("flags", "00"), 16)
        if flags & 0x40:
            reply = packets[i + 1]
            assert reply["from"] != packet["from"] and reply["eap"][8:] == "0d00"


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_end_of_conversation(case: Case) -> None:
    packets = case["packets"]
    assert decode(hexbytes(packets[-1]["eap"])).code is Code.SUCCESS
    # the peer's last Response is empty: it acknowledges the server's last flight
    assert packets[-2]["from"] == "peer" and packets[-2]["eap"][8:] == "0d00"
    last_flight = _messages(case)[-1]
    assert last_flight[0] == "authenticator"
    kinds = [kind for kind, _ in _tls_records(last_flight[2])]
    if case["tls_version"] == "TLSv1.3":
        # RFC 9190 §2.5: tickets and the protected success indication, all encrypted
        assert set(kinds) == {23}
    else:
        # RFC 5216 §2.1.1: ChangeCipherSpec then the encrypted Finished
        assert 20 in kinds and kinds[-1] == 22
