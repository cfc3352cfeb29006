"""Conformance vectors for the EAP packet codec (RFC 3748 §4, §5), run through the public
API: :func:`eapkit.packet.decode`, :func:`eapkit.packet.decode_frame` and ``encode()``.

``vectors/eap_packets.json`` holds packets built from RFC 3748's rules and packets captured
from eapol_test and hostapd (scripts/capture_eap.py); ``vectors/eap_malformed.json`` holds
packets that break one rule each.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from eapkit.errors import DecodeError
from eapkit.packet import MethodId, decode, decode_frame
from tests.vectorlib import Case, all_files, hexbytes, ids, load

PACKETS = load("eap_packets")
MALFORMED = load("eap_malformed")


def _plain(value: Any) -> Any:
    """A decoded field in the vectors' JSON form: bytes as hex, methods as [id, type]."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, MethodId):
        return [value.vendor_id, value.vendor_type]
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int):  # also Code / EapType, which are IntEnums
        return int(value)
    return value


@pytest.mark.parametrize("case", PACKETS, ids=ids(PACKETS))
def test_valid_packet_decodes_to_expected_message(case: Case) -> None:
    raw = hexbytes(case["hex"])
    message = decode(raw)
    assert type(message).__name__ == case["class"]
    fields: dict[str, Any] = case["fields"]
    # every field the message class has must be pinned by the vector
    assert {f.name for f in dataclasses.fields(message)} <= set(fields)
    assert {name: _plain(getattr(message, name)) for name in fields} == fields


@pytest.mark.parametrize("case", PACKETS, ids=ids(PACKETS))
def test_valid_packet_consumes_length_and_reencodes_exactly(case: Case) -> None:
    raw = hexbytes(case["hex"])
    consumed = case.get("consumed", len(raw))
    message, used = decode_frame(raw)
    assert used == consumed
    assert message == decode(raw)
    # RFC 3748 §4: padding beyond Length is ignored, so the packet alone decodes the same
    assert decode(raw[:consumed]) == message
    assert message.encode() == raw[:consumed]


@pytest.mark.parametrize("case", MALFORMED, ids=ids(MALFORMED))
def test_malformed_packet_raises_decode_error_at_offset(case: Case) -> None:
    raw = hexbytes(case["hex"])
    with pytest.raises(DecodeError) as caught:
        decode(raw)
    assert caught.value.offset == case["offset"]
    with pytest.raises(DecodeError) as caught_frame:
        decode_frame(raw)
    assert caught_frame.value.offset == case["offset"]


def test_captured_conversations_are_present() -> None:
    # Guards against a capture run that silently wrote nothing (scripts/capture_eap.py).
    captured = [c for c in PACKETS if c["source"].startswith("eapol_test 2.10")]
    classes = {c["class"] for c in captured}
    assert {"Identity", "MethodData", "Nak", "Expanded", "ExpandedNak", "Success"} <= classes
    assert "Failure" in classes


def test_every_vector_file_names_sources() -> None:
    files = all_files()
    assert {p.name for p in files} >= {"eap_packets.json", "eap_malformed.json"}
    for path in files:
        cases = load(path.name)  # raises if a case has no name or no source
        assert all(c["source"].strip() for c in cases), path.name
