"""The method catalog: every EAP method eapkit has, in one table (DESIGN.md, "Layers").

A row says what configuration calls the method (``"ttls"``), its wire identity (RFC 3748
§5, IANA "EAP Method Types"), how a server builds it, how a peer builds it, the factors
it can prove (:class:`~eapkit.methods.base.Factor`) and where it is specified.  The
methods themselves know nothing of this table, of ``eapkit serve`` or of ``eapkit
probe``: a builder is the only place that wires a method module to the application's
credentials.  Adding a method is one module under :mod:`eapkit.methods` and one row here.

Builders get a runtime context, never the application's configuration:

- :class:`ServerContext`, built once by the server (``eapkit serve``): its TLS settings,
  the credential checks (:mod:`eapkit.credentials`) with the users' second factors
  already folded in, the NT-hash lookup, the GTC mode;
- :class:`PeerContext`, built by the peer (``eapkit probe``) from its options: identity,
  password, one-time code, TLS settings, and a tunnel's inner method.

The table order is the server's default order of preference.  A peer names a tunnel
with its inner method, ``ttls-pap``, ``peap-gtc`` (:func:`peer_method`).

The method modules are imported by the builders when called: the TLS stack costs a
quarter of a second to import, which ``eapkit --help`` should not pay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from eapkit.credentials import ResponseCheck
from eapkit.errors import ConfigError
from eapkit.methods.base import Authenticator, Factor, MethodFactory, Peer
from eapkit.packet import EapType, MethodId

if TYPE_CHECKING:
    from eapkit.methods.mschapv2 import NtHashLookup
    from eapkit.tlsio import SessionCache, TlsConfig

__all__ = [
    "CATALOG",
    "DEFAULT_METHODS",
    "LOGIN_METHODS",
    "PEER_METHODS",
    "MethodEntry",
    "PeerContext",
    "ServerContext",
    "lookup",
    "peer_method",
]


@dataclass(frozen=True, slots=True)
class ServerContext:
    """What a server builder may use.

    ``password`` checks the password alone.  ``password_and_code`` checks the password
    followed by the user's one-time code in one response, or answers ``CHALLENGE`` for
    a second round (:class:`~eapkit.credentials.TwoRoundCheck`); ``code`` checks a code
    alone.  Both are None where the server runs no second factors.  ``gtc`` is EAP-GTC's
    first answer: ``"password"`` (then the code) or ``"code"`` alone, only behind a NAS
    that authenticated the device in an earlier round (RFC 4739, strongSwan remote-1).
    """

    password: ResponseCheck
    nt_hash: NtHashLookup
    tls: TlsConfig | None = None
    password_and_code: ResponseCheck | None = None
    code: ResponseCheck | None = None
    gtc: str = "password"
    peap_version: int = 1  # the highest PEAP version the server offers
    # TEAP (RFC 9930): which identity types phase 2 asks for, as hostapd's eap_teap_id
    # 0-5 (0 no Identity-Type request, user only; 1 require user; 2 require machine;
    # 3 both required; 4 both requested, either suffices; 5 both requested, machine
    # required, user optional), the RFC 7170/hostap compatibility mode and the inner
    # method of each identity type ("eap-tls" | "eap-mschapv2" | "basic-password").
    teap_identity: int = 0
    teap_compat: str = "rfc9930"
    teap_user_inner: str = "eap-mschapv2"
    teap_machine_inner: str = "eap-tls"
    # refuse an MSK-only Crypto-Binding answer when the EMSK MAC was asked for (Windows
    # sends MSK-only: eapkit.methods.teap.TeapPolicy)
    teap_require_emsk_binding: bool = False

    def server_tls(self) -> TlsConfig:
        if self.tls is None:
            raise ConfigError("TLS-based methods need [tls] cert and key (or --cert/--key)")
        return self.tls

    def tunnel_tls(self) -> TlsConfig:
        """A tunnel's TLS: the server's, asking no client certificate."""
        return replace(self.server_tls(), verify_peer=False, require_peer_certificate=False)


@dataclass(frozen=True, slots=True)
class PeerContext:
    """What a peer builder may use.  ``method`` is the method as the user named it
    (``ttls-pap``), for messages; ``identity`` the (inner) identity; ``otp`` the
    one-time code a server may ask for in a round of its own; ``inner`` a tunnel's
    inner method (``pap``, ``eap-mschapv2``); ``sessions`` where a TLS-based peer keeps
    the session of a success and offers it on the next authentication (RFC 5216
    §2.1.2, RFC 9190 §2.1.2; ``eapkit probe --reauth``), when ``tls.resumption`` is on."""

    method: str
    identity: str
    password: str | None = None
    otp: str | None = None
    tls: TlsConfig | None = None
    inner: str | None = None
    peap_version: int = 0  # the highest PEAP version the peer accepts
    peap_label: int = 0  # 1: PEAPv1 keys with "client PEAP encryption" (peaplabel=1)
    sessions: SessionCache | None = None
    # TEAP: the machine's credentials (a password, or a certificate in machine_tls) and
    # the RFC 7170/hostap compatibility mode ("rfc9930" | "rfc7170")
    machine_identity: str | None = None
    machine_password: str | None = None
    machine_tls: TlsConfig | None = None
    teap_compat: str = "rfc9930"

    def need_password(self) -> str:
        if self.password is None:
            raise ConfigError(f"--method {self.method} needs --password")
        return self.password

    def need_tls(self) -> TlsConfig:
        if self.tls is None:
            raise ConfigError(f"--method {self.method} needs TLS settings")
        return self.tls

    def gtc_answers(self) -> Callable[[str], str]:
        """The GTC answers: the password to the first prompt, the one-time code (``otp``)
        to a second one (a server asking for the second factor in its own round)."""
        password = self.need_password()
        otp = self.otp
        asked: list[str] = []

        def answer(prompt: str) -> str:
            asked.append(prompt)
            if len(asked) > 1 and otp is not None:
                return otp
            return password

        return answer


ServerBuilder = Callable[[ServerContext], MethodFactory[Authenticator]]
PeerBuilder = Callable[[PeerContext], list[MethodFactory[Peer]]]


@dataclass(frozen=True, slots=True)
class MethodEntry:
    """One row of the catalog.  ``module`` is where the method lives (its factories
    name themselves ``name``); ``inner`` lists a tunnel's inner methods as a peer names
    them; ``tls`` says the server builder needs the server's TLS settings; ``bare`` says
    a peer also knows a tunnel by its own name (its builder then picks the inner method
    from the credentials given)."""

    name: str
    method: MethodId
    module: str
    server: ServerBuilder
    peer: PeerBuilder
    factors: frozenset[Factor]
    description: str
    inner: tuple[str, ...] = ()
    tls: bool = False
    default: bool = True  # offered by ``eapkit serve`` when its methods are not named
    bare: bool = False

    def peer_names(self) -> tuple[str, ...]:
        """The names ``eapkit probe --method`` knows this method by."""
        if not self.inner:
            return (self.name,)
        named = tuple(f"{self.name}-{i}" for i in self.inner)
        return (self.name, *named) if self.bare else named


# -- EAP-TLS (RFC 5216, RFC 9190) ------------------------------------------------------------


def _tls_server(ctx: ServerContext) -> MethodFactory[Authenticator]:
    """Any EAP Identity (a hint: identity privacy, RFC 9190 §2.1.4); the user is the
    certificate's, mapped by the server's authorization step (eapkit.authz)."""
    from eapkit.methods.tls import client_certificate, tls_authenticator

    return tls_authenticator(ctx.server_tls(), client_certificate)


def _tls_peer(ctx: PeerContext) -> list[MethodFactory[Peer]]:
    from eapkit.methods.tls import tls_peer

    tls = ctx.need_tls()
    if tls.certificate is None or tls.private_key is None:
        raise ConfigError("--method tls needs --cert and --key")
    return [tls_peer(tls, ctx.sessions)]


# -- EAP-TTLS (RFC 5281, RFC 9427) -------------------------------------------------------------


def _ttls_server(ctx: ServerContext) -> MethodFactory[Authenticator]:
    """PAP and MS-CHAP-V2 from the user directory, inner EAP-MSCHAPv2 and EAP-GTC.
    CHAP is not offered: the directory keeps no cleartext passwords."""
    from eapkit.methods.gtc import gtc_authenticator
    from eapkit.methods.mschapv2 import mschapv2_authenticator
    from eapkit.methods.ttls import ttls_authenticator

    # With second factors, PAP and GTC carry each user's code.
    pap = ctx.password_and_code or ctx.password
    inner = [mschapv2_authenticator(ctx.nt_hash), gtc_authenticator(pap, code_check=ctx.code)]
    if ctx.password_and_code is not None:
        # GTC first: it can carry the code, and a peer that answers whatever inner
        # method is asked (strongSwan's TTLS peer cannot Nak to another) must be
        # asked GTC; a peer that wants MS-CHAPv2 Naks to it.
        inner.reverse()
    return ttls_authenticator(ctx.tunnel_tls(), pap=pap, mschapv2=ctx.nt_hash, eap=inner)


def _ttls_peer(ctx: PeerContext) -> list[MethodFactory[Peer]]:
    """``ctx.identity`` is the inner identity."""
    from eapkit.methods.gtc import gtc_peer
    from eapkit.methods.mschapv2 import mschapv2_peer
    from eapkit.methods.ttls import InnerEap, InnerMethod, InnerMsChapV2, InnerPap, ttls_peer

    inner: InnerMethod
    if ctx.inner == "gtc":  # inner EAP-GTC: the password, then the code if one is asked
        inner = InnerEap([gtc_peer(ctx.gtc_answers())])
    elif ctx.inner == "pap":
        inner = InnerPap(ctx.need_password())
    elif ctx.inner == "mschapv2":
        inner = InnerMsChapV2(ctx.need_password())
    elif ctx.inner == "eap-mschapv2":
        inner = InnerEap([mschapv2_peer(ctx.need_password())])
    else:
        raise ConfigError(f"EAP-TTLS has no inner method {ctx.inner!r}")
    return [ttls_peer(ctx.need_tls(), inner, identity=ctx.identity, cache=ctx.sessions)]


# -- PEAPv0 ([MS-PEAP], RFC 9427) -----------------------------------------------------------


def _peap_server(ctx: ServerContext) -> MethodFactory[Authenticator]:
    """EAP-MSCHAPv2 then EAP-GTC inside, checked against the user directory."""
    from eapkit.methods.gtc import gtc_authenticator
    from eapkit.methods.mschapv2 import mschapv2_authenticator
    from eapkit.methods.peap import peap_authenticator

    # With second factors, GTC carries each user's code (the password followed by the
    # code, or the code in a second GTC round).
    if ctx.password_and_code is not None:
        gtc = gtc_authenticator(ctx.password_and_code, code_check=ctx.code)
    else:
        gtc = gtc_authenticator(ctx.password)
    return peap_authenticator(
        ctx.tunnel_tls(),
        [mschapv2_authenticator(ctx.nt_hash), gtc],
        max_version=ctx.peap_version,
    )


def _peap_peer(ctx: PeerContext) -> list[MethodFactory[Peer]]:
    """``ctx.identity`` inside the tunnel (the session's identity outside)."""
    from eapkit.methods.gtc import gtc_peer
    from eapkit.methods.mschapv2 import mschapv2_peer
    from eapkit.methods.peap import peap_peer

    if ctx.inner == "mschapv2":
        inner = [mschapv2_peer(ctx.need_password())]
    elif ctx.inner == "gtc":
        inner = [gtc_peer(ctx.gtc_answers())]  # the password, then the code if one is asked
    else:
        raise ConfigError(f"PEAP has no inner method {ctx.inner!r}")
    return [
        peap_peer(
            ctx.need_tls(),
            inner,
            ctx.identity,
            max_version=ctx.peap_version,
            new_label=ctx.peap_label == 1,
            cache=ctx.sessions,
        )
    ]


# -- EAP-TEAP (RFC 9930) ------------------------------------------------------------------------


def _teap_server(ctx: ServerContext) -> MethodFactory[Authenticator]:
    """The user's and the machine's inner methods (``teap_user_inner``,
    ``teap_machine_inner``) checked against the user directory (MS-CHAPv2, Basic-Password
    with the users' second factors) or the server's CA (EAP-TLS); ``teap_identity`` says
    which identities phase 2 asks for (hostapd's ``eap_teap_id``)."""
    from eapkit.methods.mschapv2 import mschapv2_authenticator
    from eapkit.methods.teap import INNER_KINDS, InnerMethod, TeapPolicy, teap_authenticator
    from eapkit.methods.teap_keys import COMPAT_MODES
    from eapkit.methods.tls import client_certificate, tls_authenticator

    def inner(kind: str) -> InnerMethod:
        if kind not in INNER_KINDS:
            raise ConfigError(f"TEAP inner method {kind!r}: one of {', '.join(INNER_KINDS)}")
        if kind == "eap-mschapv2":
            return InnerMethod(kind, (mschapv2_authenticator(ctx.nt_hash),))
        if kind == "eap-tls":
            return InnerMethod(kind, (tls_authenticator(ctx.server_tls(), client_certificate),))
        return InnerMethod(kind, password=ctx.password_and_code or ctx.password, code=ctx.code)

    if ctx.teap_compat not in COMPAT_MODES:
        raise ConfigError(f"teap_compat is one of {', '.join(COMPAT_MODES)}")
    if not 0 <= ctx.teap_identity <= 5:
        raise ConfigError("teap_identity is 0 to 5 (hostapd's eap_teap_id)")
    machine = inner(ctx.teap_machine_inner) if ctx.teap_identity >= 2 else None
    policy = TeapPolicy(
        inner(ctx.teap_user_inner),
        machine,
        identity=ctx.teap_identity,
        compat="rfc7170" if ctx.teap_compat == "rfc7170" else "rfc9930",
        require_emsk_binding=ctx.teap_require_emsk_binding,
    )
    return teap_authenticator(ctx.tunnel_tls(), policy)


def _teap_user_inner(ctx: PeerContext, tls: TlsConfig) -> str | None:
    """The user's inner method of ``--method teap``: EAP-TLS with ``--cert``/``--key``,
    EAP-MSCHAPv2 with ``--password`` (the two inner methods a Windows peer has:
    docs/teap.md), none (a machine-only peer) with neither.  Basic-Password-Auth is
    ``teap-password``'s."""
    has_cert = tls.certificate is not None or tls.private_key is not None
    if has_cert and ctx.password is not None:
        raise ConfigError(
            "--method teap: give the user --password or --cert/--key, not both "
            "(teap-mschapv2 and teap-tls name one)"
        )
    if ctx.otp is not None:
        raise ConfigError(
            "--method teap runs no Basic-Password-Auth, so it cannot send --otp: "
            "use --method teap-password"
        )
    if has_cert:
        return "tls"
    if ctx.password is not None:
        return "mschapv2"
    if ctx.machine_password is None and ctx.machine_tls is None:
        raise ConfigError(
            "--method teap needs the user's credentials (--password, or --cert/--key) "
            "or the machine's (--machine-password, or --machine-cert/--machine-key)"
        )
    return None


def _teap_peer(ctx: PeerContext) -> list[MethodFactory[Peer]]:
    """``ctx.identity`` is the user; the machine is ``machine_identity`` with
    ``machine_tls`` (EAP-TLS) or ``machine_password`` (EAP-MSCHAPv2).  Without an inner
    name (``--method teap``) the credentials given choose (:func:`_teap_user_inner`)."""
    from eapkit.methods.mschapv2 import mschapv2_peer
    from eapkit.methods.teap_peer import PeerInner, teap_peer
    from eapkit.methods.tls import tls_peer

    tls = ctx.need_tls()
    inner = ctx.inner if ctx.inner is not None else _teap_user_inner(ctx, tls)
    user: PeerInner | None = None
    if inner is None:
        pass  # the machine alone
    elif inner == "mschapv2":
        user = PeerInner(ctx.identity, "eap-mschapv2", (mschapv2_peer(ctx.need_password()),))
    elif inner == "tls":
        if tls.certificate is None or tls.private_key is None:
            raise ConfigError(f"--method {ctx.method} needs --cert and --key")
        user = PeerInner(ctx.identity, "eap-tls", (tls_peer(replace(tls, resumption=False)),))
    elif inner == "password":
        user = PeerInner(ctx.identity, "basic-password", password=ctx.need_password(), otp=ctx.otp)
    else:
        raise ConfigError(f"TEAP has no inner method {inner!r}")
    machine = None
    name = ctx.machine_identity
    if ctx.machine_tls is not None:
        machine_tls = replace(ctx.machine_tls, resumption=False)
        machine = PeerInner(name or "host/machine", "eap-tls", (tls_peer(machine_tls),))
    elif ctx.machine_password is not None:
        if not name:
            raise ConfigError("--machine-password needs --machine-identity")
        machine = PeerInner(name, "eap-mschapv2", (mschapv2_peer(ctx.machine_password),))
    if ctx.teap_compat not in ("rfc9930", "rfc7170"):
        raise ConfigError("--teap-compat is rfc9930 or rfc7170")
    outer = replace(tls, certificate=None, private_key=None)
    return [
        teap_peer(
            outer,
            user,
            machine,
            compat="rfc7170" if ctx.teap_compat == "rfc7170" else "rfc9930",
        )
    ]


# -- EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2-02, RFC 2759) ---------------------------


def _mschapv2_server(ctx: ServerContext) -> MethodFactory[Authenticator]:
    from eapkit.methods.mschapv2 import mschapv2_authenticator

    return mschapv2_authenticator(ctx.nt_hash)


def _mschapv2_peer(ctx: PeerContext) -> list[MethodFactory[Peer]]:
    from eapkit.methods.mschapv2 import mschapv2_peer

    return [mschapv2_peer(ctx.need_password())]


# -- EAP-GTC (RFC 3748 §5.6) -------------------------------------------------------------------


def _gtc_server(ctx: ServerContext) -> MethodFactory[Authenticator]:
    """The first GTC answer may be the password followed by the code (one round, what
    wpa_supplicant's GTC can do) or the password alone, after which a second GTC round
    asks for the code (peers that read the prompt, eapkit probe among them)."""
    from eapkit.methods.gtc import gtc_authenticator

    if ctx.password_and_code is None:
        return gtc_authenticator(ctx.password)
    if ctx.gtc == "code":
        # Only safe behind a NAS that enforces an earlier authentication round: this
        # conversation alone proves possession of the token, not the password.
        if ctx.code is None:
            raise ConfigError('gtc = "code" needs the server\'s second factors')
        return gtc_authenticator(ctx.code, prompt="One-time code: ")
    return gtc_authenticator(ctx.password_and_code, code_check=ctx.code)


def _gtc_peer(ctx: PeerContext) -> list[MethodFactory[Peer]]:
    from eapkit.methods.gtc import gtc_peer

    return [gtc_peer(ctx.gtc_answers())]


_PASSWORD = frozenset({Factor.PASSWORD})
_PASSWORD_OR_CODE = frozenset({Factor.PASSWORD, Factor.OTP_DEVICE})

CATALOG: tuple[MethodEntry, ...] = (
    MethodEntry(
        "tls",
        MethodId.legacy(EapType.TLS),
        "eapkit.methods.tls",
        _tls_server,
        _tls_peer,
        frozenset({Factor.CERTIFICATE}),
        "RFC 5216, RFC 9190",
        tls=True,
    ),
    MethodEntry(
        "ttls",
        MethodId.legacy(EapType.TTLS),
        "eapkit.methods.ttls",
        _ttls_server,
        _ttls_peer,
        _PASSWORD_OR_CODE,
        "RFC 5281, RFC 9427",
        inner=("pap", "mschapv2", "gtc", "eap-mschapv2"),
        tls=True,
    ),
    MethodEntry(
        "peap",
        MethodId.legacy(EapType.PEAP),
        "eapkit.methods.peap",
        _peap_server,
        _peap_peer,
        _PASSWORD_OR_CODE,
        "[MS-PEAP] PEAPv0, RFC 9427",
        inner=("mschapv2", "gtc"),
        tls=True,
    ),
    MethodEntry(
        "teap",
        MethodId.legacy(EapType.TEAP),
        "eapkit.methods.teap",
        _teap_server,
        _teap_peer,
        frozenset(
            {Factor.PASSWORD, Factor.OTP_DEVICE, Factor.CERTIFICATE, Factor.MACHINE_CERTIFICATE}
        ),
        "RFC 9930 (RFC 7170), RFC 9427",
        inner=("mschapv2", "tls", "password"),
        tls=True,
        default=False,  # opt-in: its identity policy is the server's to choose
        bare=True,  # ``--method teap``: the inner methods follow the credentials given
    ),
    MethodEntry(
        "mschapv2",
        MethodId.legacy(EapType.MSCHAPV2),
        "eapkit.methods.mschapv2",
        _mschapv2_server,
        _mschapv2_peer,
        _PASSWORD,
        "draft-kamath-pppext-eap-mschapv2-02, RFC 2759",
    ),
    MethodEntry(
        "gtc",
        MethodId.legacy(EapType.GTC),
        "eapkit.methods.gtc",
        _gtc_server,
        _gtc_peer,
        _PASSWORD_OR_CODE,
        "RFC 3748 §5.6",
    ),
)

DEFAULT_METHODS = tuple(entry.name for entry in CATALOG if entry.default)
"""What ``eapkit serve`` offers when not told, in this order of preference."""

PEER_METHODS = tuple(name for entry in CATALOG for name in entry.peer_names())
"""What ``eapkit probe --method`` accepts."""

LOGIN_METHODS = ("pap", *(entry.name for entry in CATALOG))
"""What a login may be made with, by name: RADIUS PAP and the catalog's EAP methods
(a helpdesk bypass's scope, a ``[[policy.groups]]`` entry's ``methods``)."""


def lookup(key: str | int | MethodId) -> MethodEntry:
    """Find a method by name (``"gtc"``), legacy type (``6``) or :class:`MethodId`."""
    if isinstance(key, str):
        for entry in CATALOG:
            if entry.name == key.lower():
                return entry
        raise KeyError(f"no EAP method named {key!r}")
    wanted = key if isinstance(key, MethodId) else MethodId.legacy(key)
    for entry in CATALOG:
        if entry.method == wanted:
            return entry
    raise KeyError(f"no EAP method {wanted}")


def peer_method(name: str) -> tuple[MethodEntry, str | None]:
    """The row and inner method of a peer's method name (``ttls-pap``)."""
    for entry in CATALOG:
        if name in entry.peer_names():
            bare = not entry.inner or name == entry.name
            inner = None if bare else name.removeprefix(entry.name + "-")
            return entry, inner
    raise ConfigError(f"--method is one of {', '.join(PEER_METHODS)}")
