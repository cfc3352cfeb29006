"""The administrator's commands: ``eapkit user``, ``eapkit enroll``, ``eapkit verify``,
``eapkit store seal``.

- Every change (user add/set/del, an enrollment, recovery codes, sealing) is one JSON
  audit line in the decision log the configuration names (``log``), the same log the
  server writes its decisions to; on stderr too only with ``--audit-stderr``.
- ``user add`` never replaces a user silently: replacing one drops its second factor
  and its policy, so it takes ``--replace`` and says what was lost.  ``user set``
  changes the password or the reply attributes and never touches the factors.
- Secrets never have to be on the command line (where ``ps`` shows them): a password
  comes from ``--password-file``, ``$EAPKIT_PASSWORD`` or a prompt.
- Files that hold a secret (the TOTP QR code *is* the seed) are written 0600
  (:mod:`eapkit.private_files`).
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eapkit.bridge.approvals import EnrollmentLinks
from eapkit.device_commands import add_device_commands
from eapkit.directory import SECOND_FACTORS, Directory
from eapkit.errors import ConfigError, DecodeError
from eapkit.policy import UserPolicy
from eapkit.private_files import private_dir, write_private
from eapkit.reset import FACTORS, ResetRequests, ResetStore, factor_keys
from eapkit.second_factor import SecondFactors, sealing_keys
from eapkit.serve import ServeConfig, open_directory, open_second_factors
from eapkit.store import open_store
from eapkit.store.records import SealedRecords
from eapkit.verify.otp import OtpCredential, otpauth_uri
from eapkit.verify.yubico import YubikeyCredential

__all__ = ["add_admin_commands", "make_dirs", "read_secret", "sqlite_path"]

PASSWORD_ENV = "EAPKIT_PASSWORD"  # noqa: S105 - the variable's name, not a password


def read_secret(path: str | None, env: str | None = None, *, what: str) -> str | None:
    """A secret from a file (its first line) or the environment variable ``env``."""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {what} from {path}: {exc.strerror}") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise ConfigError(f"{path} holds no {what}")
        return lines[0]
    if env and os.environ.get(env):
        return os.environ[env]
    return None


def _config(args: argparse.Namespace) -> ServeConfig:
    cfg = ServeConfig.from_toml(Path(args.config)) if args.config else ServeConfig()
    if args.db:
        cfg.db = Path(args.db)
    make_dirs(cfg)
    return cfg


def make_dirs(cfg: ServeConfig) -> None:
    """The directories of the database, an SQLite store and the decision log, made
    0700 if missing (``/var/lib/eapkit``, ``/var/log/eapkit``)."""
    log = Path(cfg.log) if cfg.log != "-" else None
    for path in (cfg.db, sqlite_path(cfg.store), log):
        if path is not None and path.parent != Path():
            private_dir(path.parent)


def sqlite_path(store: str | None) -> Path | None:
    """The file of a ``sqlite:`` store URL (see :func:`eapkit.store.open_store`)."""
    if store is None or not store.startswith("sqlite:"):
        return None
    path = store.removeprefix("sqlite:")
    return Path(path.removeprefix("//") if path.startswith("///") else path)


def _audit(args: argparse.Namespace, cfg: ServeConfig) -> Callable[[dict[str, Any]], None]:
    """Audit lines into the decision log (``cfg.log``); '-' (stdout, where the server
    would log) is this command's stderr, so its output stays what it prints."""

    def write(event: dict[str, Any]) -> None:
        line = json.dumps({"time": round(time.time(), 3), "event": "admin", **event})
        if cfg.log != "-":
            with Path(cfg.log).open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        if cfg.log == "-" or args.audit_stderr:
            print(line, file=sys.stderr)

    return write


def _password(args: argparse.Namespace, name: str) -> str:
    password: str | None = args.password or read_secret(
        args.password_file, PASSWORD_ENV, what="password"
    )
    if password is None:
        password = getpass.getpass(f"password for {name}: ")
    if not password:
        raise ConfigError("the password is empty")
    return password


def _policy(args: argparse.Namespace, base: UserPolicy | None = None) -> UserPolicy:
    base = base or UserPolicy()
    klass = getattr(args, "klass", None)
    return UserPolicy(
        session_timeout=args.session_timeout
        if args.session_timeout is not None
        else base.session_timeout,
        framed_ip=args.framed_ip if args.framed_ip is not None else base.framed_ip,
        framed_pool=args.framed_pool if args.framed_pool is not None else base.framed_pool,
        klass=klass.encode() if klass is not None else base.klass,
    )


def cmd_user_add(args: argparse.Namespace) -> int:
    cfg = _config(args)
    users = open_directory(cfg)
    old = users.get(args.name)
    if old is not None and not args.replace:
        raise ConfigError(
            f"user {args.name} exists; 'eapkit user set {args.name}' changes it, "
            "'eapkit user add --replace' replaces it (dropping its second factor and policy)"
        )
    policy = _policy(args)
    users.add(
        args.name,
        _password(args, args.name),
        nt_hash=not args.no_nt_hash,
        second_factor=args.second_factor,
        policy=policy,
    )
    lost = []
    if old is not None:
        if old.second_factor != args.second_factor:
            lost.append(f"second factor {old.second_factor} -> {args.second_factor}")
        if old.policy != policy:
            lost.append(f"policy {old.policy.to_json()} -> {policy.to_json()}")
        print(f"user {args.name} replaced: {'; '.join(lost) or 'nothing else changed'}")
    where = cfg.store or cfg.db if cfg.directory == "store" else cfg.db
    print(f"user {args.name} stored in {where}")
    event = "user_replaced" if old is not None else "user_added"
    _audit(args, cfg)({"action": event, "user": args.name, "second_factor": args.second_factor})
    return 0


def cmd_user_set(args: argparse.Namespace) -> int:
    """Change a user's password or reply attributes; the factors stay as they are."""
    cfg = _config(args)
    users = open_directory(cfg)
    old = users.get(args.name)
    if old is None:
        raise ConfigError(f"no user {args.name}: add it first with 'eapkit user add {args.name}'")
    policy = _policy(args, old.policy)
    changed = []
    if args.password is not None or args.password_file:
        users.add(
            args.name,
            _password(args, args.name),  # "--password" alone: prompted for
            nt_hash=old.nt_hash is not None,
            second_factor=old.second_factor,
            policy=policy,
        )
        changed.append("password")
    elif policy != old.policy:
        users.set_policy(args.name, policy)
    if policy != old.policy:
        changed.append("policy")
    if not changed:
        print(f"user {args.name}: nothing to change", file=sys.stderr)
        return 0
    print(f"user {args.name}: {' and '.join(changed)} changed")
    _audit(args, cfg)({"action": "user_set", "user": args.name, "changed": changed})
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    for user in open_directory(_config(args)).list():
        extras = [f"second_factor={user.second_factor}"] + (["disabled"] if user.disabled else [])
        extras.append("mschapv2" if user.nt_hash else "no-mschapv2")
        extras += [f"{k}={v}" for k, v in user.policy.to_json().items()]
        print(f"{user.name}\t{' '.join(extras)}")
    return 0


def cmd_user_del(args: argparse.Namespace) -> int:
    cfg = _config(args)
    users = open_directory(cfg)
    if users.delete(args.name):
        print(f"user {args.name} deleted")
        _audit(args, cfg)({"action": "user_deleted", "user": args.name})
        _forget_helpdesk(args, cfg, users, args.name)
        return 0
    print(f"eapkit: no user {args.name}", file=sys.stderr)
    return 1


def _forget_helpdesk(
    args: argparse.Namespace, cfg: ServeConfig, users: Directory, name: str
) -> None:
    """A deleted user's bypass codes are revoked, their pending resets cancelled and
    their second-factor records (TOTP, YubiKey, security keys, recovery codes) removed:
    a user added later under the same name inherits none of them (docs/operating.md)."""

    second = open_second_factors(cfg, users, audit=_audit(args, cfg))
    by = os.environ.get("EAPKIT_ADMIN", "").strip() or "eapkit user del"
    now = time.time()
    revoked = second.bypass.revoke_user(name, by=by, reason="user deleted", now=now)
    EnrollmentLinks(second.store).revoke_user(name)  # the bridge's one-time links
    cancelled = []
    if all(hasattr(second.store, op) for op in ("record_keys", "swap")):
        store: ResetStore = second.store  # type: ignore[assignment]
        cancelled = ResetRequests(store, audit=_audit(args, cfg)).cancel_user(name, by=by, now=now)
        removed = [k for k in factor_keys(store, name, FACTORS) if second.store.delete(k)]
        if removed:
            _audit(args, cfg)({"action": "factors_removed", "user": name, "removed": len(removed)})
    if revoked or cancelled:
        print(
            f"{len(revoked)} bypass code(s) revoked, {len(cancelled)} pending reset(s) cancelled",
            file=sys.stderr,
        )


def cmd_user_disable(args: argparse.Namespace) -> int:
    """Keep the user, refuse every login (``user_disabled``); ``enable`` undoes it."""
    cfg = _config(args)
    disabled = args.user_command == "disable"
    if open_directory(cfg).set_disabled(args.name, disabled):
        print(f"user {args.name} {'disabled' if disabled else 'enabled'}")
        _audit(args, cfg)({"action": f"user_{args.user_command}d", "user": args.name})
        return 0
    print(f"eapkit: no user {args.name}", file=sys.stderr)
    return 1


def _second_factors(args: argparse.Namespace) -> tuple[SecondFactors, ServeConfig]:
    cfg = _config(args)
    return open_second_factors(cfg, open_directory(cfg), audit=_audit(args, cfg)), cfg


def _need_user(users: Directory, name: str) -> None:
    """The user must exist in the directory (for LDAP: found by the user filter now;
    their factors are then stored under the entry's stable identifier)."""
    if users.get(name) is None:
        raise ConfigError(
            f"no user {name} in the directory: add it first"
            f" ('eapkit user add {name}', or in LDAP for an LDAP directory)"
        )


def cmd_enroll_totp(args: argparse.Namespace) -> int:
    second, _ = _second_factors(args)
    _need_user(second.users, args.user)
    size = {"sha1": 20, "sha256": 32, "sha512": 64}[args.algorithm]
    credential = OtpCredential(os.urandom(size), "totp", args.algorithm, args.digits, args.period)
    second.totp.enroll(second.key(args.user), credential, time.time())
    second.users.set_second_factor(args.user, "totp")
    uri = otpauth_uri(args.user, credential, issuer=args.issuer)
    print(uri)
    try:
        import segno
    except ImportError:
        print("(install eapkit[qr] for a QR code)", file=sys.stderr)
        return 0
    qr = segno.make(uri, error="m")
    if not args.no_terminal:
        qr.terminal(compact=True)
    for out, kind in ((args.png, "png"), (args.svg, "svg")):
        if out:
            buffer = io.BytesIO()
            qr.save(buffer, kind=kind, scale=6)
            write_private(out, buffer.getvalue())  # the QR code is the seed: 0600
            print(f"QR code written to {out} (mode 0600: it holds the secret)", file=sys.stderr)
    return 0


def cmd_enroll_yubikey(args: argparse.Namespace) -> int:
    second, _ = _second_factors(args)
    _need_user(second.users, args.user)
    if not args.aes_key:
        raise ConfigError("--aes-key HEX is needed for local validation")
    try:
        key = bytes.fromhex(args.aes_key)
        credential, token = YubikeyCredential.from_otp(args.otp, key)
    except (ValueError, DecodeError) as exc:
        raise ConfigError(f"the OTP does not decrypt under that AES key: {exc}") from None
    second.yubikey.enroll(second.key(args.user), credential, time.time(), seen=token)
    second.users.set_second_factor(args.user, "yubikey")
    print(f"YubiKey {credential.public_id} enrolled for {args.user}")
    return 0


def cmd_enroll_recovery(args: argparse.Namespace) -> int:
    second, _ = _second_factors(args)
    _need_user(second.users, args.user)
    if args.count < 1:
        raise ConfigError("--count must be at least 1")
    for code in second.recovery.issue(second.key(args.user), time.time(), args.count):
        print(code)
    return 0


def cmd_enroll_webauthn(args: argparse.Namespace) -> int:
    """A one-time link to the approval bridge's page that registers a security key."""
    from eapkit.bridge.config import BridgeConfig
    from eapkit.bridge.gate import Bridge

    second, cfg = _second_factors(args)
    _need_user(second.users, args.user)
    bridge_cfg = cfg.bridge or BridgeConfig()
    if args.url:
        bridge_cfg.url = args.url
    bridge = Bridge(bridge_cfg, second.users, second.store, audit=_audit(args, cfg))
    print(bridge.enrollment_link(args.user, time.time(), args.ttl))
    if cfg.bridge is None:
        print("(eapkit serve needs a [bridge] table for this link to work)", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Helpdesk: is this code right for this user now?  Uses it up like a login."""
    second, _ = _second_factors(args)
    verdict = second.check_code(args.user, args.code, time.time())
    print(f"{'ok' if verdict.ok else 'refused'}: {verdict.reason}")
    return 0 if verdict.ok else 1


def cmd_directory_test(args: argparse.Namespace) -> int:
    """What the server would see of USER, without a password: exit 0 when found, 1 when
    unknown, 2 when the directory does not answer (``eapkit: ...`` on stderr)."""
    from eapkit.directory import DirectoryUnavailable
    from eapkit.directory.base import ExternalAccounts

    cfg = _config(args)
    users = open_directory(cfg)
    try:
        if not isinstance(users, ExternalAccounts):  # local or store: the record is all
            record = users.get(args.user)
            if record is None:
                print(
                    f"eapkit: no user {args.user} in the {cfg.directory} directory", file=sys.stderr
                )
                return 1
            rows = [("directory", cfg.directory), ("user", record.name)]
            state = "disabled" if record.disabled else "usable"
            matched = None
        else:
            seen = users.explain(args.user)  # LDAP or AD
            if seen is None:
                print(f"eapkit: no user {args.user} in the directory", file=sys.stderr)
                return 1
            record = seen.user
            rows = [
                ("server", seen.server),
                ("dn", seen.dn),
                ("stable id", seen.key),
                ("groups (memberOf)", ", ".join(seen.member_of) or "-"),
                ("groups (search)", ", ".join(seen.searched) or "-"),
            ]
            if seen.nested:  # LDAP's groups in groups (AD's are in the search's)
                rows.append(("groups (nested)", ", ".join(seen.nested)))
            state = seen.state or (f"usable ({seen.unseen})" if seen.unseen else "usable")
            matched = seen.matched
    except DirectoryUnavailable as exc:
        raise ConfigError(f"the directory did not answer: {exc}") from None
    finally:
        users.close()
    attributes = " ".join(f"{k}={v}" for k, v in record.policy.to_json().items())
    rows += [
        ("account state", state),
        ("policy", f"{matched} ([[policy.groups]])" if matched else "none matched"),
        ("second factor", record.second_factor),
        ("reply attributes", attributes or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}")
    return 0


def cmd_store_seal(args: argparse.Namespace) -> int:
    """Seal every plain record of the store under the configured keys (the migration
    for a store written before keys existed: plain records are refused once they do)."""
    cfg = _config(args)
    store = open_store(cfg.store or f"sqlite:{cfg.db}")
    keys = getattr(store, "record_keys", None)
    if keys is None:
        raise ConfigError(f"this store ({type(store).__name__}) cannot list its records")
    sealer = sealing_keys(cfg.db, keys_file=cfg.store_keys_file)
    records = SealedRecords(store, sealer, require_sealed=False)
    sealed = [key for key in keys() if records.seal_plain(key)]
    print(f"{len(sealed)} plain record(s) sealed")
    if sealed:
        _audit(args, cfg)({"action": "records_sealed", "count": len(sealed)})
    return 0


def add_admin_commands(sub: Any) -> Any:
    """``user``, ``enroll``, ``verify`` and ``store`` on the ``eapkit`` parser; returns
    the ``store`` sub-commands (:mod:`eapkit.helpdesk` adds ``rekey``)."""

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", help="the server's database (default: eapkit.db)")
        p.add_argument("--config", help="eapkit serve's TOML file (its db, directory, store)")
        p.add_argument("--audit-stderr", action="store_true", help="audit lines on stderr too")
        return p

    def password(p: argparse.ArgumentParser, help: str) -> None:
        p.add_argument("--password", help=f"{help} (visible in ps: prefer the next two)")
        p.add_argument("--password-file", help=f"first line of this file (or ${PASSWORD_ENV})")

    def attributes(p: argparse.ArgumentParser) -> None:
        p.add_argument("--session-timeout", type=int, metavar="SECONDS")
        p.add_argument("--framed-ip", metavar="IPV4")
        p.add_argument("--framed-pool", metavar="POOL")
        p.add_argument("--class", dest="klass", metavar="CLASS", help="RADIUS Class to send")

    usr = sub.add_parser("user", help="manage the server's users")
    usub = usr.add_subparsers(dest="user_command", required=True)
    add = common(usub.add_parser("add", help="add a user (--replace to replace one)"))
    add.add_argument("name")
    password(add, "prompted for when left out")
    add.add_argument("--no-nt-hash", action="store_true", help="no MS-CHAPv2 for this user")
    add.add_argument("--second-factor", choices=SECOND_FACTORS, default="none")
    add.add_argument(
        "--replace", action="store_true", help="replace an existing user (its factor too)"
    )
    attributes(add)
    add.set_defaults(func=cmd_user_add)
    st = common(usub.add_parser("set", help="change a user's password or attributes"))
    st.add_argument("name")
    st.add_argument(
        "--password", nargs="?", const="", help="a new password (prompted for when no value)"
    )
    st.add_argument("--password-file", help="the new password: this file's first line")
    attributes(st)
    st.set_defaults(func=cmd_user_set)
    common(usub.add_parser("list", help="list users")).set_defaults(func=cmd_user_list)
    dele = common(usub.add_parser("del", help="delete a user"))
    dele.add_argument("name")
    dele.set_defaults(func=cmd_user_del)
    for verb, text in (("disable", "refuse every login of a user"), ("enable", "undo disable")):
        dis = common(usub.add_parser(verb, help=text))
        dis.add_argument("name")
        dis.set_defaults(func=cmd_user_disable)

    enr = sub.add_parser("enroll", help="enroll a second factor for a user")
    esub = enr.add_subparsers(dest="enroll_command", required=True)
    et = common(esub.add_parser("totp", help="a TOTP app: prints the otpauth:// URI and QR"))
    et.add_argument("user")
    et.add_argument("--issuer", default="eapkit")
    et.add_argument("--algorithm", choices=["sha1", "sha256", "sha512"], default="sha1")
    et.add_argument("--digits", type=int, choices=[6, 8], default=6)
    et.add_argument("--period", type=int, default=30)
    et.add_argument("--png", help="also write the QR code as PNG (mode 0600)")
    et.add_argument("--svg", help="also write the QR code as SVG (mode 0600)")
    et.add_argument("--no-terminal", action="store_true", help="no QR code on the terminal")
    et.set_defaults(func=cmd_enroll_totp)
    ey = common(esub.add_parser("yubikey", help="a YubiKey slot programmed for Yubico OTP"))
    ey.add_argument("user")
    ey.add_argument("--otp", required=True, help="one OTP from the key")
    ey.add_argument("--aes-key", help="the slot's AES key (hex), for local validation")
    ey.set_defaults(func=cmd_enroll_yubikey)
    er = common(esub.add_parser("recovery", help="single-use recovery codes (replaces old ones)"))
    er.add_argument("user")
    er.add_argument("--count", type=int, default=10)
    er.set_defaults(func=cmd_enroll_recovery)
    ew = common(esub.add_parser("webauthn", help="a security key or passkey: a one-time link"))
    ew.add_argument("user")
    ew.add_argument(
        "--ttl",
        type=float,
        help="seconds the link stays valid (default: [bridge] enroll_ttl, itself 1 day unless set)",
    )
    ew.add_argument("--url", help="the approval page's address (default from [bridge])")
    ew.set_defaults(func=cmd_enroll_webauthn)
    ver = common(sub.add_parser("verify", help="helpdesk: check a user's one-time code now"))
    ver.add_argument("user")
    ver.add_argument("code")
    ver.set_defaults(func=cmd_verify)

    dirp = sub.add_parser("directory", help="look at the user directory as the server does")
    dsub = dirp.add_subparsers(dest="directory_command", required=True)
    dt = common(dsub.add_parser("test", help="what the server sees of USER (no password)"))
    dt.add_argument("user")
    dt.set_defaults(func=cmd_directory_test)

    sto = sub.add_parser("store", help="maintain the second-factor store")
    ssub = sto.add_subparsers(dest="store_command", required=True)
    seal = common(ssub.add_parser("seal", help="seal plain records under the configured keys"))
    seal.set_defaults(func=cmd_store_seal)
    add_device_commands(sub)
    return ssub
