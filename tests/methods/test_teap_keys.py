"""TEAP key derivations (RFC 9930 §6) against hostapd 2.10's own key dumps
(vectors/teap/hostapd_keys.json, rfc7170 mode), the TLS 1.2 PRF against OpenSSL's, and
each RFC 9930 / RFC 7170 difference that eapkit.methods.teap_keys lists."""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from eapkit.methods.base import KeyMaterial
from eapkit.methods.teap_keys import (
    KeyChain,
    SuiteHashes,
    compound_mac,
    imsk,
    mschapv2_fast_msk,
    suite_hashes,
    tls_prf,
)
from eapkit.teap_tlv import TEAP_VERSION, CryptoBinding, Tlv, TlvType

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[2] / "vectors" / "teap" / "hostapd_keys.json").read_text()
)["vectors"]
SHA256_PRF = (
    "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e"
    "14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5"
    "a72e5a5110fff70187347b66"
)
SHA384_PRF = (
    "7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cde9ca0faa60be9fe34f82b123"
    "3c9146a0e534cb400fed2700884f9dc236f80edd8bfa961144c9e8d792eca722a7b32fc3d416d473ebc2c5fd"
    "4abfdad05d9184259b5bf8cd4d90fa0d31e2dec479e4f1a26066f2eea9a69236a3e52655c9e9aee691c8f3a2"
    "6854308d5eaa3be85e0990703d73e56f"
)
SUITES = {
    "0xc02b": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "0xc02c": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "0x1301": "TLS_AES_128_GCM_SHA256",
}


def test_tls_prf_matches_openssl() -> None:
    """``openssl kdf -keylen N -kdfopt digest:SHA256|SHA384 -kdfopt hexsecret:..
    -kdfopt seed:"test label" -kdfopt hexseed:.. TLS1-PRF`` outputs."""
    out = tls_prf(
        "sha256",
        bytes.fromhex("9bbe436ba940f017b17652849a71db35"),
        b"test label",
        bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c"),
        100,
    )
    assert out.hex() == SHA256_PRF
    out = tls_prf(
        "sha384",
        bytes.fromhex("b80b733d6ceefcdc71566ea48e5567df"),
        b"test label",
        bytes.fromhex("cd665cf6a8447dd6ff8b27555edb7465"),
        148,
    )
    assert out.hex() == SHA384_PRF


@pytest.mark.parametrize(
    ("name", "prf", "mac"),
    [
        ("ECDHE-RSA-AES256-GCM-SHA384", "sha384", "sha384"),
        ("TLS_AES_256_GCM_SHA384", "sha384", "sha384"),
        ("TLS_AES_128_GCM_SHA256", "sha256", "sha256"),
        ("TLS_CHACHA20_POLY1305_SHA256", "sha256", "sha256"),
        ("ECDHE-RSA-CHACHA20-POLY1305", "sha256", "sha256"),
        ("ECDHE-RSA-AES128-SHA", "sha256", "sha1"),
        (None, "sha256", "sha256"),
    ],
)
def test_suite_hashes(name: str | None, prf: str, mac: str) -> None:
    assert suite_hashes(name) == SuiteHashes(prf, mac)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["description"][:40])
def test_hostapd_key_dumps(vector: dict[str, Any]) -> None:
    """S-IMCK[j], CMK[j] (both chains), the Compound MACs and the MSK, as hostapd 2.10
    derived them in a conversation with eapkit's peer."""
    seed = bytes.fromhex(vector["session_key_seed"])
    hashes = suite_hashes(SUITES[vector["cipher_suite"]])
    chain = KeyChain(hashes, "rfc7170", seed, seed)
    for inner in vector["inner"]:
        if inner.get("basic_password"):
            chain.add_inner(None)
        else:
            # hostapd's EAP-MSCHAPv2 MSK is 32 octets; eapkit's KeyMaterial pads to 64
            msk = bytes.fromhex(inner["msk"]).ljust(64, b"\0")
            emsk = bytes.fromhex(inner["emsk"])
            chain.add_inner(KeyMaterial(msk=msk, emsk=emsk), mschapv2=not emsk)
            assert chain.s_imck_msk.hex() == inner["s_imck_msk"]
            if emsk:
                assert chain.s_imck_emsk.hex() == inner["s_imck_emsk"]
                assert chain.cmk_emsk is not None and chain.cmk_emsk.hex() == inner["cmk_emsk"]
        assert chain.cmk_msk.hex() == inner["cmk_msk"]
    for entry in vector["compound_macs"]:
        buffer = bytes.fromhex(entry["buffer"])
        binding = CryptoBinding.decode(buffer[4:80])
        assert buffer[80] == 55
        outer = buffer[81:]
        assert Tlv(TlvType.AUTHORITY_ID, outer[4:], mandatory=False).encode() == outer
        cmk = bytes.fromhex(entry["cmk"])
        assert (
            compound_mac("sha256", cmk, binding, outer, b"")
            == hmac.digest(cmk, buffer, "sha256")[:20]
        )
    assert chain.master_keys()[0].hex() == vector["msk"]
    assert bytes.fromhex(vector["session_id"])[0] == 55


def _mschapv2_vector() -> dict[str, Any]:
    return next(v for v in VECTORS if "MSCHAPv2" in v["description"])


def test_difference_1_mschapv2_imsk_swapped() -> None:
    """RFC 9930 §3.6.3: the inner MS-CHAPv2 MSK halves swapped (EAP-FAST-MSCHAPv2);
    hostapd 2.10 does not swap, so the rfc9930 chain leaves hostapd's."""
    vector = _mschapv2_vector()
    inner = vector["inner"][0]
    msk = bytes.fromhex(inner["msk"]).ljust(64, b"\0")
    assert mschapv2_fast_msk(msk)[:32] == msk[16:32] + msk[:16]
    seed = bytes.fromhex(vector["session_key_seed"])
    for compat, equal in (("rfc7170", True), ("rfc9930", False)):
        chain = KeyChain(SuiteHashes(), compat, seed, seed)  # type: ignore[arg-type]
        chain.add_inner(KeyMaterial(msk=msk, emsk=b""), mschapv2=True)
        assert (chain.cmk_msk.hex() == inner["cmk_msk"]) is equal
        other = KeyChain(SuiteHashes(), compat, seed, seed)  # type: ignore[arg-type]
        other.add_inner(KeyMaterial(msk=msk, emsk=b""), mschapv2=False)  # not MS-CHAPv2
        assert other.cmk_msk.hex() == inner["cmk_msk"]


def test_difference_2_basic_password_advances_s_imck() -> None:
    vector = next(v for v in VECTORS if "Basic-Password" in v["description"])
    seed = bytes.fromhex(vector["session_key_seed"])
    old = KeyChain(SuiteHashes(), "rfc7170", seed, seed)
    new = KeyChain(SuiteHashes(), "rfc9930", seed, seed)
    old.add_inner(None)
    new.add_inner(None)
    assert old.cmk_msk == new.cmk_msk  # the same CMK[1] from the zero IMSK
    assert old.s_imck_msk == seed != new.s_imck_msk
    assert old.master_keys()[0].hex() == vector["msk"] != new.master_keys()[0].hex()


def _bound(compat: str) -> KeyChain:
    """A chain after one inner method with MSK and EMSK."""
    seed = bytes(range(40))
    chain = KeyChain(SuiteHashes(), compat, seed, seed)  # type: ignore[arg-type]
    chain.add_inner(KeyMaterial(msk=bytes(range(64)), emsk=bytes(range(64, 128))))
    return chain


def test_difference_3_final_keys_from_the_emsk_chain() -> None:
    msks = {}
    for compat in ("rfc7170", "rfc9930"):
        chain = _bound(compat)
        request = chain.binding(
            CryptoBinding(TEAP_VERSION, TEAP_VERSION, 0, CryptoBinding.REQUEST, bytes(32)),
            b"",
            b"",
        )
        assert request.flags == CryptoBinding.BOTH
        assert chain.verify(request, b"", b"") is None
        assert chain.bound_with_emsk
        msks[compat] = chain.master_keys()[0]
    assert msks["rfc7170"] != msks["rfc9930"]
    plain = _bound("rfc9930")
    assert plain.master_keys()[0] == msks["rfc7170"]  # no EMSK binding verified yet


def test_difference_4_stale_emsk_cmk() -> None:
    """An inner method without EMSK after one with it: hostapd 2.10 keeps the old
    CMK_EMSK (Flags = both); RFC 9930 sends the MSK Compound MAC only."""
    flags = {}
    for compat in ("rfc7170", "rfc9930"):
        chain = _bound(compat)
        chain.add_inner(KeyMaterial(msk=bytes(64), emsk=b""), mschapv2=False)
        template = CryptoBinding(TEAP_VERSION, TEAP_VERSION, 0, CryptoBinding.REQUEST, bytes(32))
        flags[compat] = chain.binding(template, b"", b"").flags
    assert flags == {"rfc7170": CryptoBinding.BOTH, "rfc9930": CryptoBinding.MSK}


def test_tampered_compound_mac_and_outer_tlvs_fail() -> None:
    chain = _bound("rfc9930")
    template = CryptoBinding(TEAP_VERSION, TEAP_VERSION, 0, CryptoBinding.REQUEST, bytes(32))
    good = chain.binding(template, b"outer", b"")
    bad_mac = CryptoBinding(
        good.version,
        good.received_version,
        good.flags,
        good.subtype,
        good.nonce,
        good.emsk_mac,
        bytes([good.msk_mac[0] ^ 1]) + good.msk_mac[1:],
    )
    assert chain.verify(bad_mac, b"outer", b"") == "MSK Compound MAC does not verify"
    assert chain.verify(good, b"other outer", b"") is not None  # Outer TLVs are bound
    assert chain.verify(good, b"outer", b"") is None


def test_imsk_from_msk_pads_and_cuts() -> None:
    assert imsk("sha256", b"\x01" * 10, None) == (b"\x01" * 10 + bytes(22), None)
    assert imsk("sha256", b"\x02" * 64, None)[0] == b"\x02" * 32
    assert imsk("sha256", None, None) == (bytes(32), None)
