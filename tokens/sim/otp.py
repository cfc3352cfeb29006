"""Virtual YubiKey OTP applet over CCID: serial number and HMAC-SHA1 challenge-response.

Yubico's YubiKey OTP interface as reached over ISO 7816 (AID A0 00 00 05 27 20 01,
instruction 01 with the "slot command" in P1, as in the YubiKey HID frame protocol):
SELECT answers the 6-byte status (firmware version, programming sequence, touch
level, little endian); P1=10 reads the serial (4 bytes, big endian); P1=30 / 38 run
HMAC-SHA1 (RFC 2104) over the challenge with the secret of slot 1 / 2.  A slot
configured "HMAC_LT64" (variable-length challenge) drops the trailing bytes equal to
the challenge's last byte, which is how hosts pad short challenges to 64 bytes.

Slots that require a touch wait for a finger on a real key; this card answers at once.
"""

from __future__ import annotations

import hmac
from typing import Any

from tokens.apdu import Apdu
from tokens.sim.card import Applet, CardResponse, SwError

AID = bytes.fromhex("a0000005272001")
INS_API_REQUEST = 0x01
INS_STATUS = 0x03
CMD_DEVICE_SERIAL = 0x10
CMD_HMAC = {0x30: 1, 0x38: 2}


class OtpApplet(Applet):
    aid = AID
    name = "otp"

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        super().__init__()
        state = state or {}
        self.version = bytes(state.get("version", [5, 4, 3]))
        self.serial = int(state.get("serial", 12345678))
        self.slots: dict[int, dict[str, Any]] = {
            int(k): dict(v) for k, v in state.get("slots", {}).items()
        }
        self.sequence = 1 if self.slots else 0

    def state(self) -> dict[str, Any]:
        return {
            "version": list(self.version),
            "serial": self.serial,
            "slots": {str(k): v for k, v in self.slots.items()},
        }

    def _status(self) -> bytes:
        touch_level = (0x01 if 1 in self.slots else 0) | (0x02 if 2 in self.slots else 0)
        return self.version + bytes((self.sequence,)) + touch_level.to_bytes(2, "little")

    def select(self, p1: int, p2: int) -> bytes:
        return self._status()

    def process(self, apdu: Apdu) -> CardResponse:
        if apdu.ins == INS_STATUS:
            return self._status(), 0x9000
        if apdu.ins != INS_API_REQUEST:
            raise SwError(0x6D00)
        if apdu.p1 == CMD_DEVICE_SERIAL:
            return self.serial.to_bytes(4, "big"), 0x9000
        if apdu.p1 in CMD_HMAC:
            slot = self.slots.get(CMD_HMAC[apdu.p1])
            if slot is None or slot.get("mode", "hmac") != "hmac":
                raise SwError(0x6A80)  # slot not configured for challenge-response
            challenge = apdu.data
            if len(challenge) > 64:
                raise SwError(0x6700)
            if slot.get("lt64", True) and challenge:
                challenge = challenge.rstrip(challenge[-1:])
            secret = bytes.fromhex(str(slot["secret"]))
            return hmac.digest(secret, challenge, "sha1"), 0x9000
        raise SwError(0x6A86)
