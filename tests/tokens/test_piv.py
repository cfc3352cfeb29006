"""tokens.piv against the virtual PIV card: in process, through pcscd, and with OpenSC."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import require_tool
from tests.tokens.cards import piv_keys, piv_state
from tests.tokens.conftest import READERS, CardFactory
from tokens.errors import StatusError
from tokens.pcsc import ApduTransport, connect
from tokens.piv import PinBlockedError, PivSession, WrongPinError, verify_signature
from tokens.sim import make_card
from tokens.sim.card import SimLink

SLOTS = (0x9A, 0x9C, 0x9D, 0x9E)


def session(extended: bool = False, **kw: object) -> tuple[PivSession, SimLink]:
    link = SimLink(make_card("piv", {"piv": piv_state(**kw)}))  # type: ignore[arg-type]
    return PivSession(ApduTransport(link, extended=extended)), link


def test_certificates_match_the_slot_keys() -> None:
    s, link = session()
    infos = {i.slot: i for i in s.certificates()}
    assert set(infos) == set(SLOTS)
    for slot in SLOTS:
        key = piv_keys()[f"{slot:02x}"]
        assert infos[slot].certificate.public_key() == key.public_key()
    # the RSA certificate is longer than one response: GET RESPONSE fetched the rest
    assert any(apdu[1] == 0xC0 for apdu in link.transmitted)


def test_missing_certificate_is_none() -> None:
    s, _ = session(slots=("9a",))
    assert s.certificate(0x9C) is None
    assert [i.slot for i in s.certificates()] == [0x9A]


@pytest.mark.parametrize("extended", [False, True])
@pytest.mark.parametrize("slot", SLOTS)
def test_signatures_verify_with_the_slot_certificate(slot: int, extended: bool) -> None:
    s, link = session(extended=extended)
    message = b"sign me, slot %02X" % slot
    signature = s.sign(slot, message, pin="123456")
    cert = s.certificate(slot)
    assert cert is not None
    assert verify_signature(cert, message, signature)
    assert not verify_signature(cert, message + b"!", signature)
    if slot == 0x9C and not extended:  # 256-byte RSA block + template: a command chain
        assert any(apdu[0] & 0x10 for apdu in link.transmitted)
    if slot == 0x9C and extended:
        assert not any(apdu[0] & 0x10 for apdu in link.transmitted)


def test_rsa_signature_is_standard_pkcs1_v15() -> None:
    s, _ = session()
    signature = s.sign(0x9C, b"payload", pin="123456", hash_name="sha384")
    key = piv_keys()["9c"].public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    from cryptography.hazmat.primitives.asymmetric import padding

    key.verify(signature, b"payload", padding.PKCS1v15(), hashes.SHA384())


def test_ecdsa_p384_signature_is_standard() -> None:
    s, _ = session()
    signature = s.sign(0x9D, b"payload", pin="123456")
    key = piv_keys()["9d"].public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature, b"payload", ec.ECDSA(hashes.SHA384()))


def test_pin_is_needed_and_counted() -> None:
    s, _ = session()
    assert s.pin_retries() == 3
    with pytest.raises(StatusError) as info:
        s.sign(0x9A, b"x")
    assert info.value.sw == 0x6982
    with pytest.raises(WrongPinError) as wrong:
        s.verify_pin("000000")
    assert wrong.value.retries == 2
    assert s.pin_retries() == 2
    s.verify_pin("123456")
    assert s.pin_retries() is None  # verified
    s.sign(0x9A, b"x")
    s.sign(0x9A, b"x")  # 9A: once per session
    # 9E (card authentication) needs no PIN at all
    fresh, _ = session()
    fresh.sign(0x9E, b"x")


def test_slot_9c_wants_the_pin_before_every_signature() -> None:
    s, _ = session()
    s.sign(0x9C, b"one", pin="123456")
    with pytest.raises(StatusError) as info:
        s.sign(0x9C, b"two")
    assert info.value.sw == 0x6982


def test_pin_blocks_after_three_wrong_tries() -> None:
    s, _ = session()
    for left in (2, 1):
        with pytest.raises(WrongPinError) as wrong:
            s.verify_pin("999999")
        assert wrong.value.retries == left
    with pytest.raises(PinBlockedError):
        s.verify_pin("999999")
    with pytest.raises(PinBlockedError):
        s.verify_pin("123456")
    assert s.pin_retries() == 0


@settings(max_examples=100)
@given(st.binary(min_size=4, max_size=300))
def test_piv_applet_survives_arbitrary_commands(apdu: bytes) -> None:
    card = make_card("piv", {"piv": piv_state(slots=("9a",))})
    card.transmit(bytes.fromhex("00a4040005a000000308"))
    assert len(card.transmit(apdu)) >= 2


# -- through pcscd, and with OpenSC ----------------------------------------------------------


@pytest.mark.interop
def test_driver_through_pcscd(virtual_card: CardFactory) -> None:
    virtual_card("piv", {"piv": piv_state()}, reader=READERS[1])
    with connect(READERS[1]) as link:
        transport = ApduTransport(link)
        assert transport.extended  # the sim's ATR says so, and vpcd carries extended APDUs
        s = PivSession(transport)
        for slot in SLOTS:
            signature = s.sign(slot, b"through pcscd", pin="123456")
            cert = s.certificate(slot)
            assert cert is not None and verify_signature(cert, b"through pcscd", signature)


def _run(*cmd: str) -> subprocess.CompletedProcess[bytes]:
    out = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out


@pytest.mark.interop
def test_opensc_reads_the_certificates(virtual_card: CardFactory) -> None:
    tools = require_tool("opensc-tool", "pkcs15-tool")
    virtual_card("piv", {"piv": piv_state()})
    assert (
        b"Personal Identity Verification"
        in _run(tools["opensc-tool"], "--reader", "0", "--name").stdout
    )
    # pkcs15-tool's IDs 01..04 are OpenSC's names for slots 9A, 9C, 9D, 9E
    for pkcs15_id, slot in zip(("01", "02", "03", "04"), SLOTS, strict=True):
        pem = _run(tools["pkcs15-tool"], "--reader", "0", "--read-certificate", pkcs15_id).stdout
        cert = x509.load_pem_x509_certificate(pem)
        assert cert.public_key() == piv_keys()[f"{slot:02x}"].public_key()
        with connect(READERS[0]) as link:
            ours = PivSession(ApduTransport(link)).certificate(slot)
        assert ours is not None and ours.public_bytes(Encoding.DER) == cert.public_bytes(
            Encoding.DER
        )


PKCS11 = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")


@pytest.mark.interop
@pytest.mark.parametrize(
    ("pkcs15_id", "slot", "mechanism"),
    [("01", 0x9A, "ECDSA-SHA256"), ("02", 0x9C, "SHA256-RSA-PKCS")],
)
def test_opensc_pkcs11_signs_with_the_virtual_card(
    virtual_card: CardFactory, tmp_path: Path, pkcs15_id: str, slot: int, mechanism: str
) -> None:
    tools = require_tool("pkcs11-tool")
    if not PKCS11.exists():
        pytest.fail(f"{PKCS11} missing (apt-get install opensc-pkcs11)")
    virtual_card("piv", {"piv": piv_state()})
    message = tmp_path / "message"
    message.write_bytes(b"signed by opensc through our card")
    signature = tmp_path / "signature"
    _run(
        tools["pkcs11-tool"],
        "--module",
        str(PKCS11),
        "--login",
        "--pin",
        "123456",
        "--sign",
        "--id",
        pkcs15_id,
        "-m",
        mechanism,
        "-i",
        str(message),
        "-o",
        str(signature),
        "--signature-format",
        "openssl",
    )
    with connect(READERS[0]) as link:
        cert = PivSession(ApduTransport(link)).certificate(slot)
    assert cert is not None
    assert verify_signature(cert, message.read_bytes(), signature.read_bytes())
