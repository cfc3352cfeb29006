"""``eapkit serve``: the reference RADIUS server, configured from TOML and flags.

With nothing configured it runs on the **embedded default**: 127.0.0.1:1812, the user
directory in ``./eapkit.db`` (SQLite), a demo CA and server certificate made on first
start in ``./eapkit-pki/``, the loopback NAS with the secret ``testing123``, and the
methods EAP-TLS, EAP-TTLS, PEAP, EAP-MSCHAPv2 and EAP-GTC (those this installation has).

Every setting lives in the TOML file (``--config``); the common ones are flags too::

    listen = ["127.0.0.1:1812"]
    accounting_ports = [1813, 1646]    # a Status-Server arriving on these ports gets an
                                       # Accounting-Response (RFC 5997 §3)
    db = "eapkit.db"
    log = "-"                          # decision log: "-" is stdout, else a file
    methods = ["tls", "ttls", "peap", "mschapv2", "gtc"]
    require_message_authenticator = true
    store = "sqlite:eapkit.db"         # second-factor state: sqlite:FILE or redis://host:port/0
    directory = "local"                # the users: "local" (a table in db) or "store"
                                       # (records in the store above, so a Redis
                                       # cluster holds them too; eapkit.directory),
                                       # or a [directory] table with kind = "ldap"
                                       # and [[policy.groups]] (docs/directories.md)
    store_keys_file = "eapkit-store.key"  # AES-GCM keys sealing OTP secrets
                                       # (or EAPKIT_STORE_KEYS=kid:base64key in the environment)
    pap = true                         # plain RADIUS: PAP (and challenge-response) and
                                       # MS-CHAP-V2 (RFC 2548 §2.3)
    gtc = "password"                   # EAP-GTC's first answer: the password (followed
                                       # by the code, or the code in a second round);
                                       # "code": the code alone, for a NAS that already
                                       # authenticated the device or user in an earlier
                                       # round (strongSwan remote-1, RFC 4739)
    conversation_ttl = 60
    max_conversations = 10000
    round_window = 120                 # gtc = "code": a code round must follow a password
                                       # round of the same user and IKE SA this soon
                                       # (eapkit.radius.rounds)

    [devices]                          # the device registry (docs/devices.md)
    bind_clients = ["vpn-gateway"]     # these clients' logins need a device round first:
                                       # EAP-TLS with a registered, active device whose
                                       # owners include the user (eapkit.radius.device_rounds)

Paths are relative to the TOML file's directory.  ``eapkit check`` validates the file
against :mod:`eapkit.config_schema` and :mod:`eapkit.check`; ``eapkit serve`` refuses
to start on an error there.

    [tls]
    cert = "server.pem"                # chain, leaf first
    key = "server.key"
    ca = "ca.pem"                      # CAs for client certificates (EAP-TLS)
    crl = ["ca.crl"]                   # revocation lists (RFC 9190 §5.3), reloaded when
                                       # they change or on SIGHUP (eapkit.crl_reload)
    server_name = "radius.example.org" # the name clients check; eapkit check compares
    fragment_size = 1398
    min_version = "1.2"
    max_version = "1.3"
    profile = "default"                # "legacy": also the CBC and static-RSA TLS 1.2
                                       # suites old peers need (AES128-SHA, ...)
    # ciphers = "ECDHE+AESGCM"         # TLS 1.2 cipher list (OpenSSL syntax), instead
                                       # of the profile's
    # groups = "X25519:P-256"          # key exchange groups (OpenSSL's default if unset)
    # signature_algorithms = "ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256"
    # security_level = 1               # OpenSSL @SECLEVEL
    peap_version = 1                   # highest PEAP version offered (0 or 1)
    resume_lifetime = 3600             # seconds a TLS session may be resumed (a resumed
                                       # TTLS/PEAP login skips phase 2 only if it had
                                       # succeeded); 0: no session ids, no tickets
    identity = ["san_upn", "san_email", "cn"]  # certificate -> user: first present wins
    realms = []                        # user@realm (UPN, e-mail) names user for these
                                       # realms, else the whole user@realm (with the
                                       # demo PKI: ["eapkit.test"])

    [policy]                           # the one authorization step (eapkit.authz)
    certificate_is_possession = false  # true: client keys are hardware-bound, so a
                                       # certificate alone satisfies a 2FA user
    max_password_failures = 10         # per NAS and user, then "throttled" ...
    max_nas_password_failures = 200    # ... and per NAS,
    password_failure_window = 300      # within this many seconds

    [[clients]]
    address = "192.0.2.0/24"
    secret = "a long random secret"
    name = "vpn-gateways"
    second_factor = "enforce"          # or "nas": the NAS asks for the second factor in
                                       # a round of its own, so password-only methods
                                       # (MS-CHAPv2) may pass for users who have one
    bind_rounds = true                 # false: take a code-only round alone (the
                                       # gateway checked a device certificate first)

    [bridge]                           # the security-key approval bridge (eapkit.bridge):
    listen = "127.0.0.1:8812"          # logins of users whose second factor is "webauthn"
    url = "http://localhost:8812"      # wait for approval on this web page
    timeout = 60                       # (all settings: eapkit/bridge/config.py)

    [teap]                             # EAP-TEAP's machine + user chaining and its policy
    identity = "machine_and_user"      # (all settings: eapkit/teap_config.py, docs/teap.md)
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eapkit.authz import Authorizer, CertificateIdentity, PasswordThrottle
from eapkit.bridge.config import BridgeConfig
from eapkit.bypass import in_method
from eapkit.catalog import CATALOG, DEFAULT_METHODS, ServerContext, lookup
from eapkit.config_schema import validate
from eapkit.credentials import ResponseCheck
from eapkit.crl_reload import CrlFiles
from eapkit.devices import DeviceRegistry
from eapkit.directory import DIRECTORIES, Directory, RequestScoped
from eapkit.directory import open_directory as _open_directory
from eapkit.directory.ad_rules import AdSettings
from eapkit.directory.groups import GroupPolicy, LdapSettings
from eapkit.errors import ConfigError
from eapkit.methods.base import Authenticator, MethodFactory
from eapkit.methods.mschapv2_check import NtHashLookup
from eapkit.radius.access import EapAccess
from eapkit.radius.address import parse_hostport
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import LIGHT_METHODS, DecisionLog, RadiusCore
from eapkit.radius.device_rounds import DeviceBinding
from eapkit.radius.mschap import MsChapAccess
from eapkit.radius.ntlm_auth import run_helper
from eapkit.radius.pap import PapAccess
from eapkit.radius.radsec import RadsecSettings
from eapkit.radius.rounds import RoundBinding
from eapkit.radsec_config import radsec_clients, radsec_settings
from eapkit.second_factor import SecondFactors
from eapkit.second_factor import open_second_factors as _open_second_factors
from eapkit.teap_config import TeapSettings, teap_settings

if TYPE_CHECKING:
    from eapkit.tlsio.config import TlsConfig

__all__ = [
    "DEMO_REALM",
    "PolicySettings",
    "ServeConfig",
    "build_authorizer",
    "build_core",
    "ensure_demo_pki",
    "open_directory",
    "server_context",
    "server_tls_config",
]

DEMO_REALM = "eapkit.test"  # the demo PKI's client e-mail realm, [tls] realms by default
DEFAULT_SECRET = "testing123"  # noqa: S105 - the loopback demo NAS, documented
GTC_MODES = ("password", "code")


@dataclass
class TlsFiles:
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    crl: list[Path] = field(default_factory=list)
    fragment_size: int = 1398
    min_version: str = "1.2"
    max_version: str = "1.3"
    server_name: str | None = None  # the name clients check (aaa_id); eapkit check
    resume_lifetime: int = 3600
    profile: str = "default"
    ciphers: str | None = None
    groups: str | None = None
    signature_algorithms: str | None = None
    security_level: int | None = None
    peap_version: int = 1

    identity: tuple[str, ...] = ("san_upn", "san_email", "cn")
    realms: tuple[str, ...] = ()


def _optional(table: dict[str, Any], key: str) -> str | None:
    return str(table[key]) if key in table else None


@dataclass
class PolicySettings:
    """``[policy]``: the authorization step's settings (:mod:`eapkit.authz`)."""

    certificate_is_possession: bool = False
    max_password_failures: int = 10
    max_nas_password_failures: int = 200
    password_failure_window: float = 300.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicySettings:
        known = {"certificate_is_possession", "max_password_failures", "groups"}
        known |= {"max_nas_password_failures", "password_failure_window"}
        if unknown := set(data) - known:
            raise ConfigError(f"[policy] has no setting {', '.join(sorted(unknown))}")
        value = data.get("certificate_is_possession", False)
        if not isinstance(value, bool):
            raise ConfigError("[policy] certificate_is_possession is true or false")
        return cls(
            value,
            int(data.get("max_password_failures", 10)),
            int(data.get("max_nas_password_failures", 200)),
            float(data.get("password_failure_window", 300.0)),
        )


@dataclass
class ServeConfig:
    listen: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", 1812)])
    accounting_ports: frozenset[int] = frozenset({1813, 1646})
    db: Path = Path("eapkit.db")
    log: str = "-"
    syslog: str | None = None  # udp://HOST:PORT or unix:/PATH: a copy of each line (RFC 5424)
    syslog_facility: int = 10  # authpriv
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    require_message_authenticator: bool = True
    conversation_ttl: float = 60.0
    max_conversations: int = 10_000
    tls: TlsFiles = field(default_factory=TlsFiles)
    clients: list[Client] = field(default_factory=list)
    pki_dir: Path | None = None
    pap: bool = True
    gtc: str = "password"
    store: str | None = None
    directory: str = "local"
    ldap: LdapSettings | None = None  # [directory] kind = "ldap" (eapkit.directory.ldap)
    ad: AdSettings | None = None  # [directory] kind = "ad" (eapkit.directory.ad)
    store_keys_file: Path | None = None
    bridge: BridgeConfig | None = None
    round_window: float = 120.0  # eapkit.radius.rounds: password round -> code round
    policy: PolicySettings = field(default_factory=PolicySettings)
    radsec: RadsecSettings | None = None  # [radsec]: the RadSec listener (eapkit.radius.radsec)
    administrators: tuple[str, ...] = ()  # [admin]: who may issue bypasses, approve resets
    # [devices] bind_clients: these clients' logins need a device round first (issue 20)
    device_clients: list[str] | None = None
    teap: TeapSettings = field(default_factory=TeapSettings)  # [teap] (eapkit.teap_config)

    @classmethod
    def from_toml(cls, path: Path) -> ServeConfig:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        return cls.from_dict(data, base=path.parent)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path = Path()) -> ServeConfig:
        """The configuration of a parsed TOML document; every schema mistake
        (:func:`eapkit.config_schema.validate`) is one line of the ConfigError."""
        errors = [str(f) for f in validate(data) if f.level == "error"]
        if errors:
            raise ConfigError("\n".join(errors))
        cfg = cls()

        def p(value: str) -> Path:
            return (base / value) if not Path(value).is_absolute() else Path(value)

        if "listen" in data:
            listen = data["listen"]
            cfg.listen = [
                parse_hostport(x) for x in ([listen] if isinstance(listen, str) else listen)
            ]
        if "accounting_ports" in data:
            cfg.accounting_ports = frozenset(int(x) for x in data["accounting_ports"])
        if "db" in data:
            cfg.db = p(data["db"])
        if "log" in data:  # "-" is stdout; a file is relative to the TOML's directory
            cfg.log = "-" if data["log"] == "-" else str(p(data["log"]))
        if "syslog" in data:
            cfg.syslog = str(data["syslog"])
        cfg.syslog_facility = int(data.get("syslog_facility", cfg.syslog_facility))
        cfg.methods = list(data.get("methods", cfg.methods))
        cfg.require_message_authenticator = bool(data.get("require_message_authenticator", True))
        cfg.conversation_ttl = float(data.get("conversation_ttl", cfg.conversation_ttl))
        cfg.max_conversations = int(data.get("max_conversations", cfg.max_conversations))
        cfg.pap = bool(data.get("pap", True))
        cfg.gtc = str(data.get("gtc", cfg.gtc))
        if cfg.gtc not in GTC_MODES:
            raise ConfigError(f"gtc is one of {', '.join(GTC_MODES)}, not {cfg.gtc!r}")
        if "store" in data:
            cfg.store = str(data["store"])
        directory = data.get("directory", cfg.directory)
        cfg.directory = str(directory["kind"] if isinstance(directory, dict) else directory)
        if cfg.directory not in DIRECTORIES:
            raise ConfigError(f"directory is one of {', '.join(DIRECTORIES)}")
        if cfg.directory == "ldap":
            if not isinstance(directory, dict):
                raise ConfigError(
                    'directory "ldap" needs a [directory] table: see docs/directories.md'
                )
            groups = [
                GroupPolicy.from_dict(dict(g)) for g in data.get("policy", {}).get("groups", [])
            ]
            cfg.ldap = LdapSettings.from_dict(dict(directory), base, groups)
        if cfg.directory == "ad":
            if not isinstance(directory, dict):
                raise ConfigError(
                    'directory "ad" needs a [directory] table: see docs/directories.md'
                )
            groups = [
                GroupPolicy.from_dict(dict(g)) for g in data.get("policy", {}).get("groups", [])
            ]
            cfg.ad = AdSettings.from_dict(dict(directory), base, groups)
        cfg.round_window = float(data.get("round_window", cfg.round_window))
        if "devices" in data:
            cfg.device_clients = [str(c) for c in data["devices"].get("bind_clients", [])]
        if "store_keys_file" in data:
            cfg.store_keys_file = p(data["store_keys_file"])
        if "bridge" in data:
            cfg.bridge = BridgeConfig.from_dict(dict(data["bridge"]))
            if cfg.bridge.device_crl is not None:
                cfg.bridge.device_crl = str(p(cfg.bridge.device_crl))
        cfg.policy = PolicySettings.from_dict(dict(data.get("policy", {})))
        cfg.administrators = tuple(str(a) for a in data.get("admin", {}).get("administrators", []))
        if "teap" in data:
            cfg.teap = teap_settings(dict(data["teap"]))
        tls = data.get("tls", {})
        identity = tls.get("identity", TlsFiles.identity)
        realms = tls.get("realms", [])
        cfg.tls = TlsFiles(
            cert=p(tls["cert"]) if "cert" in tls else None,
            key=p(tls["key"]) if "key" in tls else None,
            ca=p(tls["ca"]) if "ca" in tls else None,
            crl=[
                p(c)
                for c in ([tls["crl"]] if isinstance(tls.get("crl"), str) else tls.get("crl", []))
            ],
            fragment_size=int(tls.get("fragment_size", 1398)),
            min_version=str(tls.get("min_version", "1.2")),
            max_version=str(tls.get("max_version", "1.3")),
            server_name=str(tls["server_name"]) if "server_name" in tls else None,
            resume_lifetime=int(tls.get("resume_lifetime", 3600)),
            profile=str(tls.get("profile", "default")),
            ciphers=_optional(tls, "ciphers"),
            groups=_optional(tls, "groups"),
            signature_algorithms=_optional(tls, "signature_algorithms"),
            security_level=int(tls["security_level"]) if "security_level" in tls else None,
            peap_version=int(tls.get("peap_version", 1)),
            identity=tuple(str(x) for x in ([identity] if isinstance(identity, str) else identity)),
            realms=tuple(str(x) for x in ([realms] if isinstance(realms, str) else realms)),
        )
        if cfg.tls.peap_version not in (0, 1):
            raise ConfigError("[tls] peap_version is 0 or 1")
        if cfg.tls.resume_lifetime < 0:
            raise ConfigError("[tls] resume_lifetime is 0 (off) or more seconds")
        CertificateIdentity(cfg.tls.identity, frozenset(cfg.tls.realms))  # check it now
        for entry in data.get("clients", []):
            try:
                cfg.clients.append(
                    Client.of(
                        entry["address"],
                        entry["secret"],
                        entry.get("name", ""),
                        entry.get("second_factor", "enforce"),
                        bind_rounds=entry.get("bind_rounds", True),
                    )
                )
            except (KeyError, ValueError) as exc:
                raise ConfigError(f"bad [[clients]] entry: {exc}") from None
        if len({c.name for c in cfg.clients}) != len(cfg.clients):
            raise ConfigError("two [[clients]] entries have the same name")
        if "radsec" in data:
            cfg.radsec = radsec_settings(dict(data["radsec"]), p)
            names = {c.name for c in cfg.clients} & {c.name for c in cfg.radsec.clients}
            if names:
                raise ConfigError(f"[[clients]] and [[radsec.clients]] share names: {names}")
        if cfg.device_clients:  # a misspelt name would bind nothing: refuse it
            known = {c.name for c in cfg.clients}
            known |= {c.name for c in cfg.radsec.clients} if cfg.radsec else set()
            unknown = sorted(set(cfg.device_clients) - known)
            if unknown:
                raise ConfigError(f"[devices] bind_clients names no client: {', '.join(unknown)}")
            if "tls" not in cfg.methods:  # no device round could ever pass: all refused
                raise ConfigError(
                    '[devices] bind_clients needs "tls" in methods (the device round)'
                )
        return cfg


def ensure_demo_pki(directory: Path, *, now: dt.datetime | None = None) -> dict[str, Path]:
    """A demo CA, server certificate (radius.eapkit.test) and client certificate
    (``alice``), made once; later starts reuse them.  For trying eapkit, not for service."""
    from eapkit import pki

    files = pki.PkiFiles(directory, "alice")
    paths = {
        "ca": files.ca,
        "ca_key": files.ca_key,
        "cert": files.server_cert,
        "key": files.server_key,
        "client_cert": files.client_cert,
        "client_key": files.client_key,
    }
    if not all(p.exists() for p in paths.values()):
        pki.write_pki(
            directory,
            now=now or dt.datetime.now(dt.UTC),
            ca_name="eapkit demo CA",
            server_names=["radius.eapkit.test"],
            client_email="alice@eapkit.test",
        )
    return paths


def open_directory(cfg: ServeConfig) -> Directory:
    """The users of ``cfg``: ``directory = "local"`` (the SQLite file ``db``) or
    ``"store"`` (records in ``store``, by default that same file)."""
    # No verified-password cache: every login pays one PBKDF2, so a cached right
    # password does not answer faster than a wrong one (eapkit.authz, equal cost).
    return _open_directory(
        cfg.directory, cfg.db, cfg.store, cache_ttl=0.0, ldap=cfg.ldap, ad=cfg.ad, run=run_helper
    )


def open_second_factors(
    cfg: ServeConfig, users: Directory, audit: Callable[[dict[str, Any]], None] | None = None
) -> SecondFactors:
    """The store and sealing keys of ``cfg`` (defaults: the user database's file and a
    key file beside it, made on first use)."""
    second = _open_second_factors(
        users, cfg.db, store_url=cfg.store, keys_file=cfg.store_keys_file, audit=audit
    )
    # a bypass issued by someone since removed from [admin] no longer works
    second.bypass.administrators = cfg.administrators or None
    return second


def round_binding(
    cfg: ServeConfig, second: SecondFactors, clients: Sequence[Client]
) -> RoundBinding | None:
    """With ``gtc = "code"`` a bare EAP-GTC login proves a code alone: bind it to a
    password round of the same user and gateway connection (eapkit.radius.rounds),
    except for clients with ``bind_rounds = false``."""
    if cfg.gtc != "code":
        return None
    unbound = frozenset(c.name for c in clients if not c.bind_rounds)
    return RoundBinding(second.store, window=cfg.round_window, unbound=unbound)


# The CRL files of the TLS settings built in this process: SIGHUP forces a reload.
CRL_SOURCES: list[CrlFiles] = []


def _warn(message: str) -> None:
    print(f"eapkit serve: {message}", file=sys.stderr)


def reload_crls() -> None:
    """Have every CRL file looked at on the next TLS conversation (``SIGHUP``)."""
    for source in CRL_SOURCES:
        source.force()


def server_tls_config(cfg: ServeConfig) -> TlsConfig:
    """The server's TLS settings from ``[tls]`` (RFC 5216 §5, RFC 9190 §2.1); the CRL
    files are reloaded when they change (:mod:`eapkit.crl_reload`)."""
    from eapkit.tlsio.config import TlsConfig, TlsVersion
    from eapkit.tlsio.framing import FramingConfig

    if cfg.tls.cert is None or cfg.tls.key is None:
        raise ConfigError("TLS-based methods need [tls] cert and key (or --cert/--key)")
    versions = {"1.2": TlsVersion.TLS1_2, "1.3": TlsVersion.TLS1_3}
    try:
        min_v, max_v = versions[cfg.tls.min_version], versions[cfg.tls.max_version]
    except KeyError:
        raise ConfigError("TLS versions are 1.2 or 1.3") from None
    crl_source = CrlFiles(cfg.tls.crl, warn=_warn) if cfg.tls.crl else None
    if crl_source is not None:
        CRL_SOURCES.append(crl_source)
    return TlsConfig(
        certificate=cfg.tls.cert.read_bytes(),
        private_key=cfg.tls.key.read_bytes(),
        ca_certificates=cfg.tls.ca.read_bytes() if cfg.tls.ca else None,
        crls=list(crl_source.crls) if crl_source else [],
        crl_source=crl_source,
        min_version=min_v,
        max_version=max_v,
        profile=cfg.tls.profile,
        tls12_ciphers=cfg.tls.ciphers,
        groups=cfg.tls.groups,
        signature_algorithms=cfg.tls.signature_algorithms,
        security_level=cfg.tls.security_level,
        framing=FramingConfig(fragment_size=cfg.tls.fragment_size),
        resumption=cfg.tls.resume_lifetime > 0,
        session_lifetime=max(cfg.tls.resume_lifetime, 1),
    )


def server_context(
    cfg: ServeConfig,
    users: Directory,
    *,
    pap: ResponseCheck | None = None,
    code: ResponseCheck | None = None,
    password: ResponseCheck | None = None,
    nt_hash: NtHashLookup | None = None,
) -> ServerContext:
    """What the catalog's builders get: the user directory's checks (or ``password``
    and ``nt_hash`` in their place: the authorization step's guarded ones), ``pap``
    (the password followed by the user's code) and ``code`` when the server runs second
    factors, and the TLS settings when a configured method needs them."""
    needs_tls = any(entry.tls for entry in CATALOG if entry.name in cfg.methods)
    return ServerContext(
        password=password or users.check_password,
        nt_hash=nt_hash or users.nt_hash,
        tls=server_tls_config(cfg) if needs_tls else None,
        password_and_code=pap,
        code=code,
        gtc=cfg.gtc,
        peap_version=cfg.tls.peap_version,
        teap_identity=cfg.teap.identity,
        teap_compat=cfg.teap.compat,
        teap_require_emsk_binding=cfg.teap.require_emsk_binding,
        teap_user_inner=cfg.teap.user_inner,
        teap_machine_inner=cfg.teap.machine_inner,
    )


def method_context(context: ServerContext, name: str) -> ServerContext:
    """``context`` whose code checks know they run in method ``name`` (a helpdesk
    bypass code may be scoped to methods: eapkit.bypass)."""
    return replace(
        context,
        password_and_code=in_method(name, context.password_and_code),
        code=in_method(name, context.code),
    )


def build_methods(
    cfg: ServeConfig, context: ServerContext, warn: Callable[[str], None]
) -> list[MethodFactory[Authenticator]]:
    """The catalog's methods that ``cfg.methods`` names, in its order."""
    factories: list[MethodFactory[Authenticator]] = []
    names = {entry.name for entry in CATALOG}
    for name in cfg.methods:
        if name not in names:
            warn(f"method {name!r} is not available in this eapkit; skipped")
            continue
        factories.append(lookup(name).server(method_context(context, name)))
    if not factories:
        raise ConfigError("no EAP method left to offer")
    return factories


def build_authorizer(cfg: ServeConfig, users: Directory, second: SecondFactors) -> Authorizer:
    """The one authorization step (:mod:`eapkit.authz`) of ``cfg``: ``[tls] identity``
    and ``realms``, ``[policy]``, password throttling in the second factors' store."""
    settings = cfg.policy
    throttle = PasswordThrottle(
        second.store,
        settings.max_password_failures,
        settings.max_nas_password_failures,
        settings.password_failure_window,
    )
    return Authorizer(
        users,
        CertificateIdentity(cfg.tls.identity, frozenset(cfg.tls.realms)),
        settings.certificate_is_possession,
        approval_bridge=cfg.bridge is not None,
        throttle=throttle,
        chaining=cfg.teap.policy,
    )


def local_backends(cfg: ServeConfig, store: object) -> bool:
    """Whether the users and their second factors live in this machine's SQLite file
    (or memory): no LDAP, AD or Redis round trip can stall a check, so the rounds of
    ``LIGHT_METHODS`` may run on the event loop (eapkit.radius.front, issue 21)."""
    from eapkit.store.memory import MemoryStore
    from eapkit.store.sqlite import SqliteStore

    return cfg.directory in ("local", "store") and isinstance(store, SqliteStore | MemoryStore)


def build_core(
    cfg: ServeConfig,
    users: Directory,
    *,
    log_stream: Any = None,
    warn: Callable[[str], None] = lambda msg: print(f"eapkit: {msg}", file=sys.stderr),
    audit: Callable[[dict[str, Any]], None] | None = None,
) -> RadiusCore:
    decisions = DecisionLog(log_stream)
    if cfg.syslog:
        from eapkit.syslog5424 import SyslogSender

        decisions.copies.append(SyslogSender(cfg.syslog, facility=cfg.syslog_facility).send)
    # Every check below reads a user's record at most once per Access-Request (the
    # core opens the request scope: eapkit.directory.scope).
    users = RequestScoped.around(users)
    second = open_second_factors(cfg, users, audit=audit or decisions.write)
    second.approval_bridge = cfg.bridge is not None
    authorizer = build_authorizer(cfg, users, second)
    assert authorizer.throttle is not None
    devices = None
    if cfg.device_clients is not None:  # [devices]: registered certificates name devices
        authorizer.devices = DeviceRegistry(second.store)
        authorizer.device_clients = frozenset(cfg.device_clients)
        authorizer.device_log = decisions.write
        devices = DeviceBinding(
            authorizer.devices, frozenset(cfg.device_clients), cfg.round_window, decisions.write
        )
    # Passwords past the throttle's limit are refused unchecked; MS-CHAPv2 gets no NT
    # hash for users it cannot satisfy (eapkit.authz).
    password = authorizer.throttle.guard(users.check_password)
    # With the users' second factors: the password followed by the code, or a challenge
    pap = second.pap(password)
    context = server_context(
        cfg,
        users,
        pap=pap,
        code=second.check_code,
        password=password,
        nt_hash=authorizer.nt_hash(users.nt_hash),
    )
    methods = build_methods(cfg, context, warn)
    clients = cfg.clients or [
        Client.of("127.0.0.0/8", DEFAULT_SECRET, "localhost"),
        Client.of("::1/128", DEFAULT_SECRET, "localhost6"),
    ]
    eap = EapAccess(
        methods,
        ttl=cfg.conversation_ttl,
        max_conversations=cfg.max_conversations,
        authorizer=authorizer,
        rounds=round_binding(cfg, second, [*clients, *radsec_clients(cfg.radsec)]),
        devices=devices,
    )
    plain = (
        MsChapAccess(  # MS-CHAP v1/v2 (RFC 2548), PAP and its code round
            users.nt_hash,  # behind the authorizer's NT-hash guard
            authorizer,
            PapAccess(
                in_method("pap", pap) or pap,
                code_check=in_method("pap", second.check_code),
                authorizer=authorizer,
            ),
        )
        if cfg.pap
        else None
    )
    core = RadiusCore(
        ClientTable(clients),
        eap,
        plain=plain,
        decisions=decisions,
        require_message_authenticator=cfg.require_message_authenticator,
        accounting_ports=cfg.accounting_ports,
        light_methods=LIGHT_METHODS if local_backends(cfg, second.store) else frozenset(),
    )
    if cfg.bridge is not None:
        from eapkit.bridge.gate import Bridge  # needs the bridge extra

        core.approval = Bridge(
            cfg.bridge,
            users,
            second.store,
            audit=audit or decisions.write,
            otp=second.totp,
            yubikey=second.yubikey,
        )
    return core


def describe(cfg: ServeConfig, methods: Sequence[str]) -> str:
    addrs = ", ".join(f"{h}:{p}" for h, p in cfg.listen)
    return f"eapkit serve: listening on {addrs}; methods {', '.join(methods)}; db {cfg.db}"


def now() -> float:
    return time.time()
