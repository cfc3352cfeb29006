"""Virtual PIV applet: data objects, PIN and signatures (NIST SP 800-73-4 part 2).

What it implements, by section of SP 800-73-4 part 2:

- 3.1.1 SELECT (AID A0 00 00 03 08 00 00 10 00 01 00): the application property
  template (61) with the AID (4F) and the coexistent tag allocation authority (79).
- 3.1.2 GET DATA (CB 3F FF, tag list 5C): the data object inside a 53 template; the
  certificates of slots 9A/9C/9D/9E are 5FC105/5FC10A/5FC10B/5FC101, each holding 70
  (DER certificate), 71 (CertInfo) and FE (error detection code).
- 3.2.1 VERIFY (20 00 80): the 8-byte PIN padded with FF; an empty VERIFY asks for the
  status (9000 or 63CX tries left); a blocked PIN answers 6983.
- 3.2.4 GENERAL AUTHENTICATE (87, P1 = algorithm 07 RSA-2048 / 11 ECC P-256 /
  14 ECC P-384, P2 = key reference): the template 7C with 81 (challenge) and an empty
  82 (response wanted); the answer is 7C { 82 signature }.  RSA is the raw private-key
  operation on an already padded block; ECC signs the hash given (ECDSA, DER).
- 3.2.2 CHANGE REFERENCE DATA (24 00 80): a new PIN after the old.

Keys and certificates come from the card's state (a test preloads them); key
generation and the management key are not simulated.  Slot 9C asks for the PIN before
every signature ("PIN always"), as on real cards; 9E (card authentication) never does.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from tokens.apdu import Apdu, tlv, tlv_dict
from tokens.sim.card import Applet, CardResponse, SwError

AID = bytes.fromhex("a000000308000010000100")
SELECT_RESPONSE = tlv(0x61, tlv(0x4F, AID[5:]) + tlv(0x79, tlv(0x4F, AID[:5])))

SLOT_OBJECTS = {0x9A: 0x5FC105, 0x9C: 0x5FC10A, 0x9D: 0x5FC10B, 0x9E: 0x5FC101}
ALG_RSA2048, ALG_P256, ALG_P384 = 0x07, 0x11, 0x14
PIN_ALWAYS_SLOTS = {0x9C}
NO_PIN_SLOTS = {0x9E}
DEFAULT_PIN = "123456"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def key_algorithm(key: PrivateKey) -> int:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size != 2048:
            raise ValueError("only RSA-2048 is simulated")
        return ALG_RSA2048
    return {"secp256r1": ALG_P256, "secp384r1": ALG_P384}[key.curve.name]


def certificate_object(der: bytes) -> bytes:
    """The content of a certificate data object (SP 800-73-4 part 1, table 10)."""
    return tlv(0x70, der) + tlv(0x71, b"\x00") + tlv(0xFE)


def _pin_bytes(pin: str) -> bytes:
    return pin.encode().ljust(8, b"\xff")


class PivApplet(Applet):
    aid = AID
    name = "piv"

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        super().__init__()
        state = state or {}
        self.pin = _pin_bytes(str(state.get("pin", DEFAULT_PIN)))
        self.pin_tries = int(state.get("pin_tries", 3))
        self.pin_left = int(state.get("pin_left", self.pin_tries))
        self.keys: dict[int, PrivateKey] = {}
        for slot, pem in state.get("keys", {}).items():
            key = serialization.load_pem_private_key(str(pem).encode(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
            self.keys[int(slot, 16)] = key
        self.objects: dict[int, bytes] = {
            int(tag, 16): base64.b64decode(value) for tag, value in state.get("objects", {}).items()
        }
        for slot, der in state.get("certificates", {}).items():
            self.objects[SLOT_OBJECTS[int(slot, 16)]] = certificate_object(base64.b64decode(der))
        self.verified = False

    def state(self) -> dict[str, Any]:
        return {
            "pin": self.pin.rstrip(b"\xff").decode(),
            "pin_tries": self.pin_tries,
            "pin_left": self.pin_left,
            "keys": {
                f"{slot:02x}": key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode()
                for slot, key in self.keys.items()
            },
            "objects": {
                f"{tag:x}": base64.b64encode(v).decode() for tag, v in self.objects.items()
            },
        }

    def select(self, p1: int, p2: int) -> bytes:
        # Re-selecting PIV keeps the PIN status (SP 800-73-4 part 2, 3.1.1); leaving it not.
        return SELECT_RESPONSE

    def deselect(self) -> None:
        self.verified = False

    def process(self, apdu: Apdu) -> CardResponse:
        if apdu.ins == 0xCB:
            return self._get_data(apdu)
        if apdu.ins == 0x20:
            return self._verify(apdu)
        if apdu.ins == 0x24:
            return self._change_pin(apdu)
        if apdu.ins == 0x87:
            return self._general_authenticate(apdu)
        raise SwError(0x6D00)

    def _get_data(self, apdu: Apdu) -> CardResponse:
        if (apdu.p1, apdu.p2) != (0x3F, 0xFF):
            raise SwError(0x6A86)
        tag_list = tlv_dict(apdu.data).get(0x5C)
        if tag_list is None or not 1 <= len(tag_list) <= 3:
            raise SwError(0x6A80)
        content = self.objects.get(int.from_bytes(tag_list, "big"))
        if content is None:
            raise SwError(0x6A82)
        return tlv(0x53, content), 0x9000

    def _verify(self, apdu: Apdu) -> CardResponse:
        if apdu.p1 not in (0x00, 0xFF) or apdu.p2 != 0x80:
            raise SwError(0x6A88)
        if apdu.p1 == 0xFF:  # reset the security status (SP 800-73-4 3.2.1)
            self.verified = False
            return b"", 0x9000
        if not apdu.data:
            if self.verified:
                return b"", 0x9000
            return b"", 0x63C0 | self.pin_left if self.pin_left else 0x6983
        if self.pin_left == 0:
            raise SwError(0x6983)
        if len(apdu.data) != 8:
            raise SwError(0x6A80)
        if hmac.compare_digest(apdu.data, self.pin):
            self.pin_left = self.pin_tries
            self.verified = True
            self.changed()
            return b"", 0x9000
        self.pin_left -= 1
        self.verified = False
        self.changed()
        return b"", 0x63C0 | self.pin_left if self.pin_left else 0x6983

    def _change_pin(self, apdu: Apdu) -> CardResponse:
        if apdu.p2 != 0x80 or len(apdu.data) != 16:
            raise SwError(0x6A80)
        old, new = apdu.data[:8], apdu.data[8:]
        if self.pin_left == 0:
            raise SwError(0x6983)
        if not hmac.compare_digest(old, self.pin):
            self.pin_left -= 1
            self.changed()
            return b"", 0x63C0 | self.pin_left if self.pin_left else 0x6983
        self.pin, self.pin_left = new, self.pin_tries
        self.changed()
        return b"", 0x9000

    def _general_authenticate(self, apdu: Apdu) -> CardResponse:
        slot, algorithm = apdu.p2, apdu.p1
        key = self.keys.get(slot)
        if key is None:
            raise SwError(0x6A88)  # referenced data not found
        if key_algorithm(key) != algorithm:
            raise SwError(0x6A80)
        template = tlv_dict(apdu.data).get(0x7C)
        if template is None:
            raise SwError(0x6A80)
        inner = tlv_dict(template)
        challenge = inner.get(0x81)
        if challenge is None or inner.get(0x82) != b"":
            raise SwError(0x6A80)
        if slot not in NO_PIN_SLOTS and not self.verified:
            raise SwError(0x6982)
        if isinstance(key, rsa.RSAPrivateKey):
            if len(challenge) != 256:
                raise SwError(0x6A80)
            signature = _rsa_private(key, challenge)
        else:
            size = (key.curve.key_size + 7) // 8
            if len(challenge) != size:
                raise SwError(0x6A80)
            hash_alg: hashes.HashAlgorithm = hashes.SHA256() if size == 32 else hashes.SHA384()
            signature = key.sign(challenge, ec.ECDSA(Prehashed(hash_alg)))
        if slot in PIN_ALWAYS_SLOTS:
            self.verified = False
        return tlv(0x7C, tlv(0x82, signature)), 0x9000


def _rsa_private(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    """The raw RSA private-key operation (RFC 8017 section 5.1.2, RSADP/RSASP1, via CRT)."""
    n = key.private_numbers()
    m = int.from_bytes(block, "big")
    modulus = n.public_numbers.n
    if m >= modulus:
        raise SwError(0x6A80)
    m1 = pow(m, n.dmp1, n.p)
    m2 = pow(m, n.dmq1, n.q)
    h = (n.iqmp * (m1 - m2)) % n.p
    return (m2 + h * n.q).to_bytes(256, "big")
