"""The TLS record layer's headers, read in the clear (RFC 5246 §6.2.1, RFC 8446 §5.1).

Every TLS record opens with five octets TLS does not protect: its ContentType, a
legacy version and its length.  A server can so tell, before TLS runs over what the
peer sent, that the bytes hold no ``application_data`` record, and therefore no tunnel
payload (a TTLS User-Password AVP, an inner EAP Response): a tunnel method's round that
can be shown not to reach a password check may then run on the event loop (issue 21,
:mod:`eapkit.radius.front`).

The answer is sure only as "no application data".  TLS 1.3 sends every record after
its ServerHello as an outer ``application_data`` record (RFC 8446 §5.2), the client's
Finished included, so such a flight always "may" hold some.  A record may also run
over into the next EAP-TLS message (nothing stops a peer from cutting its records
where it likes): :class:`RecordBoundary` follows the boundary from message to message,
and once it has lost it (a header cut in two) it answers "may" for good.
"""

from __future__ import annotations

__all__ = [
    "ALERT",
    "APPLICATION_DATA",
    "CHANGE_CIPHER_SPEC",
    "HANDSHAKE",
    "RecordBoundary",
]

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEADER = 5  # ContentType (1), ProtocolVersion (2), length (2)

_NOT_APPLICATION_DATA = frozenset({CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE})


class RecordBoundary:
    """Where the peer's next record starts, followed across the messages it sends.

    :meth:`feed` every message in order, as TLS reads it; :meth:`holds_application_data`
    asks of the next one before it is fed.
    """

    __slots__ = ("_owed",)

    def __init__(self) -> None:
        # Octets of a record begun in an earlier message still to come; None once a
        # header was cut between messages (the boundary is lost).
        self._owed: int | None = 0

    @property
    def lost(self) -> bool:
        return self._owed is None

    def feed(self, data: bytes) -> None:
        """``data`` went to TLS: follow the record boundary through it."""
        owed = self._owed
        if owed is None:
            return
        size = len(data)
        if owed >= size:
            self._owed = owed - size
            return
        pos = owed
        while pos + HEADER <= size:
            pos += HEADER + int.from_bytes(data[pos + 3 : pos + 5], "big")
        self._owed = None if pos < size else pos - size

    def holds_application_data(self, data: bytes) -> bool:
        """Whether ``data``, the next bytes the peer sends, may hold an
        ``application_data`` record (or any type but change_cipher_spec, alert and
        handshake).  False only when ``data`` is whole records, each of those three types
        and starting where the previous message left off."""
        if self._owed != 0:
            return True
        size = len(data)
        pos = 0
        while pos < size:
            if pos + HEADER > size or data[pos] not in _NOT_APPLICATION_DATA:
                return True
            pos += HEADER + int.from_bytes(data[pos + 3 : pos + 5], "big")
        return pos != size
