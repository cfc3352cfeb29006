"""``eapkit check``: is this ``eapkit serve`` configuration safe to run?

Three kinds of finding (:class:`~eapkit.config_schema.Finding`), each one sentence an
administrator can act on:

- the schema (:mod:`eapkit.config_schema`): unknown keys with the nearest valid name,
  wrong types, misspelled methods, a client without a secret;
- the files: the ``[tls]`` certificate, key, CA and CRLs, the database, key file and
  log directories exist, secrets are not readable or anything not writable by others;
  the server certificate's chain, dates, key and name (``[tls] server_name``, the
  ``aaa_id`` clients check), the CRLs' issuer and nextUpdate (RFC 5280 §5.1.2.5);
  the clients' shared secrets (RFC 2865 §3 asks for at least 16 octets);
- every setting that weakens a factor, with what it lets in;
- ``[directory]`` keys Active Directory does not read (``kind = "ad"`` with
  ``group_filter``, ``disabled_filter``...).

Errors stop ``eapkit serve`` at start; warnings are printed.  Time is an argument.
"""

from __future__ import annotations

import datetime as dt
import itertools
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from eapkit.catalog import CATALOG
from eapkit.config_schema import Finding, nearest, validate
from eapkit.errors import ConfigError
from eapkit.pki import load_crl
from eapkit.reset import admin_key
from eapkit.serve import DEFAULT_SECRET, ServeConfig
from eapkit.teap_config import INNER_FACTORS

__all__ = ["check_config", "check_file", "errors_of"]

MIN_SECRET = 16
EXPIRY_WARNING = dt.timedelta(days=30)


def _error(where: str, message: str) -> Finding:
    return Finding("error", where, message)


def _warning(where: str, message: str) -> Finding:
    return Finding("warning", where, message)


def check_file(path: Path, now: dt.datetime) -> list[Finding]:
    """Every finding about the TOML file at ``path`` (schema first; the semantic
    checks only once the schema holds)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [_error(str(path), f"cannot read: {exc}")]
    return check_data(data, path.parent, now)


def check_data(data: dict[str, Any], base: Path, now: dt.datetime) -> list[Finding]:
    found = validate(data)
    if any(f.level == "error" for f in found):
        return found
    try:
        cfg = ServeConfig.from_dict(data, base=base)
    except ConfigError as exc:
        return [*found, _error("", str(exc))]
    return found + list(_ignored_by_ad(data)) + check_config(cfg, now)


# [directory] keys an LDAP directory reads and Active Directory does not (what takes their
# place there: docs/directories.md, "Active Directory")
AD_IGNORES = {
    "group_attribute": "memberOf is always read, with the nested-group search",
    "group_filter": "the nested-group search (LDAP_MATCHING_RULE_IN_CHAIN) finds the groups",
    "id_attribute": "the stable key is always objectGUID",
    "disabled_filter": "the account state comes from userAccountControl and its kin",
}


def _ignored_by_ad(data: dict[str, Any]) -> Iterator[Finding]:
    """``[directory] kind = "ad"`` with keys only LDAP reads: the operator believes they
    do something (a disabled_filter that disables nobody)."""
    directory = data.get("directory")
    if not isinstance(directory, dict) or directory.get("kind") != "ad":
        return
    for key, instead in AD_IGNORES.items():
        if key in directory:
            yield _warning(f"[directory] {key}", f'has no effect with kind = "ad": {instead}')


def check_config(cfg: ServeConfig, now: dt.datetime) -> list[Finding]:
    """The semantic findings about a parsed configuration (what ``eapkit serve`` runs
    at start, after its flags are applied)."""
    return [
        *_methods(cfg),
        *_files(cfg),
        *_tls(cfg, now),
        *_clients(cfg),
        *_weakened(cfg),
        *_teap(cfg),
        *_administrators(cfg),
    ]


def _methods(cfg: ServeConfig) -> Iterator[Finding]:
    """Methods named on the command line (``--methods``) pass no schema."""
    names = [e.name for e in CATALOG]
    for name in cfg.methods:
        if name not in names:
            yield _error(
                "methods", f"{name!r} is not one of {', '.join(names)}{nearest(name, names)}"
            )


def errors_of(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


# -- files ------------------------------------------------------------------------------


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def _existing(where: str, path: Path, *, secret: bool = False) -> Iterator[Finding]:
    mode = _mode(path)
    if mode is None:
        yield _error(where, f"{path} does not exist")
        return
    if mode & stat.S_IWOTH:
        yield _error(where, f"{path} is writable by everyone (mode {mode:04o}): chmod o-w")
    if secret and mode & (stat.S_IRGRP | stat.S_IROTH):
        yield _warning(
            where, f"{path} holds a secret and is readable by others (mode {mode:04o}): chmod 600"
        )


def _directory_of(where: str, path: Path) -> Iterator[Finding]:
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        # eapkit serve and the commands create missing directories 0700 (parents too)
        parent = parent.parent
    mode = _mode(parent)
    if mode is not None and mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        yield _error(where, f"directory {parent} is writable by everyone (mode {mode:04o})")


def _files(cfg: ServeConfig) -> Iterator[Finding]:
    yield from _directory_of("db", cfg.db)
    if cfg.db.exists():
        yield from _existing("db", cfg.db, secret=True)
    if cfg.log != "-":
        yield from _directory_of("log", Path(cfg.log))
    if cfg.store_keys_file is not None:
        if cfg.store_keys_file.exists():
            yield from _existing("store_keys_file", cfg.store_keys_file, secret=True)
        else:
            yield from _directory_of("store_keys_file", cfg.store_keys_file)
    tls = cfg.tls
    for key, path, secret in (
        ("cert", tls.cert, False),
        ("key", tls.key, True),
        ("ca", tls.ca, False),
    ):
        if path is not None:
            yield from _existing(f"[tls] {key}", path, secret=secret)
    for crl in tls.crl:
        yield from _existing("[tls] crl", crl)
    if cfg.radsec is not None:  # [radsec]: the listener's own certificate, CAs and CRLs
        radsec = cfg.radsec
        for where, path, secret in (
            ("[radsec] cert", radsec.cert, False),
            ("[radsec] key", radsec.key, True),
            *(("[radsec] ca", p, False) for p in radsec.ca),
            *(("[radsec] crl", p, False) for p in radsec.crl),
            *((f"[[radsec.clients]] {c.name} ca", c.ca, False) for c in radsec.clients),
        ):
            if path is not None:
                yield from _existing(where, path, secret=secret)


# -- certificates -----------------------------------------------------------------------


def _read(path: Path | None) -> bytes | None:
    try:
        return path.read_bytes() if path is not None else None
    except OSError:
        return None


def _certificates(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError:
            return []


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _tls(cfg: ServeConfig, now: dt.datetime) -> Iterator[Finding]:
    tls = cfg.tls
    cas: list[x509.Certificate] = []
    ca_data = _read(tls.ca)
    if ca_data is not None:
        cas = _certificates(ca_data)
        if not cas:
            yield _error("[tls] ca", f"{tls.ca} holds no certificate (PEM or DER)")
        for ca in cas:
            try:
                is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if not is_ca:
                yield _error("[tls] ca", f"{ca.subject.rfc4514_string()} is not a CA certificate")
    cert_data = _read(tls.cert)
    if cert_data is not None:
        yield from _server_certificate(cfg, cert_data, cas, now)
    for path in tls.crl:
        data = _read(path)
        if data is not None:
            yield from _crl(path, data, cas, now)


def _server_certificate(
    cfg: ServeConfig, data: bytes, cas: list[x509.Certificate], now: dt.datetime
) -> Iterator[Finding]:
    tls = cfg.tls
    chain = _certificates(data)
    if not chain:
        yield _error("[tls] cert", f"{tls.cert} holds no certificate")
        return
    leaf = chain[0]
    if leaf.not_valid_after_utc < now:
        yield _error("[tls] cert", f"expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    elif leaf.not_valid_after_utc - now < EXPIRY_WARNING:
        yield _warning("[tls] cert", f"expires on {leaf.not_valid_after_utc:%Y-%m-%d}")
    if leaf.not_valid_before_utc > now:
        yield _error("[tls] cert", f"not valid before {leaf.not_valid_before_utc:%Y-%m-%d}")
    key_data = _read(tls.key)
    if key_data is not None:
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError) as exc:
            yield _error("[tls] key", f"{tls.key} is not an unencrypted PEM private key ({exc})")
        else:
            raw = serialization.PublicFormat.SubjectPublicKeyInfo
            pem = serialization.Encoding.PEM
            if key.public_key().public_bytes(pem, raw) != leaf.public_key().public_bytes(pem, raw):
                yield _error("[tls] key", f"{tls.key} is not the key of the certificate {tls.cert}")
    for cert, issuer in itertools.pairwise(chain):
        if not _issued_by(cert, issuer):
            yield _error(
                "[tls] cert", f"{tls.cert}: the chain is out of order or broken (leaf first)"
            )
    if cas and not any(_issued_by(chain[-1], ca) or chain[-1] == ca for ca in cas):
        yield _warning(
            "[tls] cert",
            "the server certificate does not chain to [tls] ca: clients must be given its "
            "issuer to check it",
        )
    names = _dns_names(leaf)
    if tls.server_name is not None and tls.server_name not in names:
        yield _error(
            "[tls] cert",
            f"does not name {tls.server_name!r} (server_name); "
            f"its names: {', '.join(names) or 'none'}",
        )
    try:
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in usage:
        yield _warning("[tls] cert", "has no serverAuth extended key usage: Windows refuses it")


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def _crl(
    path: Path, data: bytes, cas: list[x509.Certificate], now: dt.datetime
) -> Iterator[Finding]:
    try:
        crl = load_crl(data)
    except ValueError:
        yield _error("[tls] crl", f"{path} is not a CRL (PEM or DER)")
        return
    next_update = crl.next_update_utc
    if next_update is not None and next_update < now:
        yield _error(
            "[tls] crl",
            f"{path} is past its nextUpdate ({next_update:%Y-%m-%d %H:%M} UTC): every client "
            "certificate of its CA is refused until a fresh CRL is written",
        )
    if cas and not any(crl.is_signature_valid(ca.public_key()) for ca in cas):  # type: ignore[arg-type]
        yield _error("[tls] crl", f"{path} is not signed by a CA in [tls] ca")


# -- clients and weakened factors -------------------------------------------------------


def _client_label(index: int, name: str) -> str:
    return f"[[clients]] #{index} ({name})"


def _clients(cfg: ServeConfig) -> Iterator[Finding]:
    for i, client in enumerate(cfg.clients, 1):
        where = _client_label(i, client.name)
        secret = client.secret.decode("utf-8", "replace")
        if secret == DEFAULT_SECRET and not client.network.is_loopback:
            yield _error(
                where,
                f"the demo secret {DEFAULT_SECRET!r} on a non-loopback client: "
                "use a long random one",
            )
        elif len(client.secret) < MIN_SECRET:
            yield _warning(
                where,
                f"the secret is {len(client.secret)} characters: use {MIN_SECRET} or more (random)",
            )


def _administrators(cfg: ServeConfig) -> Iterator[Finding]:
    """The two-person reset (:mod:`eapkit.reset`) needs two different people listed."""
    keys = [admin_key(a) for a in cfg.administrators]
    people = set(keys) - {""}
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        yield _warning(
            "[admin] administrators",
            f"{key!r} is listed more than once (as spellings of one name): that administrator "
            "cannot act until one spelling is removed",
        )
    if cfg.administrators and len(people) < 2:
        yield _warning(
            "[admin] administrators",
            f"{len(people)} administrator(s): a reset needs a second, different administrator "
            "to approve it, so no reset can take effect; list at least two",
        )


def _weakened(cfg: ServeConfig) -> Iterator[Finding]:
    offered = {e.name for e in CATALOG} & set(cfg.methods)
    if cfg.gtc == "code" and "gtc" in offered:
        yield _warning(
            "gtc",
            'gtc = "code": a bare EAP-GTC login proves a one-time code alone; it is accepted '
            "only after a password round of the same user on the same gateway connection, "
            "except from clients with bind_rounds = false",
        )
        for i, client in enumerate(cfg.clients, 1):
            if not client.bind_rounds:
                yield _warning(
                    _client_label(i, client.name),
                    "bind_rounds = false: a one-time code alone opens a session from this "
                    "client; safe only if every connection on it authenticates a device "
                    "certificate first (certificate-then-code)",
                )
    for i, client in enumerate(cfg.clients, 1):
        if client.second_factor == "nas":
            yield _warning(
                _client_label(i, client.name),
                'second_factor = "nas": a password alone (EAP-MSCHAPv2) passes for users who '
                "have a second factor; safe only if this gateway runs a code round after it "
                "on every connection",
            )
    if "tls" in offered:
        yield _warning(
            "methods",
            "EAP-TLS proves a device certificate alone (no password, no code): a stolen "
            "device with its key gets in until its certificate is revoked",
        )
        if not cfg.tls.crl:
            yield _warning("[tls] crl", "no CRL: a revoked device certificate is still accepted")
    if not cfg.require_message_authenticator:
        yield _warning(
            "require_message_authenticator",
            "false: Access-Requests without Message-Authenticator are forgeable (BlastRADIUS)",
        )


def _teap(cfg: ServeConfig) -> Iterator[Finding]:
    """``[teap]`` (docs/teap.md): rules and bindings that could never be met, inner
    EAP-TLS without a CA for client certificates."""
    teap = cfg.teap
    if not teap.given:
        return
    if "teap" not in cfg.methods:
        yield _warning("[teap]", '"teap" is not in methods: this table has no effect')
    policy = teap.policy
    # eap_teap_id 0 and 1 run the user's inner method only, 2 the machine's only
    asked = {0: {"user"}, 1: {"user"}, 2: {"machine"}}.get(policy.identity, {"machine", "user"})
    inner = {"machine": teap.machine_inner, "user": teap.user_inner}
    if "eap-tls" in (inner[kind] for kind in asked) and cfg.tls.ca is None:
        yield _error("[teap]", "inner EAP-TLS needs [tls] ca: the CA of the client certificates")
    for i, rule in enumerate(policy.rules, 1):
        where = f"[[teap.rules]] #{i}"
        if not rule.machine and not rule.user:
            yield _error(where, "asks for no factor: every TEAP login would meet it")
        for kind, wanted in (("machine", rule.machine), ("user", rule.user)):
            if not wanted:
                continue
            if kind not in asked:
                yield _error(
                    where,
                    f"{kind} factors, but [teap] identity never asks for a {kind}: "
                    "no login can meet this rule",
                )
                continue
            provable = INNER_FACTORS[(kind, inner[kind])]
            if missing := sorted(f.value for f in wanted - provable):
                yield _error(
                    where,
                    f"{kind} = {missing} cannot be proved by {kind}_inner = "
                    f"{inner[kind]!r} (it proves {', '.join(sorted(provable))})",
                )
    if policy.bindings and "machine" not in asked:
        yield _error(
            "[[teap.bindings]]",
            "[teap] identity never asks for a machine: every bound user would be refused",
        )
    if policy.unbound_users == "deny" and not policy.bindings:
        yield _error("[teap] unbound_users", '"deny" without [[teap.bindings]] refuses every user')
    if teap.compat == "rfc7170":
        yield _warning(
            "[teap] compat",
            '"rfc7170": the inner MS-CHAPv2 keys and crypto-binding of hostapd/wpa_supplicant '
            "2.10, not RFC 9930's; peers that follow RFC 9930 fail the crypto-binding",
        )
