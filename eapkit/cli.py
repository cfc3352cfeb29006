"""The ``eapkit`` command.

- ``eapkit serve``: the reference RADIUS server (see :mod:`eapkit.serve`);
- ``eapkit probe``: a RADIUS client running eapkit's peer methods (:mod:`eapkit.probe`);
- ``eapkit user add|list|del``: the server's user directory (:mod:`eapkit.directory`);
- ``eapkit methods``: the EAP methods this installation has;
- ``eapkit demo``: an EAP-GTC conversation between the two roles in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from eapkit import __version__
from eapkit.catalog import CATALOG, DEFAULT_METHODS, PEER_METHODS
from eapkit.credentials import ResponseCheck, Verdict
from eapkit.directory import SECOND_FACTORS, Directory
from eapkit.errors import ConfigError, DecodeError
from eapkit.loopback import converse
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.policy import UserPolicy
from eapkit.probe import ProbeOptions, load, run_probe
from eapkit.radius.address import parse_hostport
from eapkit.radius.clients import Client
from eapkit.radius.core import RadiusCore
from eapkit.radius.udp import serve
from eapkit.second_factor import SecondFactors
from eapkit.serve import (
    ServeConfig,
    build_core,
    describe,
    ensure_demo_pki,
    open_directory,
    open_second_factors,
)
from eapkit.session import AuthenticatorSession, PeerSession
from eapkit.verify.otp import OtpCredential, otpauth_uri
from eapkit.verify.yubico import YubikeyCredential


def cmd_methods(args: argparse.Namespace) -> int:
    for entry in sorted(CATALOG, key=lambda e: e.method):
        print(f"{entry.name:10} {entry.method!s:10} {entry.description}")
    return 0


def _fixed_answer(answer: str) -> Callable[[str], str]:
    return lambda prompt: answer


def _one_password(user: str, password: str) -> ResponseCheck:
    """The demo's one user, checked as eapkit.testing.InMemoryPasswords would (which the
    application layer may not import)."""
    digest = hashlib.sha256(password.encode()).digest()

    def check(name: str, response: str, now: float, /) -> Verdict:
        given = hashlib.sha256(response.encode("utf-8", "surrogatepass")).digest()
        match = hmac.compare_digest(given, digest)  # compared either way: same cost
        if name != user:
            return Verdict.reject("unknown_user")
        return Verdict.accept(name) if match else Verdict.reject("bad_password")

    return check


def cmd_demo(args: argparse.Namespace) -> int:
    """A GTC conversation between the two roles, right and wrong password."""
    check = _one_password(args.user, args.password)
    ok = True
    for label, answer in (("right password", args.password), ("wrong password", "guess")):
        auth = AuthenticatorSession([gtc_authenticator(check)])
        peer = PeerSession([gtc_peer(_fixed_answer(answer))], args.user)
        conv = converse(auth, peer)
        assert conv.authenticator is not None
        r = conv.authenticator
        print(
            f"EAP-GTC {label}: {'Success' if r.success else 'Failure'} "
            f"(reason={r.reason}, user={r.user}, rounds={r.rounds}, packets={len(conv.transcript)})"
        )
        ok &= r.success == (answer == args.password)
    return 0 if ok else 1


def _user_config(args: argparse.Namespace) -> ServeConfig:
    cfg = ServeConfig.from_toml(Path(args.config)) if args.config else ServeConfig()
    if args.db:
        cfg.db = Path(args.db)
    return cfg


def _users(args: argparse.Namespace) -> Directory:
    return open_directory(_user_config(args))


def cmd_user_add(args: argparse.Namespace) -> int:
    password = args.password
    if password is None:
        password = getpass.getpass(f"password for {args.name}: ")
    policy = UserPolicy(
        session_timeout=args.session_timeout, framed_ip=args.framed_ip, framed_pool=args.framed_pool
    )
    cfg = _user_config(args)
    open_directory(cfg).add(
        args.name,
        password,
        nt_hash=not args.no_nt_hash,
        second_factor=args.second_factor,
        policy=policy,
    )
    where = cfg.store or cfg.db if cfg.directory == "store" else cfg.db
    print(f"user {args.name} stored in {where}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    for user in _users(args).list():
        extras = [f"second_factor={user.second_factor}"]
        extras.append("mschapv2" if user.nt_hash else "no-mschapv2")
        extras += [f"{k}={v}" for k, v in user.policy.to_json().items()]
        print(f"{user.name}\t{' '.join(extras)}")
    return 0


def cmd_user_del(args: argparse.Namespace) -> int:
    if _users(args).delete(args.name):
        print(f"user {args.name} deleted")
        return 0
    print(f"no user {args.name}", file=sys.stderr)
    return 1


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = ServeConfig.from_toml(Path(args.config)) if args.config else ServeConfig()
    if args.listen:
        cfg.listen = [parse_hostport(x) for x in args.listen]
    if args.db:
        cfg.db = Path(args.db)
    if args.log:
        cfg.log = args.log
    if args.methods:
        cfg.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.secret:
        cfg.clients = [
            Client.of("127.0.0.0/8", args.secret, "localhost"),
            Client.of("::1/128", args.secret, "localhost6"),
            *[c for c in cfg.clients if not c.network.is_loopback],
        ]
    if args.cert:
        cfg.tls.cert = Path(args.cert)
    if args.key:
        cfg.tls.key = Path(args.key)
    if args.ca:
        cfg.tls.ca = Path(args.ca)
    if args.fragment_size:
        cfg.tls.fragment_size = args.fragment_size
    if args.tls_max:
        cfg.tls.max_version = args.tls_max
    if cfg.tls.cert is None and cfg.tls.key is None:
        pki_dir = cfg.db.parent / "eapkit-pki"
        files = ensure_demo_pki(pki_dir)
        cfg.tls.cert, cfg.tls.key = files["cert"], files["key"]
        cfg.tls.ca = cfg.tls.ca or files["ca"]
        print(
            f"eapkit serve: demo PKI in {pki_dir}: CA {files['ca']}, server {files['cert']}, "
            f"client alice {files['client_cert']} / {files['client_key']}",
            file=sys.stderr,
        )
    users = open_directory(cfg)
    if args.demo_user:
        name, _, password = args.demo_user.partition(":")
        if not password:
            raise ConfigError("--demo-user is NAME:PASSWORD")
        if users.get(name) is None:
            users.add(name, password)
            print(f"eapkit serve: demo user {name} added to {cfg.db}", file=sys.stderr)
    if args.workers != 1:
        return _serve_workers(cfg, users, args.workers)
    stream = sys.stdout if cfg.log == "-" else open(cfg.log, "a", encoding="utf-8")  # noqa: SIM115
    try:
        core = build_core(cfg, users, log_stream=stream)
        assert core.eap is not None
        names = [str(f.name or f.method) for f in core.eap.methods]

        def ready(bound: list[tuple[str, int]]) -> None:
            cfg.listen = bound
            print(describe(cfg, names), file=sys.stderr, flush=True)

        radius = serve(core, cfg.listen, ready=ready)
        if core.approval is not None:
            from eapkit.bridge.gate import Bridge
            from eapkit.bridge.run import serve_with_bridge

            assert isinstance(core.approval, Bridge)
            radius = serve_with_bridge(radius, core.approval)
        asyncio.run(radius)
    finally:
        if stream is not sys.stdout:
            stream.close()
    print("eapkit serve: stopped", file=sys.stderr)
    return 0


def _serve_workers(cfg: ServeConfig, users: Directory, workers: int) -> int:
    """``--workers N``: N processes on the same port (:mod:`eapkit.radius.workers`);
    each builds its own core (database connections, decision log) after the fork."""
    from eapkit.radius.workers import run_workers
    from eapkit.second_factor import sealing_keys

    # Made here, once: workers racing to create the sealing keys file would read it empty.
    sealing_keys(cfg.db, keys_file=cfg.store_keys_file)
    users.close()  # a database connection must not cross a fork
    workers = workers or os.cpu_count() or 1

    def make_core(worker: int) -> Any:
        # O_APPEND: each worker writes whole lines to the shared log
        stream = sys.stdout if cfg.log == "-" else open(cfg.log, "a", encoding="utf-8")  # noqa: SIM115
        return build_core(cfg, open_directory(cfg), log_stream=stream)

    def ready(bound: list[tuple[str, int]]) -> None:
        cfg.listen = bound
        text = describe(cfg, cfg.methods)
        print(f"{text}; {workers} workers", file=sys.stderr, flush=True)

    def around(worker: int, core: RadiusCore, front: Awaitable[Any]) -> Awaitable[Any]:
        # The approval page runs in worker 0; every worker's gate reads the shared store.
        if worker != 0 or core.approval is None:
            return front
        from eapkit.bridge.gate import Bridge
        from eapkit.bridge.run import serve_with_bridge

        assert isinstance(core.approval, Bridge)
        return serve_with_bridge(front, core.approval)

    code = run_workers(cfg.listen, workers, make_core, ready=ready, around=around)
    print("eapkit serve: stopped", file=sys.stderr)
    return code


def cmd_probe(args: argparse.Namespace) -> int:
    opts = ProbeOptions(
        server=parse_hostport(args.server),
        secret=args.secret.encode(),
        method=args.method,
        identity=args.identity,
        anonymous_identity=args.anonymous_identity,
        password=args.password,
        cert=Path(args.cert) if args.cert else None,
        key=Path(args.key) if args.key else None,
        ca=Path(args.ca) if args.ca else None,
        tls=args.tls,
        fragment_size=args.fragment_size,
        timeout=args.timeout,
        server_name=args.server_name,
        otp=args.otp,
        reauth=args.reauth,
    )
    if args.load:
        report = asyncio.run(
            load(opts, concurrency=args.load, count=args.count, duration=args.duration)
        )
        print("\n".join(report.lines()))
        return 0 if report.accepted == report.completed and report.completed else 1
    code, lines = run_probe(opts)
    print("\n".join(lines))
    return code


def _audit_line(event: dict[str, object]) -> None:
    print(json.dumps({"time": round(time.time(), 3), **event}), file=sys.stderr)


def _second_factors(args: argparse.Namespace) -> SecondFactors:
    cfg = (
        ServeConfig.from_toml(Path(args.config)) if getattr(args, "config", None) else ServeConfig()
    )
    if args.db:
        cfg.db = Path(args.db)
    return open_second_factors(cfg, open_directory(cfg), audit=_audit_line)


def _need_user(second: SecondFactors, name: str) -> None:
    if second.users.get(name) is None:
        raise ConfigError(f"no user {name}: add it first with 'eapkit user add {name}'")


def cmd_enroll_totp(args: argparse.Namespace) -> int:
    second = _second_factors(args)
    _need_user(second, args.user)
    secret = os.urandom(
        20 if args.algorithm == "sha1" else 32 if args.algorithm == "sha256" else 64
    )
    credential = OtpCredential(secret, "totp", args.algorithm, args.digits, args.period)
    now = time.time()
    second.totp.enroll(args.user, credential, now)
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
    for out in (args.png, args.svg):
        if out:
            qr.save(out, scale=6)
            print(f"QR code written to {out}", file=sys.stderr)
    return 0


def cmd_enroll_yubikey(args: argparse.Namespace) -> int:
    second = _second_factors(args)
    _need_user(second, args.user)
    if not args.aes_key:
        raise ConfigError("--aes-key HEX is needed for local validation")
    try:
        key = bytes.fromhex(args.aes_key)
        credential, token = YubikeyCredential.from_otp(args.otp, key)
    except (ValueError, DecodeError) as exc:
        raise ConfigError(f"the OTP does not decrypt under that AES key: {exc}") from None
    second.yubikey.enroll(args.user, credential, time.time(), seen=token)
    second.users.set_second_factor(args.user, "yubikey")
    print(f"YubiKey {credential.public_id} enrolled for {args.user}")
    return 0


def cmd_enroll_recovery(args: argparse.Namespace) -> int:
    second = _second_factors(args)
    _need_user(second, args.user)
    for code in second.recovery.issue(args.user, time.time(), args.count):
        print(code)
    return 0


def cmd_enroll_webauthn(args: argparse.Namespace) -> int:
    """A one-time link to the approval bridge's page that registers a security key."""
    from eapkit.bridge.config import BridgeConfig
    from eapkit.bridge.gate import Bridge

    cfg = ServeConfig.from_toml(Path(args.config)) if args.config else ServeConfig()
    if args.db:
        cfg.db = Path(args.db)
    bridge_cfg = cfg.bridge or BridgeConfig()
    if args.url:
        bridge_cfg.url = args.url
    second = open_second_factors(cfg, open_directory(cfg), audit=_audit_line)
    _need_user(second, args.user)
    bridge = Bridge(bridge_cfg, second.users, second.store, audit=_audit_line)
    print(bridge.enrollment_link(args.user, time.time(), args.ttl))
    if cfg.bridge is None:
        print("(eapkit serve needs a [bridge] table for this link to work)", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Helpdesk: is this code right for this user now?  Uses it up like a login."""
    second = _second_factors(args)
    verdict = second.check_code(args.user, args.code, time.time())
    print(f"{'ok' if verdict.ok else 'refused'}: {verdict.reason}")
    return 0 if verdict.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eapkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"eapkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list the EAP methods eapkit has").set_defaults(func=cmd_methods)
    demo = sub.add_parser("demo", help="run EAP conversations between the two roles in-process")
    demo.add_argument("--user", default="alice")
    demo.add_argument("--password", default="correct horse battery staple")
    demo.set_defaults(func=cmd_demo)

    srv = sub.add_parser("serve", help="run the reference RADIUS server")
    srv.add_argument(
        "--listen", action="append", metavar="HOST:PORT", help="default 127.0.0.1:1812"
    )
    srv.add_argument("--secret", help="shared secret of loopback NASes (default testing123)")
    srv.add_argument("--db", help="SQLite file with the users (default ./eapkit.db)")
    srv.add_argument("--cert", help="server certificate chain (PEM)")
    srv.add_argument("--key", help="server private key (PEM)")
    srv.add_argument("--ca", help="CAs that issue client certificates (PEM)")
    srv.add_argument("--config", help="TOML configuration file")
    srv.add_argument(
        "--methods", help=f"comma-separated, in order (default {','.join(DEFAULT_METHODS)})"
    )
    srv.add_argument("--log", help="decision log file ('-' for stdout)")
    srv.add_argument("--fragment-size", type=int)
    srv.add_argument("--tls-max", choices=["1.2", "1.3"])
    srv.add_argument("--demo-user", metavar="NAME:PASSWORD", help="add this user if missing")
    srv.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes on the same port (0: one per core); default 1",
    )
    srv.set_defaults(func=cmd_serve)

    prb = sub.add_parser("probe", help="authenticate against a RADIUS server as a NAS would")
    prb.add_argument("--server", default="127.0.0.1:1812", metavar="HOST:PORT")
    prb.add_argument("--secret", default="testing123")
    prb.add_argument("--method", required=True, choices=PEER_METHODS)
    prb.add_argument("--identity", required=True)
    prb.add_argument("--anonymous-identity")
    prb.add_argument("--password")
    prb.add_argument("--otp", help="one-time code for a server that asks in a second round")
    prb.add_argument("--cert")
    prb.add_argument("--key")
    prb.add_argument("--ca", help="CA to verify the server certificate")
    prb.add_argument("--server-name", help="name the server certificate must carry")
    prb.add_argument("--tls", choices=["1.2", "1.3"])
    prb.add_argument("--fragment-size", type=int)
    prb.add_argument("--timeout", type=float, default=3.0)
    prb.add_argument(
        "--reauth",
        type=int,
        default=0,
        metavar="N",
        help="N more authentications, each offering the last TLS session (resumption)",
    )
    prb.add_argument("--load", type=int, metavar="N", help="N conversations at once, repeatedly")
    prb.add_argument("--count", type=int, help="with --load: stop after this many")
    prb.add_argument("--duration", type=float, help="with --load: stop after this many seconds")
    prb.set_defaults(func=cmd_probe)

    usr = sub.add_parser("user", help="manage the server's users")
    usub = usr.add_subparsers(dest="user_command", required=True)
    add = usub.add_parser("add", help="add or replace a user")
    add.add_argument("name")
    add.add_argument("--password", help="prompted for when left out")
    add.add_argument("--db", help="the server's database (default: eapkit.db)")
    add.add_argument("--config", help="eapkit serve's TOML file (its db, directory, store)")
    add.add_argument("--no-nt-hash", action="store_true", help="no MS-CHAPv2 for this user")
    add.add_argument("--second-factor", choices=SECOND_FACTORS, default="none")
    add.add_argument("--session-timeout", type=int)
    add.add_argument("--framed-ip")
    add.add_argument("--framed-pool")
    add.set_defaults(func=cmd_user_add)
    lst = usub.add_parser("list", help="list users")
    lst.add_argument("--db", help="the server's database (default: eapkit.db)")
    lst.add_argument("--config", help="eapkit serve's TOML file (its db, directory, store)")
    lst.set_defaults(func=cmd_user_list)
    dele = usub.add_parser("del", help="delete a user")
    dele.add_argument("name")
    dele.add_argument("--db", help="the server's database (default: eapkit.db)")
    dele.add_argument("--config", help="eapkit serve's TOML file (its db, directory, store)")
    dele.set_defaults(func=cmd_user_del)

    enr = sub.add_parser("enroll", help="enroll a second factor for a user")
    esub = enr.add_subparsers(dest="enroll_command", required=True)
    et = esub.add_parser("totp", help="a TOTP authenticator app: prints the otpauth:// URI and QR")
    et.add_argument("user")
    et.add_argument("--issuer", default="eapkit")
    et.add_argument("--algorithm", choices=["sha1", "sha256", "sha512"], default="sha1")
    et.add_argument("--digits", type=int, choices=[6, 8], default=6)
    et.add_argument("--period", type=int, default=30)
    et.add_argument("--png", help="also write the QR code as PNG")
    et.add_argument("--svg", help="also write the QR code as SVG")
    et.add_argument("--no-terminal", action="store_true", help="no QR code on the terminal")
    et.set_defaults(func=cmd_enroll_totp)
    ey = esub.add_parser("yubikey", help="a YubiKey slot programmed for Yubico OTP")
    ey.add_argument("user")
    ey.add_argument("--otp", required=True, help="one OTP from the key")
    ey.add_argument("--aes-key", help="the slot's AES key (hex), for local validation")
    ey.set_defaults(func=cmd_enroll_yubikey)
    er = esub.add_parser("recovery", help="single-use recovery codes (replaces old ones)")
    er.add_argument("user")
    er.add_argument("--count", type=int, default=10)
    er.set_defaults(func=cmd_enroll_recovery)
    ew = esub.add_parser("webauthn", help="a security key or passkey: prints a one-time link")
    ew.add_argument("user")
    ew.add_argument("--ttl", type=float, help="seconds the link stays valid (default 1 day)")
    ew.add_argument("--url", help="the approval page's address (default from [bridge])")
    ew.set_defaults(func=cmd_enroll_webauthn)
    for p in (et, ey, er, ew):
        p.add_argument("--db", default="eapkit.db")
        p.add_argument("--config")
    ver = sub.add_parser("verify", help="helpdesk: check a user's one-time code now")
    ver.add_argument("user")
    ver.add_argument("code")
    ver.add_argument("--db", default="eapkit.db")
    ver.add_argument("--config")
    ver.set_defaults(func=cmd_verify)
    _add_plugins(sub)
    return parser


def _add_plugins(sub: Any) -> None:
    """Sub-commands from the ``eapkit.commands`` entry points (``eapkit token`` from the
    ``tokens`` package): eapkit finds them by name, it does not import them itself."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="eapkit.commands"):
        try:
            register = ep.load()
        except ImportError as exc:  # an optional dependency (pyscard) is missing
            broken = sub.add_parser(ep.name, help=f"unavailable: {exc}")
            broken.set_defaults(func=_unavailable(ep.name, str(exc)))
            continue
        register(sub)


def _unavailable(name: str, why: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"eapkit {name}: unavailable here: {why}", file=sys.stderr)
        return 2

    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ConfigError, OSError) as exc:
        print(f"eapkit: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
