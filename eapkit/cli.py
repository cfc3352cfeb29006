"""The ``eapkit`` command.

- ``eapkit serve``: the reference RADIUS server (see :mod:`eapkit.serve`);
- ``eapkit probe``: a RADIUS client running eapkit's peer methods (:mod:`eapkit.probe`);
- ``eapkit user add|set|list|del``, ``enroll``, ``verify``, ``store seal``: the
  administrator's commands (:mod:`eapkit.admin`);
- ``eapkit methods``: the EAP methods this installation has;
- ``eapkit demo``: an EAP-GTC conversation between the two roles in one process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import os
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from eapkit import __version__
from eapkit.admin import PASSWORD_ENV, add_admin_commands, make_dirs, read_secret, sqlite_path
from eapkit.audit_command import add_audit_command
from eapkit.catalog import CATALOG, DEFAULT_METHODS, PEER_METHODS
from eapkit.credentials import ResponseCheck, Verdict
from eapkit.directory import Directory
from eapkit.errors import ConfigError, EapkitError
from eapkit.helpdesk import add_helpdesk_commands
from eapkit.loadgen import LoadSpec, run_load
from eapkit.loopback import converse
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.private_files import loose
from eapkit.probe import ProbeOptions, run_probe
from eapkit.profiles.command import add_profile_command
from eapkit.radius.address import parse_hostport
from eapkit.radius.clients import Client
from eapkit.radius.core import RadiusCore
from eapkit.radius.front import event_loop_factory, run_event_loop
from eapkit.radsec_config import serve_listeners
from eapkit.serve import (
    CRL_SOURCES,
    DEFAULT_SECRET,
    DEMO_REALM,
    ServeConfig,
    build_core,
    describe,
    ensure_demo_pki,
    open_directory,
    reload_crls,
)
from eapkit.session import AuthenticatorSession, PeerSession

SECRET_ENV = "EAPKIT_SECRET"  # noqa: S105 - the variable's name
DEMO_USER_ENV = "EAPKIT_DEMO_USER"


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


def secret_files(cfg: ServeConfig) -> list[Path]:
    """The files ``eapkit serve`` reads that hold secrets (their -wal/-shm included)."""
    files: list[Path] = []
    store = sqlite_path(cfg.store)
    for db in [cfg.db] if store is None else [cfg.db, store]:
        files += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    files.append(cfg.store_keys_file or cfg.db.with_name(cfg.db.stem + "-store.key"))
    if cfg.tls.key is not None:
        files.append(cfg.tls.key)
    if cfg.tls.cert is not None:  # the demo PKI's CA and client keys beside it
        files += sorted(cfg.tls.cert.parent.glob("*.key"))
    return list(dict.fromkeys(files))


def cmd_serve(args: argparse.Namespace) -> int:
    try:  # $EAPKIT_EVENT_LOOP: refuse a bad one before anything listens
        event_loop_factory()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    cfg = ServeConfig.from_toml(Path(args.config)) if args.config else ServeConfig()
    if args.listen:
        cfg.listen = [parse_hostport(x) for x in args.listen]
    if args.accounting_port:
        cfg.accounting_ports = frozenset(args.accounting_port)
    if args.db:
        cfg.db = Path(args.db)
    if args.log:
        cfg.log = args.log
    if args.methods:
        cfg.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    secret = args.secret or read_secret(args.secret_file, SECRET_ENV, what="shared secret")
    if secret:
        cfg.clients = [
            Client.of("127.0.0.0/8", secret, "localhost"),
            Client.of("::1/128", secret, "localhost6"),
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
    if args.tls_profile:
        cfg.tls.profile = args.tls_profile
    _start_checks(cfg)
    make_dirs(cfg)
    if cfg.tls.cert is None and cfg.tls.key is None:
        pki_dir = cfg.db.parent / "eapkit-pki"
        files = ensure_demo_pki(pki_dir)
        cfg.tls.cert, cfg.tls.key = files["cert"], files["key"]
        cfg.tls.ca = cfg.tls.ca or files["ca"]
        # the demo client certificate's e-mail alice@eapkit.test names the user alice
        cfg.tls.realms = cfg.tls.realms or (DEMO_REALM,)
        print(
            f"eapkit serve: demo PKI in {pki_dir}: CA {files['ca']}, server {files['cert']}, "
            f"client alice {files['client_cert']} / {files['client_key']}",
            file=sys.stderr,
        )
    users = open_directory(cfg)
    demo_user = args.demo_user or read_secret(args.demo_user_file, DEMO_USER_ENV, what="demo user")
    if demo_user:
        name, _, password = demo_user.partition(":")
        if not name or not password:
            raise ConfigError("the demo user is NAME:PASSWORD")
        if users.get(name) is None:
            users.add(name, password)
            print(f"eapkit serve: demo user {name} added to {cfg.db}", file=sys.stderr)
    config_file = [Path(args.config)] if args.config else []  # clients' secrets
    for warning in loose([*config_file, *secret_files(cfg)]):
        print(f"eapkit serve: warning: {warning}", file=sys.stderr)
    if args.workers != 1:
        return _serve_workers(cfg, users, args.workers, args.config)
    stream = sys.stdout if cfg.log == "-" else open(cfg.log, "a", encoding="utf-8")  # noqa: SIM115
    try:
        core = build_core(cfg, users, log_stream=stream)
        assert core.eap is not None
        names = [str(f.name or f.method) for f in core.eap.methods]

        def ready(bound: list[tuple[str, int]]) -> None:
            cfg.listen = bound
            print(describe(cfg, names), file=sys.stderr, flush=True)

        radius = serve_listeners(
            core,
            cfg.listen,
            cfg.radsec,
            ready=ready,
            crl_sources=CRL_SOURCES,
            config_file=Path(args.config) if args.config else None,
        )
        if core.approval is not None:
            from eapkit.bridge.gate import Bridge
            from eapkit.bridge.run import serve_with_bridge

            assert isinstance(core.approval, Bridge)
            radius = serve_with_bridge(radius, core.approval)
        signal.signal(signal.SIGHUP, lambda _sig, _frame: reload_crls())
        run_event_loop(radius)
    finally:
        if stream is not sys.stdout:
            stream.close()
    print("eapkit serve: stopped", file=sys.stderr)
    return 0


def _serve_workers(
    cfg: ServeConfig, users: Directory, workers: int, config: str | None = None
) -> int:
    """``--workers N``: N processes on the same port (:mod:`eapkit.radius.workers`);
    each builds its own core (database connections, decision log) after the fork.
    ``[radsec]``: worker 0 runs the RadSec listener as well (docs/radsec.md)."""
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
        # RadSec and the approval page run in worker 0; every gate reads the shared store.
        if worker == 0 and cfg.radsec is not None:
            from eapkit.radsec_config import radsec_beside

            config_file = Path(config) if config else None
            front = radsec_beside(core, front, cfg.radsec, config_file=config_file)
        if worker != 0 or core.approval is None:
            return front
        from eapkit.bridge.gate import Bridge
        from eapkit.bridge.run import serve_with_bridge

        assert isinstance(core.approval, Bridge)
        return serve_with_bridge(front, core.approval)

    code = run_workers(cfg.listen, workers, make_core, ready=ready, around=around)
    print("eapkit serve: stopped", file=sys.stderr)
    return code


def _start_checks(cfg: ServeConfig) -> None:
    """``eapkit check``'s findings at start: warnings printed, errors refuse."""
    from eapkit.check import check_config, errors_of

    findings = check_config(cfg, dt.datetime.now(dt.UTC))
    for finding in findings:
        if finding.level == "warning":
            print(f"eapkit serve: {finding}", file=sys.stderr)
    errors = errors_of(findings)
    if errors:
        raise ConfigError("refusing to start:\n" + "\n".join(str(f) for f in errors))


def cmd_check(args: argparse.Namespace) -> int:
    from eapkit.check import check_data, check_file

    now = dt.datetime.now(dt.UTC)
    if args.config and not Path(args.config).is_file():
        raise ConfigError(f"cannot read {args.config}: no such file")
    findings = check_file(Path(args.config), now) if args.config else check_data({}, Path(), now)
    for finding in findings:
        print(finding)
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    print(f"{args.config or '(defaults)'}: {errors} errors, {warnings} warnings")
    return 1 if errors else 0


def cmd_probe(args: argparse.Namespace) -> int:
    opts = ProbeOptions(
        server=parse_hostport(args.server),
        secret=(
            args.secret
            or read_secret(args.secret_file, SECRET_ENV, what="shared secret")
            # RFC 6614 §2.3, RFC 7360 §2.3: the fixed secrets
            or ("radius/dtls" if args.dtls else "radsec" if args.radsec else DEFAULT_SECRET)
        ).encode(),
        method=args.method,
        identity=args.identity,
        anonymous_identity=args.anonymous_identity,
        password=args.password or read_secret(args.password_file, PASSWORD_ENV, what="password"),
        cert=Path(args.cert) if args.cert else None,
        key=Path(args.key) if args.key else None,
        ca=Path(args.ca) if args.ca else None,
        tls=args.tls,
        tls_profile=args.tls_profile or "default",
        peap_version=args.peap_version,
        peap_label=args.peap_label,
        machine_identity=args.machine_identity,
        machine_password=args.machine_password,
        machine_cert=Path(args.machine_cert) if args.machine_cert else None,
        machine_key=Path(args.machine_key) if args.machine_key else None,
        teap_compat=args.teap_compat,
        fragment_size=args.fragment_size,
        timeout=args.timeout,
        server_name=args.server_name,
        otp=args.otp,
        reauth=args.reauth,
        radsec=args.radsec,
        radsec_cert=Path(args.radsec_cert) if args.radsec_cert else None,
        radsec_key=Path(args.radsec_key) if args.radsec_key else None,
        radsec_ca=Path(args.radsec_ca) if args.radsec_ca else None,
        radsec_server_name=args.radsec_server_name,
        dtls=args.dtls,
        alpn=args.alpn,
    )
    if args.load or args.rate is not None:
        spec = LoadSpec(
            concurrency=args.load or 16,
            rate=args.rate,
            count=args.count,
            duration=args.duration,
            processes=args.processes,
        )
        report = run_load(opts, spec)
        print("\n".join(report.lines()))
        return 0 if report.accepted == report.completed and report.completed else 1
    code, lines = run_probe(opts)
    print("\n".join(lines))
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eapkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"eapkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="a traceback on unexpected errors")
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
    srv.add_argument(
        "--accounting-port",
        action="append",
        type=int,
        metavar="PORT",
        help="a listen port that is the accounting port (RFC 5997 §3; default 1813, 1646)",
    )
    srv.add_argument(
        "--secret", help="shared secret of loopback NASes (default testing123; visible in ps)"
    )
    srv.add_argument(
        "--secret-file", help=f"the shared secret: this file's first line (or ${SECRET_ENV})"
    )
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
    srv.add_argument(
        "--tls-profile", choices=["default", "legacy"], help="legacy: also CBC/static-RSA suites"
    )
    srv.add_argument(
        "--demo-user", metavar="NAME:PASSWORD", help="add this user if missing (visible in ps)"
    )
    srv.add_argument(
        "--demo-user-file",
        metavar="FILE",
        help=f"NAME:PASSWORD on this file's first line (or ${DEMO_USER_ENV})",
    )
    srv.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes on the same port (0: one per core); default 1",
    )
    srv.set_defaults(func=cmd_serve)

    chk = sub.add_parser("check", help="validate eapkit serve's configuration")
    chk.add_argument("--config", help="eapkit serve's TOML file (default: the built-in defaults)")
    chk.set_defaults(func=cmd_check)

    prb = sub.add_parser("probe", help="authenticate against a RADIUS server as a NAS would")
    prb.add_argument("--server", default="127.0.0.1:1812", metavar="HOST:PORT")
    prb.add_argument("--secret", help="the shared secret (default testing123; visible in ps)")
    prb.add_argument(
        "--secret-file", help=f"the shared secret: this file's first line (or ${SECRET_ENV})"
    )
    prb.add_argument(
        "--method",
        required=True,
        choices=PEER_METHODS,
        help=(
            "teap: the user's inner method follows the credentials (--password: EAP-MSCHAPv2,"
            " --cert/--key: EAP-TLS, neither: the machine alone), the machine's too"
            " (--machine-password or --machine-cert/--machine-key); teap-mschapv2, teap-tls"
            " and teap-password (Basic-Password-Auth) name the user's"
        ),
    )
    prb.add_argument("--identity", required=True)
    prb.add_argument("--anonymous-identity")
    prb.add_argument("--password", help="visible in ps: prefer --password-file")
    prb.add_argument(
        "--password-file", help=f"the password: this file's first line (or ${PASSWORD_ENV})"
    )
    prb.add_argument("--otp", help="one-time code for a server that asks in a second round")
    prb.add_argument("--cert")
    prb.add_argument("--key")
    prb.add_argument("--ca", help="CA to verify the server certificate")
    prb.add_argument("--server-name", help="name the server certificate must carry")
    prb.add_argument("--tls", choices=["1.2", "1.3"])
    prb.add_argument(
        "--tls-profile", choices=["default", "legacy"], help="legacy: also CBC/static-RSA suites"
    )
    prb.add_argument("--peap-version", type=int, choices=[0, 1], default=0)
    prb.add_argument(
        "--peap-label",
        type=int,
        choices=[0, 1],
        default=0,
        help="1: PEAPv1 'client PEAP encryption' keys",
    )
    prb.add_argument("--machine-identity", help="TEAP: the machine's identity (host/...)")
    prb.add_argument("--machine-password", help="TEAP: the machine's password (MS-CHAPv2)")
    prb.add_argument("--machine-cert", help="TEAP: the machine's certificate (inner EAP-TLS)")
    prb.add_argument("--machine-key", help="TEAP: the machine certificate's key")
    prb.add_argument(
        "--teap-compat",
        choices=["rfc9930", "rfc7170"],
        default="rfc9930",
        help="rfc7170: hostapd/wpa_supplicant 2.10's TEAP key derivations",
    )
    prb.add_argument("--fragment-size", type=int)
    prb.add_argument("--timeout", type=float, default=3.0)
    prb.add_argument(
        "--reauth",
        type=int,
        default=0,
        metavar="N",
        help="N more authentications, each offering the last TLS session (resumption)",
    )
    prb.add_argument(
        "--radsec", action="store_true", help="RADIUS over TLS (RFC 6614; --server port 2083)"
    )
    prb.add_argument("--radsec-cert", help="with --radsec: the client certificate (PEM)")
    prb.add_argument("--radsec-key", help="with --radsec: its private key (PEM)")
    prb.add_argument("--radsec-ca", help="with --radsec: CAs of the server certificate")
    prb.add_argument("--radsec-server-name", help="with --radsec: name the server cert carries")
    prb.add_argument(
        "--dtls", action="store_true", help="with --radsec: RADIUS over DTLS (RFC 7360, UDP)"
    )
    prb.add_argument(
        "--alpn",
        choices=["radius/1.0", "radius/1.1"],
        help="with --radsec: offer this ALPN (radius/1.1: RFC 9765, no fallback)",
    )
    prb.add_argument("--load", type=int, metavar="N", help="N conversations at once, repeatedly")
    prb.add_argument(
        "--rate",
        type=float,
        metavar="R",
        help="open loop: start a conversation every 1/R s, whatever the server does",
    )
    prb.add_argument(
        "--processes", type=int, default=1, metavar="P", help="with --load/--rate: P processes"
    )
    prb.add_argument("--count", type=int, help="with --load: stop after this many")
    prb.add_argument("--duration", type=float, help="with --load: stop after this many seconds")
    prb.set_defaults(func=cmd_probe)

    store_commands = add_admin_commands(sub)
    add_helpdesk_commands(sub, store_commands)  # bypass, reset, approve, store rekey
    add_audit_command(sub)
    add_profile_command(sub)
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
    """Errors end in one line on stderr (``eapkit: <message>``) and a non-zero exit;
    a traceback only with ``--debug``."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except EOFError:  # a prompt (password, PIN) with nothing to read
        print(
            "eapkit: no input to read (give the secret in a file or the environment)",
            file=sys.stderr,
        )
        return 2
    except (EapkitError, OSError, ValueError, sqlite3.Error) as exc:
        if args.debug:
            raise
        print(f"eapkit: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"eapkit: unexpected {type(exc).__name__}: {_one_line(exc)} (run with --debug)",
            file=sys.stderr,
        )
        return 3
    return code


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    return text


if __name__ == "__main__":
    sys.exit(main())
