"""The one place that turns a small TLS configuration into an OpenSSL context.

:class:`TlsConfig` says what a deployment decides (certificate chain and key, trusted
CAs, CRLs, versions, cipher suites, groups, the server name the peer expects, session
resumption); :class:`TlsContext` builds the pyOpenSSL ``SSL.Context`` for one role once,
and every conversation of that method reuses it (so session tickets issued by one
conversation resume in the next).

Defaults follow RFC 9190 §5 and current practice: TLS 1.2 and 1.3 only (1.0/1.1
refused, RFC 8996), ECDHE with AEAD suites for TLS 1.2, no compression, no
renegotiation (RFC 9190 §2.1.1 forbids it), the peer's certificate verified against
the configured CAs, with a CRL check when CRLs are given (RFC 9190 §5.6 asks for
revocation checking).

Time: OpenSSL checks certificate and CRL validity and ticket lifetimes against the
system clock; this is the one clock eapkit's TLS layer reads without being given it.

pyOpenSSL has no public API for three things we need, so a few lines use its cffi
binding (``OpenSSL._util.lib``): a verify callback that can set the X.509 error (so
a server-name mismatch or a policy rejection sends ``bad_certificate`` instead of
``internal_error``), the groups list, and ``SSL_session_reused``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from eapkit.errors import ConfigError
from eapkit.pki import load_crl
from eapkit.tlsio.certinfo import PeerCertificate
from eapkit.tlsio.framing import FramingConfig
from eapkit.tlsio.hello import CLIENT_HELLO, NEW_SESSION_TICKET, SERVER_HELLO
from eapkit.tlsio.records import HANDSHAKE
from eapkit.tlsio.resume import MemoryResumeRecords, ResumeRecords

__all__ = [
    "DEFAULT_TLS12_CIPHERS",
    "DEFAULT_TLS13_CIPHERSUITES",
    "LEGACY_TLS12_CIPHERS",
    "TLS_PROFILES",
    "CrlSource",
    "PemSource",
    "TlsConfig",
    "TlsContext",
    "TlsRole",
    "TlsVersion",
    "session_reused",
    "verify_error_text",
]

# ECDHE key exchange and AEAD only (RFC 9325 §4.2)
DEFAULT_TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
DEFAULT_TLS13_CIPHERSUITES = (
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
)
# The ``legacy`` profile adds what old TLS 1.2 stacks (embedded supplicants, old
# Windows and Android builds) offer: ECDHE with CBC, and static RSA key exchange with
# CBC or GCM (RFC 9325 §4.1 says not to; hostapd 2.10 accepts them by default).  Still
# no RC4, 3DES, NULL, export or anonymous suites.
LEGACY_TLS12_CIPHERS = DEFAULT_TLS12_CIPHERS + (
    ":ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:"
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:"
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:"
    "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA"
)
TLS_PROFILES: dict[str, str] = {"default": DEFAULT_TLS12_CIPHERS, "legacy": LEGACY_TLS12_CIPHERS}
"""The TLS 1.2 cipher list of each ``profile`` (TLS 1.3 suites are all AEAD already)."""

PemSource = bytes | str | Path
"""PEM given inline (``bytes``) or as a file path (``str`` or ``Path``)."""


class CrlSource(Protocol):
    """CRLs that change while the server runs (RFC 5280 §5: a CA issues a new CRL
    when it revokes a certificate).  ``poll`` looks for a change cheaply (the
    application decides how often and from which clock); ``generation`` counts the
    changes and ``crls`` holds the current ones."""

    @property
    def generation(self) -> int: ...

    @property
    def crls(self) -> Sequence[PemSource]: ...

    def poll(self) -> None: ...


class TlsVersion(enum.IntEnum):
    """Protocol versions, valued as OpenSSL's ``*_VERSION`` constants."""

    TLS1_0 = SSL.TLS1_VERSION
    TLS1_1 = SSL.TLS1_1_VERSION
    TLS1_2 = SSL.TLS1_2_VERSION
    TLS1_3 = SSL.TLS1_3_VERSION

    @property
    def label(self) -> str:
        return {0x301: "TLSv1", 0x302: "TLSv1.1", 0x303: "TLSv1.2", 0x304: "TLSv1.3"}[self.value]


class TlsRole(enum.Enum):
    SERVER = "server"
    PEER = "peer"


@dataclass(frozen=True)
class TlsConfig:
    """One side's TLS settings (both roles; fields that concern one role say so).

    - ``certificate``: PEM chain, end-entity first then intermediates; ``private_key``
      its key (RSA or ECDSA, PEM, optionally encrypted with ``private_key_password``).
      Required for the server; for the peer in EAP-TLS.
    - ``ca_certificates``: PEM bundle of the CAs trusted to issue the other side's
      certificate.  ``verify_peer=False`` (tests only) skips verification.
    - ``crls``: CRLs (PEM or DER) checked for the other side's end-entity certificate
      (``crl_check_all`` for the whole chain: then every CA in it needs a CRL).  A
      missing or expired CRL fails the check.
    - ``require_peer_certificate`` (server): EAP-TLS requires a client certificate;
      TTLS/PEAP usually set ``verify_peer=False`` on the server instead.
    - ``server_name`` (peer): sent as SNI.  ``domain_match`` / ``domain_suffix_match``
      (peer): the server certificate must carry one of these names (wpa_supplicant's
      options of the same name).
    - ``profile: ``"default"`` (ECDHE + AEAD only) or ``"legacy"`` (adds the CBC and
      static-RSA suites of :data:`LEGACY_TLS12_CIPHERS`); ``tls12_ciphers`` (an OpenSSL
      cipher string) overrides the profile's list.  ``groups`` (``"X25519:P-256"``) and
      ``signature_algorithms`` (``"ECDSA+SHA256:RSA-PSS+SHA256"``) are OpenSSL lists;
      ``None`` keeps OpenSSL's defaults.  ``security_level`` sets OpenSSL's
      ``@SECLEVEL`` (``None``: OpenSSL's default, 1 or 2 by build).
    - ``resumption``: resumption of sessions for ``session_lifetime`` seconds.  The server
      keeps them (TLS 1.2 session ids, TLS 1.3 tickets that are only an id); off, it
      issues neither.  The peer keeps what the server gives.
    - ``allow_legacy_versions``: only for tests that must *offer* TLS 1.0/1.1 to prove
      it is refused; it lowers OpenSSL's security level.
    """

    certificate: PemSource | None = None
    private_key: PemSource | None = field(default=None, repr=False)
    private_key_password: bytes | None = field(default=None, repr=False)
    ca_certificates: PemSource | None = None
    crls: Sequence[PemSource] = ()
    crl_check_all: bool = False
    verify_peer: bool = True
    require_peer_certificate: bool = True
    min_version: TlsVersion = TlsVersion.TLS1_2
    max_version: TlsVersion = TlsVersion.TLS1_3
    profile: str = "default"
    tls12_ciphers: str | None = None
    tls13_ciphersuites: str = DEFAULT_TLS13_CIPHERSUITES
    groups: str | None = None
    signature_algorithms: str | None = None
    security_level: int | None = None
    server_name: str | None = None
    domain_match: Sequence[str] = ()
    domain_suffix_match: Sequence[str] = ()
    resumption: bool = True
    session_lifetime: int = 3600
    verify_depth: int = 8
    allow_legacy_versions: bool = False
    framing: FramingConfig = field(default_factory=FramingConfig)
    # When set, the CRLs come from here and are reloaded when it changes (``crls`` is
    # then ignored): a revoked certificate is refused without a restart.
    crl_source: CrlSource | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.min_version > self.max_version:
            raise ConfigError("min_version is above max_version")
        if self.min_version < TlsVersion.TLS1_2 and not self.allow_legacy_versions:
            raise ConfigError("TLS 1.0 and 1.1 are refused (RFC 8996)")
        if (self.certificate is None) != (self.private_key is None):
            raise ConfigError("certificate and private_key go together")
        if isinstance(self.domain_match, str) or isinstance(self.domain_suffix_match, str):
            raise ConfigError("domain_match and domain_suffix_match are lists of names")
        if self.profile not in TLS_PROFILES:
            raise ConfigError(f"the TLS profile is one of {', '.join(TLS_PROFILES)}")
        if self.security_level is not None and not 0 <= self.security_level <= 5:
            raise ConfigError("the OpenSSL security level is 0 to 5")

    @property
    def cipher_list(self) -> str:
        """The TLS 1.2 cipher string given to OpenSSL: the explicit list, else the
        profile's, with ``@SECLEVEL`` when a security level is set."""
        ciphers = self.tls12_ciphers or TLS_PROFILES[self.profile]
        if self.security_level is not None:
            ciphers += f":@SECLEVEL={self.security_level}"
        return ciphers


def _pem(source: PemSource, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {source}: {exc.strerror}") from None


def _certificates(source: PemSource, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(_pem(source, what))
    except ValueError:
        raise ConfigError(f"the {what} is not a PEM certificate list") from None
    if not certs:
        raise ConfigError(f"the {what} holds no certificate")
    return certs


def _crl(source: PemSource) -> x509.CertificateRevocationList:
    data = _pem(source, "CRL")
    try:
        return load_crl(data)
    except ValueError:
        raise ConfigError("a CRL is neither PEM nor DER") from None


def verify_error_text(code: int) -> str:
    """OpenSSL's text for an X.509 verification error code."""
    return str(_ffi.string(_lib.X509_verify_cert_error_string(code)).decode())


def session_reused(conn: SSL.Connection) -> bool:
    """Whether the handshake resumed a session (``SSL_session_reused``)."""
    return bool(_lib.SSL_session_reused(conn._ssl))


class VerifyOwner(Protocol):
    """What the context-wide verify callback asks of the connection's owner."""

    def note_verify_error(self, code: int, depth: int) -> None: ...

    def check_leaf(self, cert: x509.Certificate) -> int:
        """0 to accept the end-entity certificate, or an X509_V_ERR_* code."""
        ...


# X.509 errors the engine sets for its own checks (they map to bad_certificate)
X509_V_ERR_HOSTNAME_MISMATCH: int = _lib.X509_V_ERR_HOSTNAME_MISMATCH
X509_V_ERR_CERT_REJECTED: int = _lib.X509_V_ERR_CERT_REJECTED
X509_V_ERR_CERT_REVOKED: int = _lib.X509_V_ERR_CERT_REVOKED


def _owner_of(store: Any) -> VerifyOwner | None:
    ssl = _lib.X509_STORE_CTX_get_ex_data(store, _lib.SSL_get_ex_data_X509_STORE_CTX_idx())
    conn = SSL.Connection._reverse_mapping.get(ssl)
    if conn is None:
        return None
    owner = conn.get_app_data()
    return owner if hasattr(owner, "check_leaf") else None


def _verify_callback(ok: int, store: Any) -> int:
    """OpenSSL's verify callback (``SSL_CTX_set_verify``): record the first error, run
    the owner's own check on the end-entity certificate and, if it fails, set an X.509
    error so that OpenSSL sends the matching alert."""
    try:
        owner = _owner_of(store)
        depth = _lib.X509_STORE_CTX_get_error_depth(store)
        if not ok:
            if owner is not None:
                owner.note_verify_error(_lib.X509_STORE_CTX_get_error(store), depth)
            return 0
        if depth != 0 or owner is None:
            return 1
        raw = _lib.X509_STORE_CTX_get_current_cert(store)
        _lib.X509_up_ref(raw)
        cert = crypto.X509._from_raw_x509_ptr(raw).to_cryptography()
        code = owner.check_leaf(cert)
        if code:
            _lib.X509_STORE_CTX_set_error(store, code)
            owner.note_verify_error(code, depth)
            return 0
        return 1
    except Exception:  # a callback must not unwind through OpenSSL
        return 0


_VERIFY_CALLBACK = _ffi.callback("int (*)(int, X509_STORE_CTX *)", _verify_callback)


InfoCallback = Callable[[SSL.Connection, int, int], None]

# The handshake types the engine's note_handshake reads (eapkit.tlsio.hello).
NOTED_HANDSHAKE_TYPES = frozenset({CLIENT_HELLO, SERVER_HELLO, NEW_SESSION_TICKET})


def _msg_callback(
    write_p: int, version: int, content_type: int, buf: Any, length: int, ssl: Any, arg: Any
) -> None:
    """Handshake messages in both directions (``SSL_CTX_set_msg_callback``), in plaintext
    also under TLS 1.3: the engine reads the session ids and tickets from them.  Only
    the message types it reads (RFC 8446 §4: ClientHello, ServerHello,
    NewSessionTicket) are copied and passed on: a handshake has some 15 messages, the
    certificates among them (issue 21)."""
    if content_type != HANDSHAKE or length < 1:
        return
    try:
        if _ffi.cast("const unsigned char *", buf)[0] not in NOTED_HANDSHAKE_TYPES:
            return
        conn = SSL.Connection._reverse_mapping.get(ssl)
        note = getattr(conn.get_app_data(), "note_handshake", None) if conn else None
        if note is not None:
            note(bool(write_p), bytes(_ffi.buffer(buf, length)))
    except Exception:  # noqa: S110 - a callback must not unwind through OpenSSL
        pass


_MSG_CALLBACK = _ffi.callback(
    "void (*)(int, int, int, const void *, size_t, SSL *, void *)", _msg_callback
)


def _info_callback(conn: SSL.Connection, where: int, ret: int) -> None:
    """Record alerts in both directions (``SSL_CB_ALERT``): the exact alert a failed
    handshake sent or received is the reason we report."""
    if not where & SSL.SSL_CB_ALERT:
        return
    owner = conn.get_app_data()
    note = getattr(owner, "note_alert", None)
    if note is not None:
        note(bool(where & SSL.SSL_CB_WRITE), ret & 0xFF, ret >> 8)


class TlsContext:
    """A built ``SSL.Context`` for one role, shared by the conversations of a method."""

    def __init__(
        self, config: TlsConfig, role: TlsRole, resume_records: ResumeRecords | None = None
    ) -> None:
        self.config = config
        self.role = role
        source = config.crl_source
        self._crl_generation = source.generation if source is not None else 0
        crls = source.crls if source is not None else config.crls
        self.crls: tuple[x509.CertificateRevocationList, ...] = tuple(_crl(c) for c in crls)
        self.trusted: tuple[x509.Certificate, ...] = (
            tuple(_certificates(config.ca_certificates, "CA bundle"))
            if config.ca_certificates is not None
            else ()
        )
        self._ssl_context = self._build()
        # what each resumable session proved (server); see eapkit.tlsio.resume
        self.resume_records: ResumeRecords = resume_records or MemoryResumeRecords(
            config.session_lifetime if config.resumption else 0
        )
        self._described: dict[bytes, PeerCertificate] = {}

    @property
    def ssl_context(self) -> SSL.Context:
        """The context a new conversation starts from: rebuilt when the CRL source
        changed (conversations under way keep theirs)."""
        source = self.config.crl_source
        if source is not None and self.config.verify_peer:
            source.poll()
            if source.generation != self._crl_generation:
                self._reload_crls(source)
        return self._ssl_context

    def _reload_crls(self, source: CrlSource) -> None:
        self._crl_generation = source.generation
        try:
            crls = tuple(_crl(c) for c in source.crls)
        except ConfigError:
            return  # keep the CRLs in force; the source reports the bad file
        self.crls = crls
        self._ssl_context = self._build()

    def describe(self, cert: x509.Certificate) -> PeerCertificate:
        """The :class:`PeerCertificate` of ``cert``, cached: the same clients come back
        and the server certificate never changes, and parsing costs more than TLS
        resumption itself."""
        der = cert.public_bytes(Encoding.DER)
        info = self._described.get(der)
        if info is None:
            info = PeerCertificate.from_x509(cert)
            if len(self._described) >= 512:
                self._described.pop(next(iter(self._described)))
            self._described[der] = info
        return info

    @property
    def is_server(self) -> bool:
        return self.role is TlsRole.SERVER

    def _build(self) -> SSL.Context:
        cfg = self.config
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(int(cfg.min_version))
        ctx.set_max_proto_version(int(cfg.max_version))
        options = SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION
        if self.is_server:
            options |= SSL.OP_CIPHER_SERVER_PREFERENCE
        if not cfg.resumption or self.is_server:
            # The server's sessions are stateful: a TLS 1.2 session id, or a TLS 1.3
            # ticket that is only an id (tens of bytes, not ~1 KiB: no extra round).
            options |= SSL.OP_NO_TICKET
        ctx.set_options(options)
        ciphers = cfg.cipher_list
        if cfg.allow_legacy_versions and cfg.min_version < TlsVersion.TLS1_2:
            ciphers = "DEFAULT:@SECLEVEL=0"
        try:
            ctx.set_cipher_list(ciphers.encode())
            ctx.set_tls13_ciphersuites(cfg.tls13_ciphersuites.encode())
        except SSL.Error:
            raise ConfigError("no usable cipher suite in the configured lists") from None
        if cfg.groups and _lib.SSL_CTX_set1_curves_list(ctx._context, cfg.groups.encode()) != 1:
            raise ConfigError(f"unknown TLS groups {cfg.groups!r}")
        sigalgs = cfg.signature_algorithms
        if sigalgs and _lib.SSL_CTX_set1_sigalgs_list(ctx._context, sigalgs.encode()) != 1:
            raise ConfigError(f"unknown signature algorithms {sigalgs!r}")
        self._load_identity(ctx)
        self._load_trust(ctx)
        if self.is_server:
            # RFC 5246 §7.4.1.2: without a session id context, OpenSSL refuses to resume
            # sessions of a server that verifies client certificates.
            ctx.set_session_id(b"eapkit")
            ctx.set_timeout(cfg.session_lifetime)
            ctx.set_session_cache_mode(
                SSL.SESS_CACHE_SERVER if cfg.resumption else SSL.SESS_CACHE_OFF
            )
        else:
            ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ctx.set_info_callback(_info_callback)
        if self.is_server and cfg.resumption:
            _lib.SSL_CTX_set_msg_callback(ctx._context, _MSG_CALLBACK)
        return ctx

    def _load_identity(self, ctx: SSL.Context) -> None:
        cfg = self.config
        if cfg.certificate is None or cfg.private_key is None:
            if self.is_server:
                raise ConfigError("a TLS server needs a certificate and a private key")
            return
        chain = _certificates(cfg.certificate, "certificate chain")
        try:
            key = load_pem_private_key(
                _pem(cfg.private_key, "private key"), cfg.private_key_password
            )
        except (ValueError, TypeError):
            raise ConfigError("the private key does not load (format or password)") from None
        try:
            ctx.use_certificate(chain[0])
            ctx.use_privatekey(key)  # type: ignore[arg-type]
            ctx.check_privatekey()
            for extra in chain[1:]:
                ctx.add_extra_chain_cert(extra)
        except (SSL.Error, TypeError, ValueError):
            raise ConfigError("the private key does not match the certificate") from None

    def _load_trust(self, ctx: SSL.Context) -> None:
        cfg = self.config
        if not cfg.verify_peer:
            ctx.set_verify(SSL.VERIFY_NONE, None)
            return
        if not self.trusted:
            raise ConfigError("verifying the other side needs ca_certificates")
        store = ctx.get_cert_store()
        assert store is not None
        for cert in self.trusted:
            store.add_cert(crypto.X509.from_cryptography(cert))
            if self.is_server:
                ctx.add_client_ca(cert)
        if self.crls:
            for crl in self.crls:
                store.add_crl(crl)
            flags = crypto.X509StoreFlags.CRL_CHECK
            if cfg.crl_check_all:
                flags |= crypto.X509StoreFlags.CRL_CHECK_ALL
            store.set_flags(flags)
        mode = SSL.VERIFY_PEER
        if self.is_server and cfg.require_peer_certificate:
            mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        ctx.set_verify_depth(cfg.verify_depth)
        # Our own callback (not pyOpenSSL's wrapper): it can set the X.509 error.
        _lib.SSL_CTX_set_verify(ctx._context, mode, _VERIFY_CALLBACK)

    def is_revoked(self, cert: x509.Certificate) -> bool:
        """A certificate's serial on a configured CRL from its issuer (used for resumed
        sessions, where OpenSSL does not verify the certificate again)."""
        for crl in self.crls:
            if crl.issuer != cert.issuer:
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                return True
        return False
