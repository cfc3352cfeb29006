"""The YubiKey OTP applet over CCID: serial number and HMAC-SHA1 challenge-response.

The YubiKey's OTP interface is reachable over ISO 7816 (AID A0 00 00 05 27 20 01) with
instruction 01 and the slot command in P1, the same commands as its HID frames
(Yubico, "YubiKey 5 series technical manual", challenge-response): 10 reads the serial,
30 / 38 compute HMAC-SHA1 (RFC 2104) in slot 1 / 2 over a challenge of up to 64 bytes.
A slot configured for variable-length challenges ("HMAC_LT64") ignores the trailing
bytes equal to the last one, so a shorter challenge is padded to 64 bytes with a byte
that differs from its last byte.  The other side of that rule: a full 64-byte challenge
whose last bytes repeat is computed without them (send 63 bytes or fewer to be exact).

On a slot that requires a touch, a real key waits (and here the APDU waits) for the
finger.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokens.errors import ProtocolError
from tokens.pcsc import ApduTransport

__all__ = ["AID", "OtpStatus", "YubiOtpSession", "pad_challenge"]

AID = bytes.fromhex("a0000005272001")
_INS_API_REQUEST = 0x01
_CMD_SERIAL = 0x10
_CMD_HMAC = {1: 0x30, 2: 0x38}
HMAC_CHALLENGE_SIZE = 64

_MEANINGS = {
    0x6A80: "the slot is not configured for HMAC-SHA1 challenge-response",
    0x6985: "conditions not satisfied (touch timed out?)",
}


def pad_challenge(challenge: bytes) -> bytes:
    """Pad to 64 bytes with a byte different from the last one (HMAC_LT64 mode)."""
    if len(challenge) > HMAC_CHALLENGE_SIZE:
        raise ValueError("challenge longer than 64 bytes")
    if len(challenge) == HMAC_CHALLENGE_SIZE:
        return challenge
    fill = b"\x01" if challenge.endswith(b"\x00") else b"\x00"
    return challenge.ljust(HMAC_CHALLENGE_SIZE, fill)


@dataclass(frozen=True)
class OtpStatus:
    version: tuple[int, int, int]
    sequence: int
    touch_level: int

    @property
    def slot1_configured(self) -> bool:
        return bool(self.touch_level & 0x01)

    @property
    def slot2_configured(self) -> bool:
        return bool(self.touch_level & 0x02)


class YubiOtpSession:
    """The OTP applet of a YubiKey over an :class:`~tokens.pcsc.ApduTransport`."""

    def __init__(self, transport: ApduTransport) -> None:
        self.transport = transport
        raw = transport.select(AID, what="SELECT OTP")
        if len(raw) < 6:
            raise ProtocolError("OTP status shorter than 6 bytes")
        self.status = OtpStatus(
            (raw[0], raw[1], raw[2]), raw[3], int.from_bytes(raw[4:6], "little")
        )

    def serial(self) -> int:
        raw = self.transport.send(0x00, _INS_API_REQUEST, _CMD_SERIAL, 0x00, what="READ SERIAL")
        if len(raw) != 4:
            raise ProtocolError("serial number is not 4 bytes")
        return int.from_bytes(raw, "big")

    def challenge_response(self, slot: int, challenge: bytes) -> bytes:
        """HMAC-SHA1 of ``challenge`` with the secret of ``slot`` (1 or 2): 20 bytes."""
        if slot not in _CMD_HMAC:
            raise ValueError("slot must be 1 or 2")
        response = self.transport.send(
            0x00,
            _INS_API_REQUEST,
            _CMD_HMAC[slot],
            0x00,
            pad_challenge(challenge),
            what=f"HMAC-SHA1 slot {slot}",
            meanings=_MEANINGS,
        )
        if len(response) != 20:
            raise ProtocolError("HMAC-SHA1 response is not 20 bytes")
        return response
