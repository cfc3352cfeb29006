"""PC/SC transport: readers, card connections and an ISO 7816-4 APDU exchange.

The story of one command, as :meth:`ApduTransport.send` runs it:

1. The command data does not fit one short APDU (255 bytes).  If the card accepts
   extended length (its ATR says so, ISO 7816-4 section 8.1.1.2.7, or the caller says
   so) it goes as one extended APDU; otherwise it is cut into a chain (section 5.4.1:
   CLA bit b5 set on every part but the last, each part answered 9000).
2. The card answers ``6CXX``: the Le we sent was wrong; the same command is sent again
   with Le = XX (section 5.1.3).
3. The card answers ``61XX``: XX more bytes wait; GET RESPONSE (``00 C0 00 00 XX``, or
   the applet's own instruction such as OATH's SEND REMAINING ``A5``) fetches them until
   the card says 9000.
4. Any final status word other than 9000 raises :class:`~tokens.errors.StatusError`
   with its meaning.

The link below the transport is small (:class:`CardLink`: ``transmit``, ``atr``,
transactions), so the drivers run the same way over pcscd (:class:`PcscLink`, through
pyscard's ``smartcard.scard`` layer, which reports PC/SC return codes we map to typed
errors) and straight against an in-process virtual card in unit tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from tokens.apdu import SHORT_MAX_LC, Apdu
from tokens.errors import (
    CardRemovedError,
    NoCardError,
    NoReaderError,
    PcscUnavailableError,
    SharingViolationError,
    StatusError,
    TransportError,
)

__all__ = [
    "ApduTransport",
    "CardLink",
    "PcscLink",
    "atr_allows_extended_length",
    "connect",
    "list_readers",
]

INS_GET_RESPONSE = 0xC0
# A card that keeps answering 61XX forever must not hang the caller.
_MAX_RESPONSE_PARTS = 1024


class CardLink(Protocol):
    """What the transport needs from a connection to one card."""

    @property
    def atr(self) -> bytes: ...

    def transmit(self, apdu: bytes) -> bytes:
        """Send one APDU, return the response data followed by SW1 SW2."""
        ...

    def begin_transaction(self) -> None: ...

    def end_transaction(self) -> None: ...

    def close(self) -> None: ...


def atr_allows_extended_length(atr: bytes) -> bool:
    """Whether the ATR's historical bytes announce extended Lc/Le.

    ISO 7816-3 section 8.2 (ATR structure) to find the historical bytes, then
    ISO 7816-4 section 8.1.1.2.7: compact-TLV "card capabilities" (tag 7), third
    software function byte, bit b7.  Unparseable ATRs count as "no".
    """
    try:
        if len(atr) < 2:
            return False
        t0 = atr[1]
        k = t0 & 0x0F
        pos, y = 2, t0 >> 4
        while True:
            count = bin(y).count("1")
            td = atr[pos + count - 1] if y & 0x8 else None
            pos += count
            if td is None:
                break
            y = td >> 4
        hist = atr[pos : pos + k]
        if len(hist) != k or not hist or hist[0] != 0x80:
            return False
        i = 1
        while i < len(hist):
            tag, length = hist[i] >> 4, hist[i] & 0x0F
            value = hist[i + 1 : i + 1 + length]
            if tag == 0x7 and len(value) >= 3:
                return bool(value[2] & 0x40)
            i += 1 + length
    except IndexError:
        return False
    return False


class ApduTransport:
    """ISO 7816-4 command exchange over one :class:`CardLink` (see the module story).

    ``extended``: True/False forces extended length on/off; None reads the ATR.
    ``get_response_ins``: the instruction that fetches remaining bytes after 61XX.
    """

    def __init__(
        self,
        link: CardLink,
        *,
        extended: bool | None = None,
        get_response_ins: int = INS_GET_RESPONSE,
    ) -> None:
        self.link = link
        self.extended = atr_allows_extended_length(link.atr) if extended is None else extended
        self.get_response_ins = get_response_ins
        self._depth = 0

    def exchange(self, apdu: Apdu) -> tuple[bytes, int]:
        """Run one command through chaining, 6CXX and 61XX; return (data, final SW)."""
        with self.transaction():
            if len(apdu.data) > SHORT_MAX_LC or (apdu.le or 0) > 256:
                if self.extended:
                    return self._collect(apdu, extended=True)
                return self._chain(apdu)
            return self._collect(apdu, extended=False)

    def send(
        self,
        cla: int,
        ins: int,
        p1: int,
        p2: int,
        data: bytes = b"",
        le: int | None = None,
        *,
        what: str = "",
        meanings: dict[int, str] | None = None,
    ) -> bytes:
        """Send a command and return its response data; raise StatusError unless 9000."""
        body, sw = self.exchange(Apdu(cla, ins, p1, p2, data, le))
        if sw != 0x9000:
            meaning = (meanings or {}).get(sw)
            raise StatusError(sw, what or f"INS {ins:02X}", meaning)
        return body

    def select(self, aid: bytes, *, what: str = "SELECT") -> bytes:
        """SELECT by DF name (ISO 7816-4 section 11.2.2, P1=04, first occurrence)."""
        return self.send(0x00, 0xA4, 0x04, 0x00, aid, what=what)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[ApduTransport]:
        """Hold the card exclusively (SCardBeginTransaction) for the block; re-entrant.

        Another program's commands cannot interleave with ours (a PIN verified and the
        signature that needs it must not be split by ykman's SELECT of another applet).
        """
        if self._depth == 0:
            self.link.begin_transaction()
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.link.end_transaction()

    def _transmit(self, raw: bytes) -> tuple[bytes, int]:
        response = self.link.transmit(raw)
        if len(response) < 2:
            raise TransportError(f"card answered {len(response)} bytes, no status word")
        return response[:-2], int.from_bytes(response[-2:], "big")

    def _chain(self, apdu: Apdu) -> tuple[bytes, int]:
        data = apdu.data
        while len(data) > SHORT_MAX_LC:
            part, data = data[:SHORT_MAX_LC], data[SHORT_MAX_LC:]
            head = Apdu(apdu.cla | 0x10, apdu.ins, apdu.p1, apdu.p2, part)
            body, sw = self._transmit(head.encode())
            if sw != 0x9000:
                return body, sw
        le = apdu.le if apdu.le is None or apdu.le <= 256 else 256
        return self._collect(Apdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, data, le), False)

    def _collect(self, apdu: Apdu, extended: bool) -> tuple[bytes, int]:
        body, sw = self._transmit(apdu.encode(extended))
        if sw >> 8 == 0x6C:  # wrong Le: send the same command again with the right one
            body, sw = self._transmit(
                Apdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data, (sw & 0xFF) or 256).encode(
                    extended
                )
            )
        out = bytearray(body)
        parts = 0
        while sw >> 8 == 0x61:
            parts += 1
            if parts > _MAX_RESPONSE_PARTS:
                raise TransportError("card kept answering 61XX: response too long")
            more = Apdu(0x00, self.get_response_ins, 0x00, 0x00, b"", (sw & 0xFF) or 256)
            body, sw = self._transmit(more.encode())
            out += body
        return bytes(out), sw


# --- pcscd through pyscard -------------------------------------------------------------


def _scard() -> Any:
    try:
        from smartcard import scard
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise PcscUnavailableError(
            "pyscard is not installed: pip install 'eapkit[pcsc]' (needs swig, libpcsclite-dev)"
        ) from exc
    return scard


def _raise_for(scard: Any, hresult: int, doing: str) -> None:
    """Map a PC/SC return code to the typed error a person can act on."""
    if hresult == scard.SCARD_S_SUCCESS:
        return
    code = hresult & 0xFFFFFFFF
    text = f"{doing}: {scard.SCardGetErrorMessage(hresult)} (0x{code:08X})"
    if code in (scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED):
        raise PcscUnavailableError(text + " - is pcscd running?")
    if code in (scard.SCARD_E_NO_READERS_AVAILABLE, scard.SCARD_E_UNKNOWN_READER):
        raise NoReaderError(text)
    if code in (scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_UNRESPONSIVE_CARD):
        raise NoCardError(text)
    if code in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_W_RESET_CARD):
        raise CardRemovedError(text)
    if code == scard.SCARD_E_SHARING_VIOLATION:
        raise SharingViolationError(text + " - another program holds the card")
    raise TransportError(text, code)


class _Context:
    def __init__(self) -> None:
        self.scard = _scard()
        hresult, self.handle = self.scard.SCardEstablishContext(self.scard.SCARD_SCOPE_USER)
        _raise_for(self.scard, hresult, "connecting to the PC/SC service")

    def readers(self) -> list[str]:
        hresult, readers = self.scard.SCardListReaders(self.handle, [])
        if hresult & 0xFFFFFFFF == self.scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        _raise_for(self.scard, hresult, "listing readers")
        return list(readers)

    def release(self) -> None:
        self.scard.SCardReleaseContext(self.handle)


def list_readers() -> list[str]:
    """The names of the readers pcscd knows, in its order (may be empty)."""
    context = _Context()
    try:
        return context.readers()
    finally:
        context.release()


class PcscLink:
    """A connection to the card in one reader, through pcscd (PC/SC part 5, SCardConnect).

    ``exclusive`` asks for SCARD_SHARE_EXCLUSIVE (no other program may connect while we
    hold it); the default shared mode relies on transactions to keep commands together.
    """

    def __init__(self, reader: str, *, exclusive: bool = False) -> None:
        self._context = _Context()
        s = self._context.scard
        self.reader = reader
        mode = s.SCARD_SHARE_EXCLUSIVE if exclusive else s.SCARD_SHARE_SHARED
        try:
            hresult, self._card, self._protocol = s.SCardConnect(
                self._context.handle, reader, mode, s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1
            )
            _raise_for(s, hresult, f"connecting to the card in {reader!r}")
        except BaseException:
            self._context.release()
            raise
        self._closed = False

    @property
    def atr(self) -> bytes:
        s = self._context.scard
        hresult, _reader, _state, _protocol, atr = s.SCardStatus(self._card)
        _raise_for(s, hresult, "reading the card status")
        return bytes(atr)

    def transmit(self, apdu: bytes) -> bytes:
        s = self._context.scard
        hresult, response = s.SCardTransmit(self._card, self._protocol, list(apdu))
        _raise_for(s, hresult, "exchanging an APDU")
        return bytes(response)

    def begin_transaction(self) -> None:
        s = self._context.scard
        _raise_for(s, s.SCardBeginTransaction(self._card), "starting a transaction")

    def end_transaction(self) -> None:
        s = self._context.scard
        _raise_for(s, s.SCardEndTransaction(self._card, s.SCARD_LEAVE_CARD), "ending a transaction")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        s = self._context.scard
        s.SCardDisconnect(self._card, s.SCARD_LEAVE_CARD)
        self._context.release()

    def __enter__(self) -> PcscLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_reader(name: str | None = None) -> str:
    """The reader whose name contains ``name`` (the first reader when None)."""
    readers = list_readers()
    if not readers:
        raise NoReaderError("no PC/SC reader attached")
    if name is None:
        return readers[0]
    for reader in readers:
        if reader == name:
            return reader
    matches = [r for r in readers if name.lower() in r.lower()]
    if not matches:
        raise NoReaderError(f"no reader matches {name!r} (readers: {', '.join(readers)})")
    return matches[0]


def connect(reader: str | None = None, *, exclusive: bool = False) -> PcscLink:
    """Connect to the card in the reader matching ``reader`` (see :func:`find_reader`)."""
    return PcscLink(find_reader(reader), exclusive=exclusive)
