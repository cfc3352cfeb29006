"""Virtual CTAP2 authenticator over ISO 7816 (the NFC/CCID transport of CTAP).

FIDO "Client to Authenticator Protocol" 2.1, section 11.3 (ISO 7816, NFC): SELECT the
FIDO AID A0 00 00 06 47 2F 00 01 (answers "FIDO_2_0"); NFCCTAP_MSG (CLA 80, INS 10)
carries one CTAP2 command byte + CBOR parameters, the answer is a CTAP status byte +
CBOR.  This card always answers at once (never 9100 "status update"), so
NFCCTAP_GETRESPONSE is not needed.

Commands (CTAP 2.1 section 6): authenticatorMakeCredential (0x01), GetAssertion
(0x02), GetNextAssertion (0x08), GetInfo (0x04), ClientPIN (0x06: getPINRetries,
getKeyAgreement, setPIN, changePIN, getPinToken, getPinUvAuthTokenUsingPinWithPermissions,
with PIN/UV auth protocols one and two, section 6.5.6-6.5.7) and Reset (0x07).
Credentials are ES256 (COSE -7) keys kept on the card (discoverable or not), the
attestation is "packed" self-attestation (WebAuthn Level 2 section 8.2): signed with
the credential's own key, no certificate.

User presence is granted at once (a real key waits for a touch) and there is no
built-in user verification: the PIN is the only UV.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from eapkit.errors import DecodeError
from tokens.apdu import Apdu
from tokens.sim import cbor
from tokens.sim.card import Applet, CardResponse, SwError

AID = bytes.fromhex("a0000006472f0001")
# "eapkit virtual authenticator": a made-up AAGUID no real model uses
AAGUID = bytes.fromhex("ea0c1700e1ca7b5e0000000000000001")

CMD_MAKE_CREDENTIAL, CMD_GET_ASSERTION, CMD_GET_INFO = 0x01, 0x02, 0x04
CMD_CLIENT_PIN, CMD_RESET, CMD_GET_NEXT_ASSERTION = 0x06, 0x07, 0x08

OK = 0x00
ERR_INVALID_COMMAND, ERR_INVALID_PARAMETER, ERR_INVALID_CBOR = 0x01, 0x02, 0x12
ERR_MISSING_PARAMETER, ERR_CREDENTIAL_EXCLUDED, ERR_UNSUPPORTED_ALGORITHM = 0x14, 0x19, 0x26
ERR_UNSUPPORTED_OPTION, ERR_NO_CREDENTIALS, ERR_NOT_ALLOWED = 0x2B, 0x2E, 0x30
ERR_PIN_INVALID, ERR_PIN_BLOCKED, ERR_PIN_AUTH_INVALID, ERR_PIN_AUTH_BLOCKED = (
    0x31,
    0x32,
    0x33,
    0x34,
)
ERR_PIN_NOT_SET, ERR_PIN_REQUIRED, ERR_PIN_POLICY_VIOLATION = 0x35, 0x36, 0x37

FLAG_UP, FLAG_UV, FLAG_AT = 0x01, 0x04, 0x40
PERM_MC, PERM_GA = 0x01, 0x02
ES256 = -7

T = TypeVar("T")


class CtapError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"CTAP error 0x{code:02X}")
        self.code = code


def _require(condition: bool, code: int = ERR_INVALID_PARAMETER) -> None:
    if not condition:
        raise CtapError(code)


def _get(params: dict[int, Any], key: int, kind: type[T], default: T | None = None) -> T:
    """Parameter ``key`` of a CTAP command, of type ``kind`` (missing: ``default``)."""
    value = params.get(key)
    if value is None:
        if default is None:
            raise CtapError(ERR_MISSING_PARAMETER)
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CtapError(ERR_INVALID_PARAMETER)
    return value


def cose_es256(public: ec.EllipticCurvePublicKey) -> dict[int, Any]:
    """The COSE_Key of an ES256 public key (RFC 9053 section 7.1.1, RFC 9052 section 7)."""
    numbers = public.public_numbers()
    return {
        1: 2,
        3: ES256,
        -1: 1,
        -2: numbers.x.to_bytes(32, "big"),
        -3: numbers.y.to_bytes(32, "big"),
    }


def _public_from_cose(key: Any) -> ec.EllipticCurvePublicKey:
    _require(isinstance(key, dict) and key.get(1) == 2 and key.get(-1) == 1)
    x, y = key.get(-2), key.get(-3)
    _require(isinstance(x, bytes) and isinstance(y, bytes) and len(x) == len(y) == 32)
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError:
        raise CtapError(ERR_INVALID_PARAMETER) from None


class PinProtocol:
    """PIN/UV auth protocol one (CTAP 2.1 section 6.5.6) or two (6.5.7)."""

    def __init__(self, version: int) -> None:
        self.version = version

    def keys(self, z: bytes) -> tuple[bytes, bytes]:
        """(HMAC key, AES key) from the ECDH x-coordinate."""
        if self.version == 1:
            k = hashlib.sha256(z).digest()
            return k, k

        def hkdf(info: bytes) -> bytes:
            return HKDF(hashes.SHA256(), 32, b"\x00" * 32, info).derive(z)

        return hkdf(b"CTAP2 HMAC key"), hkdf(b"CTAP2 AES key")

    def encrypt(self, aes_key: bytes, plaintext: bytes) -> bytes:
        iv = b"\x00" * 16 if self.version == 1 else os.urandom(16)
        enc = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
        out = enc.update(plaintext) + enc.finalize()
        return out if self.version == 1 else iv + out

    def decrypt(self, aes_key: bytes, ciphertext: bytes) -> bytes:
        if self.version == 1:
            iv, body = b"\x00" * 16, ciphertext
        else:
            iv, body = ciphertext[:16], ciphertext[16:]
        _require(len(body) > 0 and len(body) % 16 == 0 and len(iv) == 16)
        dec = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
        return dec.update(body) + dec.finalize()

    def authenticate(self, key: bytes, message: bytes) -> bytes:
        mac = hmac.digest(key, message, "sha256")
        return mac[:16] if self.version == 1 else mac

    def verify(self, key: bytes, message: bytes, signature: Any) -> bool:
        return isinstance(signature, bytes) and hmac.compare_digest(
            self.authenticate(key, message), signature
        )


@dataclass
class Credential:
    credential_id: bytes
    rp_id: str
    user: dict[str, Any]
    key: ec.EllipticCurvePrivateKey
    discoverable: bool
    sign_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.credential_id.hex(),
            "rp_id": self.rp_id,
            "user_id": bytes(self.user.get("id", b"")).hex(),
            "user_name": self.user.get("name", ""),
            "user_display_name": self.user.get("displayName", ""),
            "key": self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "discoverable": self.discoverable,
            "sign_count": self.sign_count,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Credential:
        key = serialization.load_pem_private_key(str(d["key"]).encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        user: dict[str, Any] = {"id": bytes.fromhex(str(d["user_id"]))}
        if d.get("user_name"):
            user["name"] = d["user_name"]
        if d.get("user_display_name"):
            user["displayName"] = d["user_display_name"]
        return cls(
            bytes.fromhex(str(d["id"])),
            str(d["rp_id"]),
            user,
            key,
            bool(d.get("discoverable", False)),
            int(d.get("sign_count", 0)),
        )


class Fido2Applet(Applet):
    aid = AID
    name = "fido2"

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        super().__init__()
        state = state or {}
        self.pin_hash: bytes | None = (
            bytes.fromhex(state["pin_hash"]) if state.get("pin_hash") else None
        )
        if state.get("pin"):
            self.pin_hash = hashlib.sha256(str(state["pin"]).encode()).digest()[:16]
        self.pin_retries = int(state.get("pin_retries", 8))
        self.credentials = [Credential.from_json(c) for c in state.get("credentials", [])]
        self._power_up()

    def _power_up(self) -> None:
        # Key agreement key and pinUvAuthToken are regenerated at power-up (6.5.5.1).
        self.agreement_key = ec.generate_private_key(ec.SECP256R1())
        self.pin_token = os.urandom(32)
        self.token_permissions = 0
        self.token_rp_id: str | None = None
        self.consecutive_failures = 0
        self.pending: list[bytes] = []
        self._assertion_context: tuple[str, bytes, bool, bool, bool] = ("", b"", True, False, False)

    def state(self) -> dict[str, Any]:
        return {
            "pin_hash": self.pin_hash.hex() if self.pin_hash else "",
            "pin_retries": self.pin_retries,
            "credentials": [c.to_json() for c in self.credentials],
        }

    def select(self, p1: int, p2: int) -> bytes:
        self.pending = []
        return b"FIDO_2_0"

    def process(self, apdu: Apdu) -> CardResponse:
        if apdu.cla != 0x80 or apdu.ins != 0x10:
            raise SwError(0x6D00 if apdu.ins != 0x10 else 0x6E00)
        if not apdu.data:
            raise SwError(0x6700)
        try:
            out = self.ctap(apdu.data[0], apdu.data[1:])
        except CtapError as err:
            return bytes((err.code,)), 0x9000
        return bytes((OK,)) + (cbor.encode(out) if out is not None else b""), 0x9000

    def ctap(self, command: int, payload: bytes) -> dict[int, Any] | None:
        if command == CMD_GET_INFO:
            return self._get_info()
        if command == CMD_GET_NEXT_ASSERTION:
            _require(bool(self.pending), ERR_NOT_ALLOWED)
            return self._next_assertion()
        handlers = {
            CMD_MAKE_CREDENTIAL: self._make_credential,
            CMD_GET_ASSERTION: self._get_assertion,
            CMD_CLIENT_PIN: self._client_pin,
        }
        if command == CMD_RESET:
            self.credentials, self.pin_hash, self.pin_retries = [], None, 8
            self._power_up()
            self.changed()
            return None
        if command not in handlers:
            raise CtapError(ERR_INVALID_COMMAND)
        try:
            params = cbor.decode(payload)
        except DecodeError:
            raise CtapError(ERR_INVALID_CBOR) from None
        _require(isinstance(params, dict), ERR_INVALID_CBOR)
        return handlers[command](params)

    def _get_info(self) -> dict[int, Any]:
        return {
            1: ["FIDO_2_0", "FIDO_2_1"],
            3: AAGUID,
            4: {
                "rk": True,
                "up": True,
                "plat": False,
                "clientPin": self.pin_hash is not None,
                "pinUvAuthToken": True,
            },
            5: 1200,
            6: [2, 1],
            9: ["nfc"],
            10: [{"alg": ES256, "type": "public-key"}],
        }

    # -- user verification ------------------------------------------------------------

    def _check_pin_auth(
        self,
        params: dict[int, Any],
        message: bytes,
        permission: int,
        rp_id: str,
        keys: tuple[int, int],
    ) -> bool:
        """Whether a valid pinUvAuthParam came with the command (sets UV)."""
        if params.get(keys[0]) is None:
            return False
        auth = _get(params, keys[0], bytes)
        if auth == b"":  # "touch to select" probe (6.1.2 step 1)
            raise CtapError(ERR_PIN_INVALID if self.pin_hash else ERR_PIN_NOT_SET)
        protocol = _get(params, keys[1], int)
        _require(protocol in (1, 2))
        if self.pin_hash is None:
            raise CtapError(ERR_PIN_NOT_SET)
        if not PinProtocol(protocol).verify(self.pin_token, message, auth):
            raise CtapError(ERR_PIN_AUTH_INVALID)
        if self.token_permissions and not self.token_permissions & permission:
            raise CtapError(ERR_PIN_AUTH_INVALID)
        if self.token_rp_id is not None and self.token_rp_id != rp_id:
            raise CtapError(ERR_PIN_AUTH_INVALID)
        return True

    def _client_pin(self, params: dict[int, Any]) -> dict[int, Any] | None:
        sub = params.get(2)
        if sub == 0x01:  # getPINRetries
            return {3: self.pin_retries}
        protocol_no = _get(params, 1, int)
        _require(protocol_no in (1, 2))
        protocol = PinProtocol(protocol_no)
        if sub == 0x02:  # getKeyAgreement
            public = cose_es256(self.agreement_key.public_key())
            public[3] = -25  # ECDH-ES + HKDF-256, as CTAP labels the agreement key
            return {1: public}
        _require(3 in params, ERR_MISSING_PARAMETER)
        peer = _public_from_cose(params[3])
        z = self.agreement_key.exchange(ec.ECDH(), peer)
        hmac_key, aes_key = protocol.keys(z)
        if sub == 0x03:  # setPIN
            _require(self.pin_hash is None, ERR_NOT_ALLOWED)
            new_enc, auth = _get(params, 5, bytes), _get(params, 4, bytes)
            if not protocol.verify(hmac_key, new_enc, auth):
                raise CtapError(ERR_PIN_AUTH_INVALID)
            self._store_new_pin(protocol.decrypt(aes_key, new_enc))
            return None
        if sub in (0x04, 0x05, 0x09):
            if self.pin_hash is None:
                raise CtapError(ERR_PIN_NOT_SET)
            if self.pin_retries == 0:
                raise CtapError(ERR_PIN_BLOCKED)
            pin_hash_enc = _get(params, 6, bytes)
            new_enc = b""
            if sub == 0x04:
                new_enc, auth = _get(params, 5, bytes), _get(params, 4, bytes)
                if not protocol.verify(hmac_key, new_enc + pin_hash_enc, auth):
                    raise CtapError(ERR_PIN_AUTH_INVALID)
            self.pin_retries -= 1
            self.changed()
            given = protocol.decrypt(aes_key, pin_hash_enc)
            if not hmac.compare_digest(given, self.pin_hash):
                self.agreement_key = ec.generate_private_key(ec.SECP256R1())
                self.consecutive_failures += 1
                if self.pin_retries == 0:
                    raise CtapError(ERR_PIN_BLOCKED)
                if self.consecutive_failures >= 3:
                    raise CtapError(ERR_PIN_AUTH_BLOCKED)
                raise CtapError(ERR_PIN_INVALID)
            self.pin_retries, self.consecutive_failures = 8, 0
            self.changed()
            if sub == 0x04:
                self._store_new_pin(protocol.decrypt(aes_key, new_enc))
                return None
            self.pin_token = os.urandom(32)
            if sub == 0x09:
                permissions = _get(params, 9, int)
                _require(permissions > 0)
                self.token_permissions = permissions
                rp = params.get(10)
                self.token_rp_id = rp if isinstance(rp, str) else None
            else:
                self.token_permissions, self.token_rp_id = 0, None
            return {2: protocol.encrypt(aes_key, self.pin_token)}
        raise CtapError(ERR_INVALID_PARAMETER)

    def _store_new_pin(self, padded: bytes) -> None:
        _require(len(padded) >= 64, ERR_PIN_POLICY_VIOLATION)
        pin = padded.rstrip(b"\x00")
        _require(4 <= len(pin) <= 63, ERR_PIN_POLICY_VIOLATION)
        self.pin_hash = hashlib.sha256(pin).digest()[:16]
        self.pin_retries = 8
        self.changed()

    # -- credentials ------------------------------------------------------------------

    def _make_credential(self, params: dict[int, Any]) -> dict[int, Any]:
        cdh = _get(params, 1, bytes)
        rp: dict[str, Any] = _get(params, 2, dict)
        user: dict[str, Any] = _get(params, 3, dict)
        algs: list[Any] = _get(params, 4, list)
        rp_id = rp.get("id")
        if not isinstance(rp_id, str) or not isinstance(user.get("id"), bytes):
            raise CtapError(ERR_INVALID_PARAMETER)
        if not any(isinstance(a, dict) and a.get("alg") == ES256 for a in algs):
            raise CtapError(ERR_UNSUPPORTED_ALGORITHM)
        options: dict[str, Any] = _get(params, 7, dict, {})
        if options.get("uv"):
            raise CtapError(ERR_UNSUPPORTED_OPTION)
        uv = self._check_pin_auth(params, cdh, PERM_MC, rp_id, (8, 9))
        if not uv and self.pin_hash is not None:
            raise CtapError(ERR_PIN_REQUIRED)
        for desc in _get(params, 5, list, []):
            if isinstance(desc, dict) and any(
                c.credential_id == desc.get("id") and c.rp_id == rp_id for c in self.credentials
            ):
                raise CtapError(ERR_CREDENTIAL_EXCLUDED)
        key = ec.generate_private_key(ec.SECP256R1())
        cred = Credential(os.urandom(32), rp_id, dict(user), key, bool(options.get("rk")))
        if cred.discoverable:  # one discoverable credential per (rp, user)
            self.credentials = [
                c
                for c in self.credentials
                if not (c.discoverable and c.rp_id == rp_id and c.user.get("id") == user["id"])
            ]
        self.credentials.append(cred)
        self.changed()
        attested = (
            AAGUID
            + len(cred.credential_id).to_bytes(2, "big")
            + cred.credential_id
            + cbor.encode(cose_es256(key.public_key()))
        )
        flags = FLAG_UP | FLAG_AT | (FLAG_UV if uv else 0)
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes((flags,))
            + cred.sign_count.to_bytes(4, "big")
            + attested
        )
        signature = key.sign(auth_data + cdh, ec.ECDSA(hashes.SHA256()))
        return {1: "packed", 2: auth_data, 3: {"alg": ES256, "sig": signature}}

    def _get_assertion(self, params: dict[int, Any]) -> dict[int, Any]:
        rp_id, cdh = _get(params, 1, str), _get(params, 2, bytes)
        options: dict[str, Any] = _get(params, 5, dict, {})
        if options.get("uv"):
            raise CtapError(ERR_UNSUPPORTED_OPTION)
        uv = self._check_pin_auth(params, cdh, PERM_GA, rp_id, (6, 7))
        allow: list[Any] = _get(params, 3, list, [])
        if allow:
            ids = {d.get("id") for d in allow if isinstance(d, dict)}
            found = [c for c in self.credentials if c.rp_id == rp_id and c.credential_id in ids]
        else:
            found = [c for c in self.credentials if c.rp_id == rp_id and c.discoverable]
        if not found:
            raise CtapError(ERR_NO_CREDENTIALS)
        up = options.get("up", True)
        self._assertion_context = (rp_id, cdh, bool(up), uv, not allow)
        self.pending = [c.credential_id for c in reversed(found)]
        response = self._next_assertion()
        if len(found) > 1 and not allow:
            response[5] = len(found)
        return response

    def _next_assertion(self) -> dict[int, Any]:
        rp_id, cdh, up, uv, discoverable = self._assertion_context
        cred_id = self.pending.pop()
        cred = next(c for c in self.credentials if c.credential_id == cred_id)
        cred.sign_count += 1
        self.changed()
        flags = (FLAG_UP if up else 0) | (FLAG_UV if uv else 0)
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes((flags,))
            + cred.sign_count.to_bytes(4, "big")
        )
        signature = cred.key.sign(auth_data + cdh, ec.ECDSA(hashes.SHA256()))
        out: dict[int, Any] = {
            1: {"id": cred.credential_id, "type": "public-key"},
            2: auth_data,
            3: signature,
        }
        if discoverable:
            user = {"id": cred.user["id"]}
            if uv:
                user.update({k: v for k, v in cred.user.items() if k in ("name", "displayName")})
            out[4] = user
        return out
