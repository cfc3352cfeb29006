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
                                       # cluster holds them too; eapkit.directory)
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

    [tls]
    cert = "server.pem"                # chain, leaf first
    key = "server.key"
    ca = "ca.pem"                      # CAs for client certificates (EAP-TLS)
    crl = ["ca.crl"]                   # revocation lists (RFC 9190 §5.3)
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

    [[clients]]
    address = "192.0.2.0/24"
    secret = "a long random secret"
    name = "vpn-gateways"
    second_factor = "enforce"          # or "nas": the NAS asks for the second factor in
                                       # a round of its own, so password-only methods
                                       # (MS-CHAPv2) may pass for users who have one

    [bridge]                           # the security-key approval bridge (eapkit.bridge):
    listen = "127.0.0.1:8812"          # logins of users whose second factor is "webauthn"
    url = "http://localhost:8812"      # wait for approval on this web page
    timeout = 60                       # (all settings: eapkit/bridge/config.py)
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eapkit.bridge.config import BridgeConfig
from eapkit.catalog import CATALOG, DEFAULT_METHODS, ServerContext, lookup
from eapkit.credentials import ResponseCheck
from eapkit.directory import DIRECTORIES, Directory, RequestScoped
from eapkit.directory import open_directory as _open_directory
from eapkit.errors import ConfigError
from eapkit.methods.base import Authenticator, Factor, MethodFactory
from eapkit.radius.access import EapAccess
from eapkit.radius.address import parse_hostport
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.mschap import MsChapAccess
from eapkit.radius.pap import PapAccess
from eapkit.second_factor import SecondFactors
from eapkit.second_factor import open_second_factors as _open_second_factors
from eapkit.session import Result

if TYPE_CHECKING:
    from eapkit.tlsio.config import TlsConfig

__all__ = [
    "ServeConfig",
    "build_core",
    "ensure_demo_pki",
    "open_directory",
    "server_context",
    "server_tls_config",
]

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
    resume_lifetime: int = 3600
    profile: str = "default"
    ciphers: str | None = None
    groups: str | None = None
    signature_algorithms: str | None = None
    security_level: int | None = None
    peap_version: int = 1


def _optional(table: dict[str, Any], key: str) -> str | None:
    return str(table[key]) if key in table else None


@dataclass
class ServeConfig:
    listen: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", 1812)])
    accounting_ports: frozenset[int] = frozenset({1813, 1646})
    db: Path = Path("eapkit.db")
    log: str = "-"
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
    store_keys_file: Path | None = None
    bridge: BridgeConfig | None = None

    @classmethod
    def from_toml(cls, path: Path) -> ServeConfig:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        return cls.from_dict(data, base=path.parent)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path = Path()) -> ServeConfig:
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
        cfg.log = str(data.get("log", cfg.log))
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
        cfg.directory = str(data.get("directory", cfg.directory))
        if cfg.directory not in DIRECTORIES:
            raise ConfigError(f"directory is one of {', '.join(DIRECTORIES)}")
        if "store_keys_file" in data:
            cfg.store_keys_file = p(data["store_keys_file"])
        if "bridge" in data:
            cfg.bridge = BridgeConfig.from_dict(dict(data["bridge"]))
        tls = data.get("tls", {})
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
            resume_lifetime=int(tls.get("resume_lifetime", 3600)),
            profile=str(tls.get("profile", "default")),
            ciphers=_optional(tls, "ciphers"),
            groups=_optional(tls, "groups"),
            signature_algorithms=_optional(tls, "signature_algorithms"),
            security_level=int(tls["security_level"]) if "security_level" in tls else None,
            peap_version=int(tls.get("peap_version", 1)),
        )
        if cfg.tls.peap_version not in (0, 1):
            raise ConfigError("[tls] peap_version is 0 or 1")
        if cfg.tls.resume_lifetime < 0:
            raise ConfigError("[tls] resume_lifetime is 0 (off) or more seconds")
        for entry in data.get("clients", []):
            try:
                cfg.clients.append(
                    Client.of(
                        entry["address"],
                        entry["secret"],
                        entry.get("name", ""),
                        entry.get("second_factor", "enforce"),
                    )
                )
            except (KeyError, ValueError) as exc:
                raise ConfigError(f"bad [[clients]] entry: {exc}") from None
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
    return _open_directory(cfg.directory, cfg.db, cfg.store)


def open_second_factors(
    cfg: ServeConfig, users: Directory, audit: Callable[[dict[str, Any]], None] | None = None
) -> SecondFactors:
    """The store and sealing keys of ``cfg`` (defaults: the user database's file and a
    key file beside it, made on first use)."""
    return _open_second_factors(
        users, cfg.db, store_url=cfg.store, keys_file=cfg.store_keys_file, audit=audit
    )


# A login that proved this alone cannot have carried a one-time code.
PASSWORD_ONLY = frozenset({Factor.PASSWORD})
# Factors proved against the user directory (a certificate is proved against a CA).
DIRECTORY_FACTORS = frozenset({Factor.PASSWORD, Factor.OTP_DEVICE})


def second_factor_policy(
    second: SecondFactors, clients: Sequence[Client]
) -> Callable[[Result, str], str | None]:
    """Refuse a login that proved only a password (EAP-MSCHAPv2, or MS-CHAP-V2 / CHAP
    inside a tunnel: :attr:`~eapkit.session.Result.factors`) to a user who has a second
    factor, unless the NAS runs the second factor in a round of its own (a client with
    ``second_factor = "nas"``).  A resumed TTLS/PEAP login, which skipped phase 2 and so
    read no user record, is refused when its user has left the directory since."""
    nas_enforced = {c.name for c in clients if c.second_factor == "nas"}

    def authorize(result: Result, client: str) -> str | None:
        outcome = result.outcome
        resumed = outcome is not None and outcome.attributes.get("tls_resumed") == "yes"
        if resumed and result.factors & DIRECTORY_FACTORS and second.users.get(result.user) is None:
            return "unknown_user"
        if client in nas_enforced or not second.needs_code(result.user):
            return None
        if result.factors == PASSWORD_ONLY:
            return "second_factor_required"
        return None

    return authorize


def _plain_second_factor(
    second: SecondFactors, clients: Sequence[Client]
) -> Callable[[str, str], bool]:
    """Does an MS-CHAP-V2 login over plain RADIUS need the code round?  The rule of
    :func:`second_factor_policy`: yes for a user with a second factor, unless the NAS runs
    the second factor itself."""
    nas_enforced = {c.name for c in clients if c.second_factor == "nas"}
    return lambda user, client: client not in nas_enforced and second.needs_code(user)


def server_tls_config(cfg: ServeConfig) -> TlsConfig:
    """The server's TLS settings from ``[tls]`` (RFC 5216 §5, RFC 9190 §2.1)."""
    from eapkit.tlsio.config import TlsConfig, TlsVersion
    from eapkit.tlsio.framing import FramingConfig

    if cfg.tls.cert is None or cfg.tls.key is None:
        raise ConfigError("TLS-based methods need [tls] cert and key (or --cert/--key)")
    versions = {"1.2": TlsVersion.TLS1_2, "1.3": TlsVersion.TLS1_3}
    try:
        min_v, max_v = versions[cfg.tls.min_version], versions[cfg.tls.max_version]
    except KeyError:
        raise ConfigError("TLS versions are 1.2 or 1.3") from None
    return TlsConfig(
        certificate=cfg.tls.cert.read_bytes(),
        private_key=cfg.tls.key.read_bytes(),
        ca_certificates=cfg.tls.ca.read_bytes() if cfg.tls.ca else None,
        crls=[c.read_bytes() for c in cfg.tls.crl],
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
) -> ServerContext:
    """What the catalog's builders get: the user directory's checks, ``pap`` (the
    password followed by the user's code) and ``code`` when the server runs second
    factors, and the TLS settings when a configured method needs them."""
    needs_tls = any(entry.tls for entry in CATALOG if entry.name in cfg.methods)
    return ServerContext(
        password=users.check_password,
        nt_hash=users.nt_hash,
        tls=server_tls_config(cfg) if needs_tls else None,
        password_and_code=pap,
        code=code,
        gtc=cfg.gtc,
        peap_version=cfg.tls.peap_version,
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
        factories.append(lookup(name).server(context))
    if not factories:
        raise ConfigError("no EAP method left to offer")
    return factories


def build_core(
    cfg: ServeConfig,
    users: Directory,
    *,
    log_stream: Any = None,
    warn: Callable[[str], None] = lambda msg: print(f"eapkit: {msg}", file=sys.stderr),
    audit: Callable[[dict[str, Any]], None] | None = None,
) -> RadiusCore:
    decisions = DecisionLog(log_stream)
    # Every check below reads a user's record at most once per Access-Request (the
    # core opens the request scope: eapkit.directory.scope).
    users = RequestScoped.around(users)
    second = open_second_factors(cfg, users, audit=audit or decisions.write)
    second.approval_bridge = cfg.bridge is not None
    # With the users' second factors: the password followed by the code, or a challenge
    pap = second.pap(users.check_password)
    methods = build_methods(cfg, server_context(cfg, users, pap=pap, code=second.check_code), warn)
    clients = cfg.clients or [
        Client.of("127.0.0.0/8", DEFAULT_SECRET, "localhost"),
        Client.of("::1/128", DEFAULT_SECRET, "localhost6"),
    ]
    eap = EapAccess(
        methods,
        policy=users.policy,
        ttl=cfg.conversation_ttl,
        max_conversations=cfg.max_conversations,
        authorize=second_factor_policy(second, clients),
    )
    plain = (
        MsChapAccess(  # MS-CHAP-V2 (RFC 2548 §2.3), PAP and its code round
            users.nt_hash,
            PapAccess(pap, policy=users.policy, code_check=second.check_code),
            policy=users.policy,
            needs_second_factor=_plain_second_factor(second, clients),
            prompt=second.prompt,
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
    )
    if cfg.bridge is not None:
        from eapkit.bridge.gate import Bridge  # needs the bridge extra

        core.approval = Bridge(cfg.bridge, users, second.store, audit=audit or decisions.write)
    return core


def describe(cfg: ServeConfig, methods: Sequence[str]) -> str:
    addrs = ", ".join(f"{h}:{p}" for h, p in cfg.listen)
    return f"eapkit serve: listening on {addrs}; methods {', '.join(methods)}; db {cfg.db}"


def now() -> float:
    return time.time()
