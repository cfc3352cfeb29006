"""Typed errors of the token drivers.

Every failure a person on a bench can meet has its own class, so a command line or a
test can say *what* went wrong (no reader, no card, card pulled out, another program
holds the card, the card said no) instead of printing a PC/SC error number.  Status
words carry their ISO 7816-4 section 5.1.3 meaning (and the applet-specific meanings the
drivers know) in :attr:`StatusError.meaning`.  No text here ever contains a PIN, a key
or a password.
"""

from __future__ import annotations

from eapkit.errors import DecodeError, EapkitError

__all__ = [
    "CardRemovedError",
    "NoCardError",
    "NoReaderError",
    "PcscUnavailableError",
    "ProtocolError",
    "SharingViolationError",
    "StatusError",
    "TokenError",
    "TransportError",
    "sw_meaning",
]


class TokenError(EapkitError):
    """Root of the errors the ``tokens`` package raises on purpose."""


class PcscUnavailableError(TokenError):
    """The PC/SC service (pcscd) is not running or cannot be reached."""


class NoReaderError(TokenError):
    """No reader is attached, or none matches the name asked for."""


class NoCardError(TokenError):
    """The reader is there but holds no card (or the card does not answer)."""


class CardRemovedError(TokenError):
    """The card was removed (or reset by another program) during the session."""


class SharingViolationError(TokenError):
    """Another program holds the card exclusively (ykman, a browser, gpg-agent...)."""


class TransportError(TokenError):
    """Any other PC/SC failure; ``code`` is the PC/SC return value."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class ProtocolError(TokenError, DecodeError):
    """The card answered with bytes that do not follow the applet's protocol.

    A :class:`~eapkit.errors.DecodeError` too: a card's answer is untrusted input.
    """


# ISO/IEC 7816-4:2013 section 5.1.3 (table 5 and 6), plus the CTAP-over-NFC 9100.
_SW_MEANINGS: dict[int, str] = {
    0x9000: "success",
    0x9100: "CTAP status update (NFCCTAP_GETRESPONSE needed)",
    0x6281: "part of returned data may be corrupted",
    0x6282: "end of file or record reached before reading Ne bytes",
    0x6283: "selected file deactivated",
    0x6284: "file control information not formatted",
    0x6300: "verification failed",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6883: "last command of the chain expected",
    0x6884: "command chaining not supported",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "incorrect secure messaging data objects",
    0x6A80: "incorrect parameters in the command data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space in the file",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data or reference data not found",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


def sw_meaning(sw: int) -> str:
    """What a status word means (ISO 7816-4 section 5.1.3), in words."""
    if sw in _SW_MEANINGS:
        return _SW_MEANINGS[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} more bytes available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong Le: {sw2 or 256} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    if sw1 == 0x62:
        return "warning: state of non-volatile memory unchanged"
    if sw1 == 0x63:
        return "warning: state of non-volatile memory changed"
    if sw1 == 0x64:
        return "error: state of non-volatile memory unchanged"
    if sw1 == 0x65:
        return "error: state of non-volatile memory changed"
    if sw1 == 0x68:
        return "functions in CLA not supported"
    if sw1 == 0x69:
        return "command not allowed"
    if sw1 == 0x6A:
        return "wrong parameters"
    return "unknown status word"


class StatusError(TokenError):
    """The card ended a command with a status word other than 9000.

    ``sw`` is the status word as an int (``0x6982``), ``meaning`` its ISO 7816-4 text or
    the applet's own meaning when the driver knows a better one.
    """

    def __init__(self, sw: int, command: str = "", meaning: str | None = None) -> None:
        self.sw = sw
        self.command = command
        self.meaning = meaning or sw_meaning(sw)
        where = f"{command}: " if command else ""
        super().__init__(f"{where}card answered {sw:04X} ({self.meaning})")

    @property
    def retries(self) -> int | None:
        """Tries left when the status word is 63CX, else None."""
        if self.sw & 0xFFF0 == 0x63C0:
            return self.sw & 0x0F
        return None
