"""The TLS-over-EAP engine: one TLS connection carried in EAP Type-Data, both roles.

EAP-TLS, EAP-TTLS and PEAP all carry TLS the same way (RFC 5216 §2.1, §3; RFC 5281
§9; PEAPv0): half duplex, one side talks at a time, long flights cut into fragments
that the other side acknowledges.  The engine owns a pyOpenSSL ``Connection`` with
memory BIOs (no socket), made only when TLS starts (the first TLS record; a server
that sent only its Start holds no OpenSSL state, so half-open conversations are
cheap), plus the framing, whose reassembly buffer grows as fragments arrive; a method
drives it::

    engine = TlsEapEngine(context, eap_type=13)      # TlsContext built once per method
    first = engine.start()                           # server: the Start message

    event = engine.receive(type_data)                # every Type-Data received
    Continue(type_data)   -> send it: an ACK of their fragment, or our next fragment
    Message(data, empty)  -> a whole TLS message arrived and TLS has run over it;
                             ``data`` is application data it decrypted (tunnel payload)
    Failed(reason, ...)   -> TLS or framing failed; if ``engine.has_output`` an alert
                             is waiting: send it with next_type_data() and wait for the
                             other side's ACK before ending with a Failure (RFC 9190 §2.1.3)

    engine.next_type_data()       # our next message: first fragment of what TLS wrote,
                                  # or an empty message (ACK) when TLS wrote nothing
    engine.write(b"...")          # application data into the tunnel (TTLS AVPs, PEAP)

After the handshake: :attr:`version`, :meth:`export_keying_material`,
:attr:`client_random` / :attr:`server_random`, :attr:`peer_certificate`,
:attr:`resumed`, :meth:`session` (peer side, for resumption),
:attr:`issued_session_keys` / :attr:`resumed_session_key` (server side: the ids that
key :mod:`eapkit.tlsio.resume`'s records).

The engine never raises on received bytes: every problem becomes :class:`Failed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from OpenSSL import SSL

from eapkit.errors import DecodeError
from eapkit.tlsio.alerts import alert_name
from eapkit.tlsio.certinfo import PeerCertificate, matches_domain
from eapkit.tlsio.config import (
    X509_V_ERR_CERT_REJECTED,
    X509_V_ERR_HOSTNAME_MISMATCH,
    TlsContext,
    TlsVersion,
    session_reused,
    verify_error_text,
)
from eapkit.tlsio.framing import EapTlsFlags, Fragment, Fragmenter, Reassembler
from eapkit.tlsio.hello import (
    CLIENT_HELLO,
    NEW_SESSION_TICKET,
    SERVER_HELLO,
    ClientHello,
    ServerHello,
    handshake_type,
    parse_client_hello,
    parse_new_session_ticket,
    parse_server_hello,
)
from eapkit.tlsio.records import RecordBoundary

__all__ = ["Continue", "Event", "Failed", "LeafCheck", "Message", "SessionCache", "TlsEapEngine"]

_BIO_CHUNK = 1 << 16

LeafCheck = Callable[[PeerCertificate], str | None]
"""Extra check of the other side's end-entity certificate, run during the handshake
after the chain verified: ``None`` accepts, a string is the rejection reason (the
handshake then fails with ``bad_certificate``)."""


@dataclass(frozen=True, slots=True)
class Continue:
    """Framing in progress: send ``type_data`` (an ACK or our next fragment)."""

    type_data: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """A complete message arrived.  ``empty`` means it carried no TLS data (an ACK of
    our last fragment or an empty Response); ``data`` is decrypted application data."""

    data: bytes = b""
    empty: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    """The TLS conversation failed.  ``reason`` is the TLS alert's name when there was
    one (sent or received), else a framing reason (``malformed``, ``too_many_rounds``)."""

    reason: str
    detail: str = ""
    alert_sent: str | None = None
    alert_received: str | None = None


Event = Continue | Message | Failed


class TlsEapEngine:
    """One TLS connection over EAP in either role (see the module docstring)."""

    def __init__(
        self,
        context: TlsContext,
        eap_type: int,
        *,
        version: int = 0,
        leaf_check: LeafCheck | None = None,
        session: SSL.Session | None = None,
    ) -> None:
        self.context = context
        self.eap_type = eap_type
        self.version_bits = version
        self.framing = context.config.framing
        self.is_server = context.is_server
        self.peer_version_bits: int | None = None
        self.rounds = 0
        self.failure: Failed | None = None
        self._leaf_check = leaf_check
        self._leaf_reason: str | None = None
        self._verify_error: tuple[int, int] | None = None
        self._alert_sent: tuple[int, int] | None = None
        self._alert_received: tuple[int, int] | None = None
        self._handshake_done = False
        self._started = False
        self._reassembler = Reassembler(self.framing.max_message)
        self._peer_records = RecordBoundary()  # the peer's record boundary (issue 21)
        self._pending = bytearray()
        self._cutter: Fragmenter | None = None
        self._peer_cert: PeerCertificate | None = None
        # session ids / tickets seen in the handshake (server; see eapkit.tlsio.hello)
        self._offered: ClientHello | None = None
        self._chosen: ServerHello | None = None
        self._tickets: list[bytes] = []
        self._session = session
        # The SSL object (and OpenSSL's handshake state) is made when TLS starts, not
        # when the method starts: a flood of half-open conversations that never send a
        # TLS record costs no OpenSSL memory (see :attr:`conn`).
        self._conn: SSL.Connection | None = None

    @property
    def conn(self) -> SSL.Connection:
        """The pyOpenSSL connection, created on first use."""
        conn = self._conn
        if conn is None:
            context = self.context
            conn = SSL.Connection(context.ssl_context, None)
            conn.set_app_data(self)
            if self.is_server:
                conn.set_accept_state()
            else:
                conn.set_connect_state()
                name = context.config.server_name
                if name:
                    conn.set_tlsext_host_name(name.encode("idna"))
                if self._session is not None and context.config.resumption:
                    conn.set_session(self._session)
            self._conn = conn
        return conn

    # -- callbacks from OpenSSL (see eapkit.tlsio.config) ---------------------------------

    def note_alert(self, written: bool, description: int, level: int) -> None:
        if description == 0:  # close_notify is not a reason
            return
        if written and self._alert_sent is None:
            self._alert_sent = (level, description)
        elif not written and self._alert_received is None:
            self._alert_received = (level, description)

    def note_handshake(self, written: bool, message: bytes) -> None:
        """A handshake message (server): keep the session ids and tickets in it."""
        kind = handshake_type(message)
        try:
            if kind == CLIENT_HELLO and not written and self._offered is None:
                self._offered = parse_client_hello(message)
            elif kind == SERVER_HELLO and written:
                self._chosen = parse_server_hello(message)
            elif kind == NEW_SESSION_TICKET and written:
                self._tickets.append(parse_new_session_ticket(message))
        except DecodeError:  # OpenSSL parsed it already; what we cannot read, we skip
            pass

    @property
    def issued_session_keys(self) -> list[bytes]:
        """The ids under which the other side may resume this session (server): the TLS
        1.2 session id, or the TLS 1.3 tickets (stateful: each is an id)."""
        if not self._handshake_done:
            return []
        if self.is_tls13:
            return list(self._tickets)
        if self._chosen is not None and self._chosen.session_id:
            return [self._chosen.session_id]
        return []

    @property
    def resumed_session_key(self) -> bytes | None:
        """The session id or ticket this handshake resumed (server), else None."""
        if not self.resumed or self._chosen is None:
            return None
        if not self.is_tls13:
            return self._chosen.session_id or None
        index = self._chosen.selected_identity
        offered = self._offered.psk_identities if self._offered is not None else ()
        if index is None or index >= len(offered):
            return None
        return offered[index]

    def note_verify_error(self, code: int, depth: int) -> None:
        if self._verify_error is None:
            self._verify_error = (code, depth)

    def check_leaf(self, cert: x509.Certificate) -> int:
        info = self.context.describe(cert)
        self._peer_cert = info
        cfg = self.context.config
        if not self.is_server and not matches_domain(
            info, cfg.domain_match, cfg.domain_suffix_match
        ):
            self._leaf_reason = "server certificate names do not match the expected domain"
            return X509_V_ERR_HOSTNAME_MISMATCH
        if self._leaf_check is not None:
            reason = self._leaf_check(info)
            if reason is not None:
                self._leaf_reason = reason
                return X509_V_ERR_CERT_REJECTED
        return 0

    # -- state ------------------------------------------------------------------------------

    @property
    def handshake_done(self) -> bool:
        return self._handshake_done

    @property
    def has_output(self) -> bool:
        """Bytes TLS wrote that have not all been sent yet."""
        return bool(self._pending) or (self._cutter is not None and not self._cutter.done)

    @property
    def awaiting_ack(self) -> bool:
        return self._cutter is not None and not self._cutter.done

    @property
    def version(self) -> TlsVersion | None:
        """The negotiated protocol version, once known."""
        if self._conn is None:
            return None
        number = self._conn.get_protocol_version()
        try:
            return TlsVersion(number)
        except ValueError:
            return None

    @property
    def is_tls13(self) -> bool:
        return self.version is TlsVersion.TLS1_3

    @property
    def resumed(self) -> bool:
        return self._handshake_done and session_reused(self.conn)

    @property
    def client_random(self) -> bytes:
        value = self.conn.client_random()
        return value or b""

    @property
    def server_random(self) -> bytes:
        value = self.conn.server_random()
        return value or b""

    @property
    def cipher(self) -> str | None:
        return self.conn.get_cipher_name()

    @property
    def peer_certificate(self) -> PeerCertificate | None:
        """The other side's end-entity certificate (also for a resumed session)."""
        if self._peer_cert is None:
            cert = self.conn.get_peer_certificate(as_cryptography=True)
            if cert is not None:
                self._peer_cert = self.context.describe(cert)
        return self._peer_cert

    def export_keying_material(self, label: bytes, length: int, context: bytes | None) -> bytes:
        """RFC 5705 / RFC 8446 §7.5 exporter.  ``context=None`` is "no context" (TLS 1.2
        EAP-TLS keys); TLS 1.3 treats None and ``b""`` the same."""
        if not self._handshake_done:
            raise RuntimeError("keys exist only after the handshake")
        return self.conn.export_keying_material(label, length, context)

    def close(self, clean: bool) -> None:
        """End of the conversation.  ``clean`` (success) marks the TLS connection as
        properly shut down: OpenSSL otherwise treats the session as broken when the
        connection is freed and refuses to resume it.  Also drops the reference cycle
        between the engine and its connection."""
        conn = self._conn
        if conn is None:  # TLS never started
            return
        if clean and self.failure is None:
            conn.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)
        conn.set_app_data(None)

    def done_writing(self) -> None:
        """We write nothing more (a peer whose last word is a conditional success): mark
        our side shut down now, so that the session stays resumable whenever the
        connection is freed (OpenSSL drops it otherwise), while the other side's last
        messages (tickets, a commitment) can still be read."""
        if self.failure is None and self._handshake_done:
            self.conn.set_shutdown(SSL.SENT_SHUTDOWN)

    def session(self) -> SSL.Session | None:
        """The session to resume next time (peer side), after a successful handshake."""
        if not self._handshake_done:
            return None
        return self.conn.get_session()

    # -- driving ------------------------------------------------------------------------------

    def start(self) -> bytes:
        """Server: the Type-Data of the first Request, the Start message (RFC 5216 §2.1.1)."""
        if not self.is_server:
            raise RuntimeError("only the server sends the Start message")
        self._started = True
        return Fragment(EapTlsFlags.START, b"", None, self.version_bits).encode()

    def write(self, data: bytes) -> None:
        """Application data into the tunnel; it goes out with :meth:`next_type_data`."""
        if not self._handshake_done:
            raise RuntimeError("application data needs a finished handshake")
        if self.failure is not None:
            return
        try:
            self.conn.sendall(data)
        except SSL.Error as exc:
            self._fail_from(exc)
        self._collect()

    def next_type_data(self) -> bytes:
        """Our next message: the next fragment of what TLS wrote, or an ACK."""
        if self._cutter is None or self._cutter.done:
            if not self._pending:
                return self.ack()
            self._cutter = Fragmenter(
                bytes(self._pending),
                self.framing.fragment_size,
                version=self.version_bits,
                always_include_length=self.framing.always_include_length,
            )
            self._pending.clear()
        return self._cutter.next_fragment().encode()

    def may_carry_application_data(self, type_data: bytes) -> bool:
        """Whether :meth:`receive` of ``type_data`` may hand TLS an ``application_data``
        record (a tunnel's phase-2 payload).  Changes nothing.  False when it cannot:
        TLS does not run over it (an acknowledgement, a fragment with more to come,
        anything after a failure or that fails the framing), or the message it completes
        is whole change_cipher_spec, alert and handshake records
        (:class:`~eapkit.tlsio.records.RecordBoundary`; in TLS 1.3 that is only the
        ClientHello flight).  A tunnel method's round that can reach no password check
        may then run on a front's event loop (issue 21, :mod:`eapkit.radius.front`)."""
        if self.failure is not None or self.awaiting_ack or not self._started:
            return False
        try:
            frag = Fragment.decode(type_data)
        except DecodeError:
            return False
        if frag.start:
            return False
        message = self._reassembler.completed_by(frag)
        return message is not None and self._peer_records.holds_application_data(message)

    def ack(self) -> bytes:
        """An empty message: acknowledges a fragment, or says "nothing to send"."""
        return Fragment(EapTlsFlags.NONE, b"", None, self.version_bits).encode()

    def receive(self, type_data: bytes) -> Event:
        """One received Type-Data in, one event out (see the module docstring)."""
        if self.failure is not None:
            return self._after_failure(type_data)
        self.rounds += 1
        if self.rounds > self.framing.max_rounds:
            return self._fail("too_many_rounds", f"more than {self.framing.max_rounds} rounds")
        try:
            frag = Fragment.decode(type_data)
        except DecodeError as exc:
            return self._fail("malformed", str(exc))
        if self.peer_version_bits is None:
            self.peer_version_bits = frag.version
        if frag.start:
            return self._start_received(frag)
        if not self._started:
            what = "the peer's first Response" if self.is_server else "the Start message"
            return self._fail("malformed", f"expected {what}, got a message without it")
        if self.awaiting_ack:
            if not frag.is_ack:
                return self._fail("malformed", "expected an ACK of our fragment")
            return Continue(self.next_type_data())
        try:
            message = self._reassembler.feed(frag)
        except DecodeError as exc:
            return self._fail("malformed", str(exc))
        if message is None:
            return Continue(self.ack())
        if not message:
            return Message(b"", empty=True)
        return self._run_tls(message)

    # -- internals ------------------------------------------------------------------------------

    def _start_received(self, frag: Fragment) -> Event:
        if self.is_server or self._started:
            return self._fail("malformed", "unexpected Start flag")
        self._started = True
        # The peer opens the handshake: OpenSSL writes the ClientHello.
        return self._run_tls(b"")

    def _run_tls(self, data: bytes) -> Event:
        conn = self.conn
        app = bytearray()
        try:
            if data:
                self._peer_records.feed(data)
                conn.bio_write(data)
            if not self._handshake_done:
                try:
                    conn.do_handshake()
                    self._handshake_done = True
                except SSL.WantReadError:
                    pass
            if self._handshake_done:
                while True:
                    try:
                        app += conn.recv(_BIO_CHUNK)
                    except SSL.WantReadError:
                        break
        except SSL.ZeroReturnError:
            self._collect()
            return self._fail("close_notify", "the other side closed the TLS connection")
        except SSL.Error as exc:
            return self._fail_from(exc)
        self._collect()
        return Message(bytes(app), empty=False)

    def _collect(self) -> None:
        while True:
            try:
                chunk = self.conn.bio_read(_BIO_CHUNK)
            except SSL.WantReadError:
                return
            except SSL.Error:  # pragma: no cover - memory BIO reads do not fail
                return
            if not chunk:
                return
            self._pending += chunk

    def _fail_from(self, exc: SSL.Error) -> Failed:
        self._collect()
        sent = alert_name(self._alert_sent[1]) if self._alert_sent else None
        received = alert_name(self._alert_received[1]) if self._alert_received else None
        text = _error_text(exc)
        if received is not None:
            return self._fail(received, f"the other side sent the TLS alert {received}")
        if self._leaf_reason is not None and self._verify_error is not None:
            code = self._verify_error[0]
            if code == X509_V_ERR_CERT_REJECTED:
                return self._fail(self._leaf_reason, f"certificate rejected: {self._leaf_reason}")
            return self._fail(sent or "bad_certificate", self._leaf_reason)
        if self._verify_error is not None:
            code, depth = self._verify_error
            detail = f"certificate at depth {depth}: {verify_error_text(code)}"
            return self._fail(sent or "bad_certificate", detail)
        if sent is not None:
            return self._fail(sent, f"TLS alert {sent} sent: {text}")
        return self._fail("tls_error", text)

    def _fail(self, reason: str, detail: str) -> Failed:
        sent = alert_name(self._alert_sent[1]) if self._alert_sent else None
        received = alert_name(self._alert_received[1]) if self._alert_received else None
        self.failure = Failed(reason, detail, sent, received)
        return self.failure

    def _after_failure(self, type_data: bytes) -> Event:
        """After a failure only the framing of our alert goes on."""
        try:
            frag = Fragment.decode(type_data)
        except DecodeError:
            return Message(b"", empty=True)
        if self.awaiting_ack and frag.is_ack:
            return Continue(self.next_type_data())
        return Message(b"", empty=frag.is_ack)


def _error_text(exc: SSL.Error) -> str:
    """The reason strings of an OpenSSL error queue (no secrets in them)."""
    parts: list[str] = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(item, tuple) and len(item) == 3:
            parts.append(str(item[2]))
    return "; ".join(parts) or exc.__class__.__name__


class SessionCache:
    """The peer's saved TLS sessions, for resumption (RFC 5216 §2.1.2, RFC 9190 §2.1.2).

    Keyed by whatever the method chooses (EAP-TLS: server name and identity); a small
    LRU so a long-running peer does not grow without bound.  Not thread-safe: one per
    peer configuration, used by one conversation at a time.

    A session kept before the server's verdict (a tunnel's last word, RFC 4137 MAY_CONT)
    comes with the engine that made it, still open: OpenSSL marks a session not
    resumable when its connection is freed without a shutdown, and the engine's
    connection is freed whenever the garbage collector gets to it.  The cache holds the
    engine until the session is taken for the next authentication, then closes it
    cleanly, so resuming never depends on when the collector ran.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._entries: dict[object, tuple[SSL.Session, TlsEapEngine | None]] = {}

    def get(self, key: object) -> SSL.Session | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        session, engine = entry
        if engine is not None:  # the conversation that made it is over by now
            engine.close(True)
        self._entries[key] = (session, None)
        return session

    def put(
        self, key: object, session: SSL.Session | None, engine: TlsEapEngine | None = None
    ) -> None:
        self._entries.pop(key, None)
        if session is None:
            return
        self._entries[key] = (session, engine)
        while len(self._entries) > self.max_entries:
            self._entries.pop(next(iter(self._entries)))

    def forget(self, key: object) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every session: the conversation failed after the method had already
        kept its session (a tunnel's last word before the server's verdict)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
