"""PIV cards, host side: certificates, PIN and signatures (NIST SP 800-73-4).

A :class:`PivSession` SELECTs the PIV application (part 2, 3.1.1), reads the X.509
certificates of the four key slots with GET DATA (part 2, 3.1.2; the objects of part 1,
table 3: 9A authentication 5FC105, 9C digital signature 5FC10A, 9D key management
5FC10B, 9E card authentication 5FC101), checks the PIN with VERIFY (part 2, 3.2.1:
8 bytes, padded with FF; 63CX tells the tries left, 6983 a blocked PIN), and signs with
GENERAL AUTHENTICATE (part 2, 3.2.4; the 7C template with the challenge in 81 and an
empty 82 asking for the response).

Signing follows SP 800-78-4 section 3: for ECC P-256/P-384 the card signs the hash
(SHA-256/SHA-384, as long as the field) and returns a DER ECDSA signature; for RSA-2048
the card does the raw private-key operation, so the host builds the EMSA-PKCS1-v1_5
block (RFC 8017 section 9.2).  :func:`verify_signature` checks the result against the
slot's certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from eapkit.errors import DecodeError
from tokens.apdu import tlv, tlv_dict
from tokens.errors import ProtocolError, StatusError, TokenError
from tokens.pcsc import ApduTransport

__all__ = [
    "AID",
    "SLOTS",
    "PinBlockedError",
    "PivSession",
    "SlotInfo",
    "WrongPinError",
    "verify_signature",
]

AID = bytes.fromhex("a000000308000010000100")

SLOTS: dict[int, tuple[int, str]] = {
    0x9A: (0x5FC105, "PIV authentication"),
    0x9C: (0x5FC10A, "digital signature"),
    0x9D: (0x5FC10B, "key management"),
    0x9E: (0x5FC101, "card authentication"),
}
ALG_RSA2048, ALG_P256, ALG_P384 = 0x07, 0x11, 0x14

# EMSA-PKCS1-v1_5 DigestInfo prefixes (RFC 8017 section 9.2, note 1)
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}

_MEANINGS = {
    0x6982: "PIN not verified (security status not satisfied)",
    0x6983: "PIN blocked",
    0x6A80: "the card refused the data (wrong length or algorithm for this key)",
    0x6A82: "no such data object on the card",
    0x6A88: "no key in this slot",
}


class WrongPinError(TokenError):
    """VERIFY refused the PIN; ``retries`` is how many tries are left."""

    def __init__(self, retries: int) -> None:
        super().__init__(f"wrong PIN, {retries} tries left")
        self.retries = retries


class PinBlockedError(TokenError):
    """The PIN is blocked (no tries left): the PUK or a reset is needed."""


@dataclass(frozen=True)
class SlotInfo:
    slot: int
    purpose: str
    certificate: x509.Certificate


def _pin_block(pin: str) -> bytes:
    raw = pin.encode()
    if not 6 <= len(raw) <= 8:
        raise ValueError("a PIV PIN is 6 to 8 bytes")
    return raw.ljust(8, b"\xff")


def _algorithm_of(key: object) -> int:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048:
        return ALG_RSA2048
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name == "secp256r1":
            return ALG_P256
        if key.curve.name == "secp384r1":
            return ALG_P384
    raise TokenError("this key type is not one PIV signs with here (RSA-2048, P-256, P-384)")


class PivSession:
    """The PIV application of one card over an :class:`~tokens.pcsc.ApduTransport`."""

    def __init__(self, transport: ApduTransport) -> None:
        self.transport = transport
        transport.select(AID, what="SELECT PIV")

    def _send(self, ins: int, p1: int, p2: int, data: bytes = b"", what: str = "") -> bytes:
        return self.transport.send(0x00, ins, p1, p2, data, what=what, meanings=_MEANINGS)

    def get_data(self, tag: int) -> bytes:
        """GET DATA: the content of data object ``tag`` (inside its 53 template)."""
        size = max(1, (tag.bit_length() + 7) // 8)
        raw = self._send(0xCB, 0x3F, 0xFF, tlv(0x5C, tag.to_bytes(size, "big")), "GET DATA")
        try:
            content = tlv_dict(raw).get(0x53)
        except DecodeError as exc:
            raise ProtocolError(f"GET DATA answer is not BER-TLV: {exc}") from None
        if content is None:
            raise ProtocolError("GET DATA answer without a 53 template")
        return content

    def certificate(self, slot: int) -> x509.Certificate | None:
        """The certificate in ``slot`` (9A/9C/9D/9E), or None when the slot has none."""
        if slot not in SLOTS:
            raise ValueError(f"unknown PIV slot {slot:02X}")
        try:
            content = self.get_data(SLOTS[slot][0])
        except StatusError as err:
            if err.sw == 0x6A82:
                return None
            raise
        try:
            fields = tlv_dict(content)
        except DecodeError as exc:
            raise ProtocolError(f"certificate object is not BER-TLV: {exc}") from None
        der = fields.get(0x70)
        if der is None:
            return None
        if fields.get(0x71, b"\x00")[:1] not in (b"\x00", b""):
            raise TokenError("compressed PIV certificates are not supported")
        try:
            return x509.load_der_x509_certificate(der)
        except ValueError:
            raise ProtocolError(f"slot {slot:02X} holds no parsable certificate") from None

    def certificates(self) -> list[SlotInfo]:
        out = []
        for slot, (_tag, purpose) in SLOTS.items():
            cert = self.certificate(slot)
            if cert is not None:
                out.append(SlotInfo(slot, purpose, cert))
        return out

    def pin_retries(self) -> int | None:
        """Tries left (None when the PIN is already verified in this session)."""
        try:
            self._send(0x20, 0x00, 0x80, what="VERIFY (status)")
        except StatusError as err:
            if err.retries is not None:
                return err.retries
            if err.sw == 0x6983:
                return 0
            raise
        return None

    def verify_pin(self, pin: str) -> None:
        """VERIFY the PIN; WrongPinError (with tries left) or PinBlockedError."""
        try:
            self._send(0x20, 0x00, 0x80, _pin_block(pin), "VERIFY PIN")
        except StatusError as err:
            if err.retries is not None:
                raise WrongPinError(err.retries) from None
            if err.sw == 0x6983:
                raise PinBlockedError("PIN blocked") from None
            raise

    def general_authenticate(self, slot: int, algorithm: int, challenge: bytes) -> bytes:
        """GENERAL AUTHENTICATE: the card's private-key operation on ``challenge``."""
        template = tlv(0x7C, tlv(0x82) + tlv(0x81, challenge))
        raw = self._send(0x87, algorithm, slot, template, "GENERAL AUTHENTICATE")
        try:
            response = tlv_dict(tlv_dict(raw).get(0x7C, b"")).get(0x82)
        except DecodeError as exc:
            raise ProtocolError(f"GENERAL AUTHENTICATE answer is not BER-TLV: {exc}") from None
        if not response:
            raise ProtocolError("GENERAL AUTHENTICATE answer without a response (82)")
        return response

    def sign(
        self,
        slot: int,
        message: bytes,
        *,
        public_key: object | None = None,
        hash_name: str | None = None,
        pin: str | None = None,
    ) -> bytes:
        """Sign ``message`` with the key in ``slot``.

        The key type comes from ``public_key`` or the slot's certificate.  ECDSA:
        SHA-256 for P-256, SHA-384 for P-384 (DER signature).  RSA: PKCS#1 v1.5 with
        ``hash_name`` (default sha256).  ``pin`` is verified first when given (slot 9C
        wants it before every signature).
        """
        if public_key is None:
            cert = self.certificate(slot)
            if cert is None:
                raise TokenError(f"slot {slot:02X} has no certificate: pass public_key")
            public_key = cert.public_key()
        algorithm = _algorithm_of(public_key)
        with self.transport.transaction():
            if pin is not None:
                self.verify_pin(pin)
            if algorithm == ALG_RSA2048:
                name = hash_name or "sha256"
                if name not in _DIGEST_INFO:
                    raise ValueError("hash must be sha256, sha384 or sha512")
                t = _DIGEST_INFO[name] + _hash(name, message)
                block = b"\x00\x01" + b"\xff" * (256 - len(t) - 3) + b"\x00" + t
                return self.general_authenticate(slot, algorithm, block)
            name = "sha256" if algorithm == ALG_P256 else "sha384"
            return self.general_authenticate(slot, algorithm, _hash(name, message))


def _hash(name: str, message: bytes) -> bytes:
    h = hashes.Hash(
        {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[name]
    )
    h.update(message)
    return h.finalize()


def verify_signature(
    certificate: x509.Certificate, message: bytes, signature: bytes, hash_name: str | None = None
) -> bool:
    """Whether ``signature`` (from :meth:`PivSession.sign`) checks with the certificate."""
    key = certificate.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            algorithm: hashes.HashAlgorithm = {
                "sha256": hashes.SHA256(),
                "sha384": hashes.SHA384(),
                "sha512": hashes.SHA512(),
            }[hash_name or "sha256"]
            key.verify(signature, message, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            digest = hashes.SHA256() if key.curve.key_size == 256 else hashes.SHA384()
            key.verify(signature, _hash(digest.name, message), ec.ECDSA(Prehashed(digest)))
        else:
            return False
    except InvalidSignature:
        return False
    return True
