"""The harness itself, against the two tools talking to each other (no eapkit code):
if this fails, the interop tests that use the harness cannot be trusted either."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.tools import HostapdRadius, eapol_test

pytestmark = pytest.mark.interop


def test_eapol_test_against_hostapd_mschapv2(tmp_path: Path) -> None:
    users = '"bob" MSCHAPV2 "pencil"\n'
    with HostapdRadius(tmp_path / "hostapd", users) as server:
        ok = eapol_test(
            'key_mgmt=IEEE8021X\neap=MSCHAPV2\nidentity="bob"\npassword="pencil"',
            server.port,
            tmp_path / "ok",
        )
        bad = eapol_test(
            'key_mgmt=IEEE8021X\neap=MSCHAPV2\nidentity="bob"\npassword="pen"',
            server.port,
            tmp_path / "bad",
        )
    assert ok.success and ok.mppe_ok, ok.output[-2000:]
    assert ok.hexdump("EAP-MSCHAPV2: Derived key") is not None
    assert not bad.success and bad.returncode != 0
