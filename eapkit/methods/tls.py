"""EAP-TLS (type 13), both roles: RFC 5216 for TLS 1.2, RFC 9190 for TLS 1.3.

The TLS work is :class:`eapkit.tlsio.TlsEapEngine`'s; this module adds what is
EAP-TLS's own:

Authenticator (server)
    Sends Start, runs the handshake requiring a client certificate that chains to the
    configured CAs, is valid and (with CRLs configured) not revoked, then asks a
    :data:`CertificatePolicy` to bind the certificate to the EAP identity and name the
    user (RFC 5216 §5.2; the default, :func:`bind_identity`, wants the identity among the
    certificate's names and the clientAuth EKU).  The policy also runs for a resumed
    session, with a CRL check in Python, since OpenSSL does not verify the certificate
    of a resumed session again.

    TLS 1.2 full handshake (RFC 5216 §2.1.1)::

        S: Start          P: ClientHello        S: ServerHello .. ServerHelloDone
        P: Certificate .. Finished              S: ChangeCipherSpec, Finished
        P: (empty)        S: Success

    TLS 1.2 resumption ends with the peer's Finished answered by Success.  TLS 1.3
    (RFC 9190 §2.1.1, §2.5): after the peer's Finished, the server sends its tickets
    and one byte 0x00 of application data, the protected success indication; the peer
    acknowledges with an empty Response and gets Success.  Resumption (§2.1.2) has the
    same end.

Peer
    Verifies the server's chain and name (``domain_match`` / ``domain_suffix_match``),
    presents its certificate, accepts Success only after the server's Finished (1.2) or
    the 0x00 indication (1.3), and keeps the session for resumption.

A failed handshake sends its TLS alert to the other side, waits for the
acknowledgement, and ends with a Failure whose reason is the alert's name
(``unknown_ca``, ``certificate_expired``, ``certificate_revoked``, ...) or the policy's
reason.  Keys: :func:`eapkit.tlsio.derive_keys`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import Encoding

from eapkit.credentials import Verdict
from eapkit.methods.base import (
    Authenticator,
    CertificateNames,
    Done,
    Factor,
    MethodContext,
    MethodFactory,
    Outcome,
    Peer,
    Reply,
    Step,
)
from eapkit.packet import EapType, MethodId
from eapkit.tlsio import (
    Failed,
    Message,
    PeerCertificate,
    SessionCache,
    TlsConfig,
    TlsContext,
    TlsEapEngine,
    TlsRole,
    derive_keys,
)
from eapkit.tlsio.method import TlsAuthenticatorBase, TlsPeerBase, tls_attributes

__all__ = [
    "PROTECTED_SUCCESS",
    "TLS",
    "CertificatePolicy",
    "TlsAuthenticator",
    "TlsPeer",
    "accept_any_certificate",
    "bind_identity",
    "client_certificate",
    "tls_authenticator",
    "tls_peer",
]

TLS = MethodId.legacy(EapType.TLS)
# RFC 9190 §2.5: the server's protected success indication (one application-data byte)
PROTECTED_SUCCESS = b"\x00"

CertificatePolicy = Callable[[PeerCertificate, str], Verdict]
"""Binds the client's certificate to the EAP identity (text): accept with the user name
the server should use, or reject with a reason."""


def bind_identity(cert: PeerCertificate, identity: str) -> Verdict:
    """The default policy: the certificate allows client authentication (EKU clientAuth,
    or no EKU) and the EAP identity is one of its names (CN, e-mail, UPN, dNSName),
    compared without case.  The user is the identity."""
    if not cert.has_client_auth:
        return Verdict.reject("certificate_purpose", "certificate lacks the clientAuth EKU")
    wanted = identity.strip().casefold()
    if wanted and any(name.casefold() == wanted for name in cert.names):
        return Verdict.accept(identity.strip())
    return Verdict.reject(
        "identity_mismatch", "the EAP identity is not among the certificate's names"
    )


def client_certificate(cert: PeerCertificate, identity: str) -> Verdict:
    """Identity privacy (RFC 9190 §2.1.4, RFC 5216 §5.2): any EAP Identity (anonymous,
    ``@realm``, empty, ``host/FQDN``) is only a hint; the certificate must allow client
    authentication, and the user is whoever the certificate names, which the server's
    authorization step decides (:mod:`eapkit.authz`) from :attr:`Outcome.certificate`."""
    if not cert.has_client_auth:
        return Verdict.reject("certificate_purpose", "certificate lacks the clientAuth EKU")
    return Verdict.accept(identity.strip())


def accept_any_certificate(cert: PeerCertificate, identity: str) -> Verdict:
    """Any certificate the CAs vouch for; the user is its first CN (or the identity)."""
    return Verdict.accept(cert.common_names[0] if cert.common_names else identity)


def _tls_attributes(engine: TlsEapEngine) -> dict[str, str]:
    attrs = tls_attributes(engine)
    attrs["tls_resumed"] = "yes" if engine.resumed else "no"
    cert = engine.peer_certificate
    if cert is not None:
        attrs["certificate_subject"] = cert.subject
        attrs["certificate_issuer"] = cert.issuer
        attrs["certificate_serial"] = format(cert.serial, "x")
    return attrs


class TlsAuthenticator(TlsAuthenticatorBase):
    """The server role of EAP-TLS (see the module docstring)."""

    method = TLS
    _label = "EAP-TLS"

    def __init__(self, ctx: MethodContext, context: TlsContext, policy: CertificatePolicy) -> None:
        self._ctx = ctx
        self._policy = policy
        self._verdict: Verdict | None = None
        super().__init__(TlsEapEngine(context, EapType.TLS, leaf_check=self._leaf_check))
        self._closing = False

    def _leaf_check(self, cert: PeerCertificate) -> str | None:
        self._verdict = self._policy(cert, self._ctx.identity_text)
        return None if self._verdict.ok else self._verdict.reason

    def _message(self, event: Message) -> Step:
        engine = self._engine
        if not engine.handshake_done:
            if event.empty and not engine.has_output:
                return self._end(Outcome.failed("protocol_error", "empty Response"))
            return Reply(engine.next_type_data())
        if self._closing:
            if not event.empty or event.data:
                return self._end(
                    Outcome.failed("protocol_error", "data after the server's last flight")
                )
            return self._success()
        if event.data:
            return self._end(Outcome.failed("protocol_error", "application data from the peer"))
        refusal = self._authorize()
        if refusal is not None:
            return self._end(refusal)
        if engine.is_tls13:
            engine.write(PROTECTED_SUCCESS)
            self._closing = True
            return Reply(engine.next_type_data())
        if engine.has_output:  # TLS 1.2 full handshake: our ChangeCipherSpec, Finished
            self._closing = True
            return Reply(engine.next_type_data())
        return self._success()  # TLS 1.2 resumption: the peer's Finished was the last word

    def _authorize(self) -> Outcome | None:
        """Run the policy if the handshake did not (resumed session) and check the CRLs."""
        engine = self._engine
        cert = engine.peer_certificate
        if cert is None:
            return Outcome.failed("no_certificate", "the peer presented no certificate")
        if engine.resumed or self._verdict is None:
            if engine.context.is_revoked(cert.certificate):
                return Outcome.failed("certificate_revoked", "resumed session, revoked since")
            self._verdict = self._policy(cert, self._ctx.identity_text)
        if not self._verdict.ok:
            return Outcome.failed(self._verdict.reason, self._verdict.detail)
        return None

    def _success(self) -> Step:
        engine = self._engine
        assert self._verdict is not None and self._verdict.ok
        user = self._verdict.user or self._ctx.identity_text
        keys, attrs = derive_keys(engine), _tls_attributes(engine)
        cert = engine.peer_certificate
        assert cert is not None  # _authorize refused a session without one
        names = CertificateNames(
            cert.common_names,
            cert.emails,
            cert.upns,
            cert.dns_names,
            hashlib.sha256(cert.certificate.public_bytes(Encoding.DER)).hexdigest(),
        )
        factors = frozenset({Factor.CERTIFICATE})
        return self._end(Outcome(True, "ok", keys, user, "", attrs, factors, names))

    def _end(self, outcome: Outcome) -> Done:
        self._engine.close(outcome.success)  # a clean close keeps the session resumable
        return super()._end(outcome)


class TlsPeer(TlsPeerBase):
    """The peer role of EAP-TLS (see the module docstring)."""

    method = TLS
    _label = "EAP-TLS"

    def __init__(self, ctx: MethodContext, context: TlsContext, cache: SessionCache | None) -> None:
        self._ctx = ctx
        self._cache = cache
        self._cache_key = (context.config.server_name or "", ctx.identity)
        session = cache.get(self._cache_key) if cache is not None else None
        super().__init__(TlsEapEngine(context, EapType.TLS, session=session))

    def _tls_failed(self, failure: Failed) -> Outcome:
        if self._cache is not None:  # a session that failed is not resumed
            self._cache.forget(self._cache_key)
        return super()._tls_failed(failure)

    def _message(self, event: Message) -> Step:
        engine = self._engine
        if not engine.handshake_done:
            return Reply(engine.next_type_data())
        if not engine.is_tls13:
            # TLS 1.2: the server's Finished is verified; answer with our last flight
            # (resumption) or an empty Response (RFC 5216 §2.1.1, §2.1.2).
            return self._send_last(self._success())
        if engine.has_output and engine.resumed:
            # RFC 9190 §2.1.2: our Finished ends a resumed handshake; the server may
            # answer Success (hostapd) or send its commitment (0x00) first.
            step = self._send_last(self._success(), final=False)
            engine.done_writing()
            return step
        if engine.has_output:  # our Certificate .. Finished
            return Reply(engine.next_type_data())
        if not event.data:  # tickets without the indication yet
            if engine.resumed:  # keep the success sent with our Finished (MAY_CONT)
                return self._send_last(self._success(), final=False)
            return Reply(engine.ack())
        if event.data != PROTECTED_SUCCESS:
            return self._send_last(
                Outcome.failed("protocol_error", "application data other than 0x00")
            )
        return self._send_last(self._success())

    def _success(self) -> Outcome:
        engine = self._engine
        if self._cache is not None:
            self._cache.put(self._cache_key, engine.session(), engine)
        return Outcome(True, "ok", derive_keys(engine), None, "", _tls_attributes(engine))

    def _end(self, outcome: Outcome, type_data: bytes, final: bool = True) -> Done:
        if final or not outcome.success:  # MAY_CONT: the commitment may still come
            self._engine.close(outcome.success)  # a clean close keeps it resumable
        return super()._end(outcome, type_data, final)


def tls_authenticator(
    config: TlsConfig, policy: CertificatePolicy = bind_identity
) -> MethodFactory[Authenticator]:
    """A factory for :class:`eapkit.session.AuthenticatorSession`.  The TLS context is
    built here, once: conversations share it (and its session-ticket keys)."""
    context = TlsContext(config, TlsRole.SERVER)
    return MethodFactory(TLS, lambda ctx: TlsAuthenticator(ctx, context, policy), "tls", True)


def tls_peer(config: TlsConfig, cache: SessionCache | None = None) -> MethodFactory[Peer]:
    """A factory for :class:`eapkit.session.PeerSession`.  With resumption on (the
    default) and no ``cache`` given, the factory keeps its own."""
    context = TlsContext(config, TlsRole.PEER)
    if cache is None and config.resumption:
        cache = SessionCache()
    chosen = cache if config.resumption else None
    return MethodFactory(TLS, lambda ctx: TlsPeer(ctx, context, chosen), "tls")
