"""The method interface shared by every EAP method, both roles (DESIGN.md).

A method is a sans-I/O state machine that sees only Type-Data: the session layer
(:mod:`eapkit.session`) owns the EAP header, identifiers, Nak, duplicates and the final
Success/Failure.  Compare hostapd's ``struct eap_method`` (init / buildReq / check /
process / isDone / getKey).

Authenticator (server role)::

    first = method.start()            # Type-Data of the first Request
    step = method.receive(type_data)  # one Response in, one Step out

Peer (client role)::

    step = method.receive(type_data)  # one Request in, one Step out

A :class:`Step` is :class:`Reply` (send this Type-Data, the method goes on) or
:class:`Done` (the method has finished, with an :class:`Outcome`).  A peer's ``Done`` may
carry a last Response (``type_data``) to send before the authenticator's Success or
Failure; its outcome says whether the peer will accept a Success (RFC 4137 §4.1
``decision``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from eapkit.packet import MethodId
from eapkit.rand import SYSTEM_RANDOM, RandomSource

__all__ = [
    "Authenticator",
    "CertificateNames",
    "Done",
    "Factor",
    "InnerProof",
    "KeyMaterial",
    "MethodContext",
    "MethodFactory",
    "Outcome",
    "Peer",
    "Reply",
    "Step",
]


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """Keys exported by a key-deriving method (RFC 5247 §1.4): MSK (64 bytes), EMSK
    (64 bytes) and the Session-Id.  ``repr`` never shows the keys."""

    msk: bytes = field(repr=False)
    emsk: bytes = field(repr=False)
    session_id: bytes = b""
    # Octets of the MSK each MS-MPPE key carries (RFC 2548 §2.4.2): 32, or 16 for
    # MS-CHAPv2, whose MPPE keys are 16 octets (RFC 3079 §3, [MS-CHAP] §3.1.5.1).
    mppe_key_length: int = 32

    def __post_init__(self) -> None:
        if len(self.msk) < 64:
            raise ValueError(f"MSK of {len(self.msk)} bytes: RFC 5247 requires at least 64")


class Factor(enum.StrEnum):
    """What a finished method proved about the user (DESIGN.md, "Authorization"): policy
    reads these, never method names."""

    PASSWORD = "password"  # something the user knows (PAP, GTC, MS-CHAPv2, inner methods)
    CERTIFICATE = "certificate"  # a user certificate whose key the peer holds (EAP-TLS)
    MACHINE_CERTIFICATE = "machine_certificate"  # a device certificate (TEAP machine)
    OTP_DEVICE = "otp_device"  # possession: a TOTP/HOTP/YubiKey OTP code or recovery code
    SECURITY_KEY = "security_key"  # possession: a FIDO2/WebAuthn assertion


@dataclass(frozen=True, slots=True)
class CertificateNames:
    """The names in the peer's verified end-entity certificate (RFC 5280 §4.1.2.6
    subject CN, §4.2.1.6 subjectAltName rfc822Name, UPN otherName, dNSName).  A method
    reports them; the server's authorization step (:mod:`eapkit.authz`) maps them to a
    directory user by its documented rule, never by the EAP Identity."""

    common_names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    upns: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    fingerprint: str = ""  # SHA-256 of the DER, hex: what the device registry keys on


@dataclass(frozen=True, slots=True)
class InnerProof:
    """One inner authentication of a chaining tunnel (RFC 9930 §3.6 Identity-Type): who,
    as what, by which method, and what it proved."""

    identity_type: str  # "user" | "machine"
    identity: str
    method: str  # "eap-tls" | "eap-mschapv2" | "basic-password"
    success: bool
    factors: frozenset[Factor] = frozenset()
    certificate: CertificateNames | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a method ended.

    ``reason`` is a short machine-readable word (``ok``, ``bad_password``,
    ``unknown_ca``, ...); ``detail`` is a human sentence without secrets.  ``identity``
    is the user the method authenticated (for tunnelled methods, the inner identity),
    when it differs from or refines the EAP Identity.  ``attributes`` carries what the
    method learned that a RADIUS layer may use (e.g. a certificate's subject);
    ``certificate`` the names of the peer certificate a method verified (EAP-TLS);
    ``inner`` each inner authentication of a chaining tunnel (TEAP), in order.
    """

    success: bool
    reason: str
    keys: KeyMaterial | None = None
    identity: str | None = None
    detail: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    factors: frozenset[Factor] = frozenset()
    certificate: CertificateNames | None = None
    inner: tuple[InnerProof, ...] = ()

    @classmethod
    def ok(cls, keys: KeyMaterial | None = None, identity: str | None = None) -> Outcome:
        return cls(True, "ok", keys, identity)

    @classmethod
    def failed(cls, reason: str, detail: str = "", identity: str | None = None) -> Outcome:
        return cls(False, reason, None, identity, detail)


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``type_data`` in the next Request (authenticator) or this Response (peer)."""

    type_data: bytes


@dataclass(frozen=True, slots=True)
class Done:
    """The method has ended.  A peer may give a last Response to send (``type_data``).

    ``final`` is for the peer role: False means the method would accept a Success now
    but may still be asked more (RFC 4137 §4.1 methodState MAY_CONT, as EAP-GTC when the
    authenticator asks for a second factor); the session then passes a further Request of
    the same method to it.
    """

    outcome: Outcome
    type_data: bytes | None = None
    final: bool = True


Step = Reply | Done


class Authenticator(Protocol):
    """The server role of a method."""

    method: MethodId

    def start(self) -> bytes:
        """Type-Data of the method's first Request."""
        ...

    def receive(self, type_data: bytes) -> Step:
        """One Response's Type-Data in, one step out.  Never raises on bad input."""
        ...


class Peer(Protocol):
    """The client role of a method."""

    method: MethodId

    def receive(self, type_data: bytes) -> Step:
        """One Request's Type-Data in, one step out.  Never raises on bad input."""
        ...


@dataclass(frozen=True, slots=True)
class MethodContext:
    """What the session tells a method when it creates it.

    ``identity`` is the EAP Identity (RFC 3748 §5.1) the peer gave, or the peer's own
    identity in the peer role; ``now`` is the time the session was given (methods read no
    clock); ``random`` is the conversation's randomness.
    """

    identity: bytes = b""
    now: float = 0.0
    random: RandomSource = SYSTEM_RANDOM

    @property
    def identity_text(self) -> str:
        """The identity as text; bytes that are not UTF-8 are kept as escapes."""
        return self.identity.decode("utf-8", "backslashreplace")


M = TypeVar("M", covariant=True)  # Authenticator or Peer


@dataclass(frozen=True, slots=True)
class MethodFactory(Generic[M]):
    """Makes one method instance per conversation; the session holds a list of these in
    the order of preference."""

    method: MethodId
    create: Callable[[MethodContext], M]
    name: str = ""
    # True when ``create`` and the method's ``start()`` only build protocol state (no
    # credential, store or directory read): the RADIUS fronts may then run the round
    # that starts the method on the event loop (eapkit.radius.front, issue 21).
    pure_start: bool = False

    def __call__(self, ctx: MethodContext) -> M:
        return self.create(ctx)
