"""``eapkit token ...``: drive a token on the bench (real hardware or :mod:`tokens.sim`).

:func:`register` adds the ``token`` command tree to an argparse sub-parser set (eapkit's
CLI imports this module lazily: eapkit never imports ``tokens`` at module level).

    token list                              readers, and which applets each card answers to
    token oath list|code|add                accounts, codes, a new account (YKOATH)
    token piv certs|sign                    slot certificates; sign and check a signature
    token fido2 register|assert             WebAuthn ceremonies checked by eapkit.verify.webauthn
    token otp response                      YubiKey HMAC-SHA1 challenge-response, serial
    token bench KIND -n N                   N round trips: progress, latency percentiles,
                                            failures by reason
"""

from __future__ import annotations

import argparse
import base64
import getpass
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tokens.errors import StatusError, TokenError
from tokens.pcsc import ApduTransport, PcscLink, connect, list_readers

__all__ = ["percentile", "register", "run_bench"]

_APPLETS = {
    "OATH": bytes.fromhex("a0000005272101"),
    "YubiKey OTP": bytes.fromhex("a0000005272001"),
    "PIV": bytes.fromhex("a000000308000010000100"),
    "FIDO": bytes.fromhex("a0000006472f0001"),
    "OpenPGP": bytes.fromhex("d27600012401"),
}


@contextmanager
def _transport(args: argparse.Namespace) -> Iterator[ApduTransport]:
    link: PcscLink = connect(args.reader)
    try:
        yield ApduTransport(link)
    finally:
        link.close()


def _secret_arg(value: str | None, env: str) -> str | None:
    """A PIN/password from the option or the environment (callers may prompt)."""
    if value is not None:
        return value
    if os.environ.get(env):
        return os.environ[env]
    return None


# -- list -----------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    readers = list_readers()
    if not readers:
        print("no readers")
    for reader in readers:
        try:
            link = connect(reader)
        except TokenError as err:
            print(f"{reader}: {err}")
            continue
        try:
            transport = ApduTransport(link)
            answers = []
            for name, aid in _APPLETS.items():
                try:
                    transport.select(aid)
                    answers.append(name)
                except StatusError:
                    pass
            print(f"{reader}: ATR {link.atr.hex()}")
            print(f"  applets: {', '.join(answers) or 'none of ' + ', '.join(_APPLETS)}")
            print(f"  extended length: {'yes' if transport.extended else 'no'}")
            if "YubiKey OTP" in answers:
                from tokens.yubikey import YubiOtpSession

                otp = YubiOtpSession(transport)
                print(f"  YubiKey firmware {'.'.join(map(str, otp.status.version))}", end="")
                try:
                    print(f", serial {otp.serial()}")
                except TokenError:
                    print(", serial hidden")
        finally:
            link.close()
    return 0


# -- oath -----------------------------------------------------------------------------------


def _oath(args: argparse.Namespace, transport: ApduTransport) -> Any:
    from tokens.oath import OathSession

    session = OathSession(transport)
    if session.locked:
        password = _secret_arg(args.password, "EAPKIT_OATH_PASSWORD")
        if password is None:
            password = getpass.getpass("OATH password: ")
        session.validate(password)
    return session


def cmd_oath_list(args: argparse.Namespace) -> int:
    with _transport(args) as transport:
        for cred in _oath(args, transport).list_credentials():
            extra = f" period={cred.period}" if cred.oath_type == "totp" else ""
            print(f"{cred.display}\t{cred.oath_type} {cred.algorithm}{extra}")
    return 0


def cmd_oath_code(args: argparse.Namespace) -> int:
    with _transport(args) as transport:
        session = _oath(args, transport)
        if args.name:
            cred = session.find(args.name)
            print(f"{cred.display}\t{session.calculate(cred).value}")
            return 0
        for cred, code in session.calculate_all().items():
            shown = code.value if code else ("[touch]" if cred.touch else "[HOTP]")
            print(f"{cred.display}\t{shown}")
    return 0


def cmd_oath_add(args: argparse.Namespace) -> int:
    from eapkit.verify.otp import b32_secret

    with _transport(args) as transport:
        _oath(args, transport).put(
            args.name,
            b32_secret(args.secret),
            issuer=args.issuer,
            oath_type="hotp" if args.hotp else "totp",
            algorithm=args.algorithm,
            digits=args.digits,
            period=args.period,
            counter=args.counter,
            touch=args.touch,
        )
    print(f"added {args.issuer + ':' if args.issuer else ''}{args.name}")
    return 0


# -- piv ------------------------------------------------------------------------------------


def cmd_piv_certs(args: argparse.Namespace) -> int:
    from tokens.piv import PivSession

    with _transport(args) as transport:
        session = PivSession(transport)
        for info in session.certificates():
            cert = info.certificate
            print(f"{info.slot:02X} ({info.purpose}): {cert.subject.rfc4514_string()}")
            print(f"   key {type(cert.public_key()).__name__}, until {cert.not_valid_after_utc}")
        retries = session.pin_retries()
        print(f"PIN tries left: {retries if retries is not None else 'verified'}")
    return 0


def cmd_piv_sign(args: argparse.Namespace) -> int:
    from tokens.piv import PivSession, verify_signature

    message = Path(args.input).read_bytes() if args.input else args.message.encode()
    pin = _secret_arg(args.pin, "EAPKIT_PIV_PIN") or getpass.getpass("PIV PIN: ")
    slot = int(args.slot, 16)
    with _transport(args) as transport:
        session = PivSession(transport)
        cert = session.certificate(slot)
        if cert is None:
            print(f"slot {slot:02X} has no certificate", file=sys.stderr)
            return 1
        signature = session.sign(slot, message, pin=pin)
    ok = verify_signature(cert, message, signature)
    if args.output:
        Path(args.output).write_bytes(signature)
    print(f"signature {len(signature)} bytes: {'verifies' if ok else 'DOES NOT VERIFY'}")
    return 0 if ok else 1


# -- fido2 ----------------------------------------------------------------------------------


def _relying_party(args: argparse.Namespace) -> Any:
    from eapkit.store.sqlite import SqliteStore
    from tokens.fido2 import BenchRelyingParty

    return BenchRelyingParty(args.rp_id, user_verification=_uv(args), store=SqliteStore(args.db))


def _uv(args: argparse.Namespace) -> str:
    # python-fido2's client refuses "preferred" on a key whose PIN is not set, so without
    # a PIN ask for user presence only
    if args.uv:
        return str(args.uv)
    return "preferred" if _secret_arg(args.pin, "EAPKIT_FIDO_PIN") else "discouraged"


def _fido_token(args: argparse.Namespace, origin: str) -> Any:
    from tokens.fido2 import Fido2Token, open_device

    pin = _secret_arg(args.pin, "EAPKIT_FIDO_PIN")
    return Fido2Token(open_device(args.reader), origin, pin=pin)


def cmd_fido2_register(args: argparse.Namespace) -> int:
    rp = _relying_party(args)
    print("touch your key if it blinks", file=sys.stderr)
    verdict = rp.register(_fido_token(args, rp.origin), args.user, resident_key=args.resident)
    detail = f" ({verdict.detail})" if verdict.detail else ""
    print(f"registration {'ok' if verdict.ok else 'refused'}: {verdict.reason}{detail}")
    if verdict.credential is not None:
        cred = verdict.credential
        print(f"  credential {base64.urlsafe_b64encode(cred.credential_id).decode().rstrip('=')}")
        print(
            f"  attestation {cred.attestation_format}/{cred.attestation_type},"
            f" UV {cred.user_verified}"
        )
    return 0 if verdict.ok else 1


def cmd_fido2_assert(args: argparse.Namespace) -> int:
    rp = _relying_party(args)
    print("touch your key if it blinks", file=sys.stderr)
    verdict = rp.authenticate(_fido_token(args, rp.origin), args.user)
    detail = f" ({verdict.detail})" if verdict.detail else ""
    print(
        f"assertion {'ok' if verdict.ok else 'refused'}: {verdict.reason}{detail}"
        f" user={verdict.user} UV={verdict.user_verified} counter={verdict.sign_count}"
    )
    return 0 if verdict.ok else 1


# -- otp ------------------------------------------------------------------------------------


def cmd_otp_response(args: argparse.Namespace) -> int:
    from tokens.yubikey import YubiOtpSession

    with _transport(args) as transport:
        session = YubiOtpSession(transport)
        print(f"serial {session.serial()}")
        if args.challenge is not None:
            print(session.challenge_response(args.slot, bytes.fromhex(args.challenge)).hex())
    return 0


# -- bench ----------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, StatusError):
        return f"SW {exc.sw:04X} {exc.meaning}"
    return type(exc).__name__


def run_bench(
    operation: Callable[[], str | None],
    count: int,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run ``operation`` ``count`` times; it returns None when fine, else a failure reason.

    Exceptions count as failures named by their type (or status word).  Returns the
    latencies of successful rounds in ms and failures by reason.
    """
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        try:
            reason = operation()
        except (TokenError, OSError, ValueError) as exc:
            reason = _reason(exc)
        elapsed = (time.perf_counter() - t0) * 1000
        if reason is None:
            latencies.append(elapsed)
        else:
            failures[reason] += 1
        if progress is not None:
            progress(i + 1, count)
    return {
        "count": count,
        "ok": len(latencies),
        "seconds": time.perf_counter() - started,
        "latencies_ms": sorted(latencies),
        "failures": dict(failures),
    }


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on a terminal's stderr; plain lines (every tenth) elsewhere,
    so a log or a pipe gets no carriage returns."""
    if not enabled:
        yield None
        return
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True)) as bar:
            task = bar.add_task("bench", total=total)
            yield lambda done, _total: bar.update(task, completed=done)
        return
    step = max(1, total // 10)

    def plain(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            print(f"{done}/{total}", file=sys.stderr, flush=True)

    yield plain


def _print_result(kind: str, result: dict[str, Any]) -> None:
    """The bench's figures: a rich table on a terminal, plain lines otherwise."""
    lat = result["latencies_ms"]
    rows = [("ok", f"{result['ok']}/{result['count']} in {result['seconds']:.2f} s")]
    if lat:
        rows += [(f"p{q} ms", f"{percentile(lat, q):.2f}") for q in (50, 90, 99)]
        rows += [("max ms", f"{lat[-1]:.2f}"), ("mean ms", f"{statistics.fmean(lat):.2f}")]
    failures = sorted(result["failures"].items(), key=lambda kv: -kv[1])
    rows += [(f"failed {n}x", reason) for reason, n in failures]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"eapkit token bench {kind}")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    print(f"{kind}: {result['ok']}/{result['count']} ok in {result['seconds']:.2f} s")
    if lat:
        print(
            "latency ms: "
            + "  ".join(f"p{q}={percentile(lat, q):.2f}" for q in (50, 90, 99))
            + f"  max={lat[-1]:.2f}  mean={statistics.fmean(lat):.2f}"
        )
    for reason, n in failures:
        print(f"failed {n}x: {reason}")


def _bench_operation(
    args: argparse.Namespace, transport: ApduTransport
) -> Callable[[], str | None]:
    """One round trip of the chosen kind, checked against eapkit where it can be."""
    if args.kind == "oath":
        from eapkit.verify.otp import b32_secret, totp

        session = _oath(args, transport)
        cred = (
            session.find(args.account)
            if args.account
            else next((c for c in session.list_credentials() if c.oath_type == "totp"), None)
        )
        if cred is None:
            raise TokenError("the card has no TOTP account: add one with 'eapkit token oath add'")
        secret = b32_secret(args.secret) if args.secret else None

        def oath_round() -> str | None:
            now = time.time()
            code = session.calculate(cred, now)
            if secret is not None and code.value != totp(
                secret, now, len(code.value), cred.algorithm, cred.period
            ):
                return "code differs from eapkit.verify.otp.totp"
            return None

        return oath_round
    if args.kind == "piv":
        from tokens.piv import PivSession, verify_signature

        piv = PivSession(transport)
        slot = int(args.slot, 16)
        cert = piv.certificate(slot)
        if cert is None:
            raise TokenError(f"slot {slot:02X} has no certificate")
        pin = _secret_arg(args.pin, "EAPKIT_PIV_PIN") or getpass.getpass("PIV PIN: ")
        piv.verify_pin(pin)
        counter = iter(range(1 << 62))

        def piv_round() -> str | None:
            message = b"eapkit bench %d" % next(counter)
            signature = piv.sign(slot, message, pin=pin if slot == 0x9C else None)
            return None if verify_signature(cert, message, signature) else "bad signature"

        return piv_round
    if args.kind == "otp":
        import hmac as hmac_mod

        from tokens.yubikey import YubiOtpSession

        otp = YubiOtpSession(transport)
        key = bytes.fromhex(args.secret) if args.secret else None

        def otp_round() -> str | None:
            challenge = os.urandom(32)
            response = otp.challenge_response(args.otp_slot, challenge)
            if key is not None and not hmac_mod.compare_digest(
                response, hmac_mod.digest(key, challenge, "sha1")
            ):
                return "HMAC differs from the expected secret"
            return None

        return otp_round
    raise ValueError(f"unknown bench kind {args.kind}")


def _fido_bench(args: argparse.Namespace) -> Callable[[], str | None]:
    from tokens.fido2 import BenchRelyingParty

    rp = BenchRelyingParty(args.rp_id, user_verification=_uv(args))
    token = _fido_token(args, rp.origin)
    registration = rp.register(token, "bench-user")
    if not registration.ok:
        raise TokenError(f"registration refused: {registration.reason} {registration.detail}")

    def fido_round() -> str | None:
        verdict = rp.authenticate(token, "bench-user")
        return None if verdict.ok else verdict.reason

    return fido_round


def cmd_bench(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise TokenError("-n must be at least 1")
    with _progress(args.count, not args.quiet) as progress:
        if args.kind == "fido2":
            result = run_bench(_fido_bench(args), args.count, progress=progress)
        else:
            with _transport(args) as transport:
                operation = _bench_operation(args, transport)
                result = run_bench(operation, args.count, progress=progress)
    _print_result(args.kind, result)
    return 0 if not result["failures"] else 1


# -- the parser -----------------------------------------------------------------------------


def _wrap(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Token errors end the command with their message and exit status 2, no traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except TokenError as err:
            print(f"eapkit token: {err}", file=sys.stderr)
            return 2

    return run


def register(subparsers: Any) -> None:
    """Add ``token`` and its sub-commands to an ``add_subparsers()`` result."""
    token = subparsers.add_parser("token", help="drive hardware tokens over PC/SC (bench)")
    tsub = token.add_subparsers(dest="token_command", required=True)

    def cmd(parent: Any, name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = parent.add_parser(name, help=help)
        p.add_argument("--reader", help="reader name (substring); default: the first reader")
        p.set_defaults(func=_wrap(func))
        return p

    cmd(tsub, "list", cmd_list, "readers and which applets each card answers to")

    oath = tsub.add_parser("oath", help="YubiKey OATH accounts").add_subparsers(
        dest="oath_command", required=True
    )
    for name, func, help_text in (
        ("list", cmd_oath_list, "list accounts"),
        ("code", cmd_oath_code, "show codes"),
        ("add", cmd_oath_add, "add an account"),
    ):
        p = cmd(oath, name, func, help_text)
        p.add_argument("--password", help="OATH password (or EAPKIT_OATH_PASSWORD)")
        if name == "code":
            p.add_argument("name", nargs="?", help="one account (substring)")
        if name == "add":
            p.add_argument("name")
            p.add_argument("secret", help="base32 secret")
            p.add_argument("--issuer")
            p.add_argument("--hotp", action="store_true")
            p.add_argument("--algorithm", default="sha1", choices=["sha1", "sha256", "sha512"])
            p.add_argument("--digits", type=int, default=6, choices=[6, 7, 8])
            p.add_argument("--period", type=int, default=30)
            p.add_argument("--counter", type=int, default=0)
            p.add_argument("--touch", action="store_true")

    piv = tsub.add_parser("piv", help="PIV certificates and signatures").add_subparsers(
        dest="piv_command", required=True
    )
    cmd(piv, "certs", cmd_piv_certs, "certificates of slots 9A/9C/9D/9E")
    sign = cmd(piv, "sign", cmd_piv_sign, "sign and verify against the slot certificate")
    sign.add_argument("--slot", default="9a", choices=["9a", "9c", "9d", "9e"])
    sign.add_argument("--pin", help="PIN (or EAPKIT_PIV_PIN, or a prompt)")
    sign.add_argument("--message", default="eapkit token piv sign")
    sign.add_argument("--input", help="file to sign instead of --message")
    sign.add_argument("--output", help="write the signature here")

    fido = tsub.add_parser("fido2", help="WebAuthn ceremonies").add_subparsers(
        dest="fido2_command", required=True
    )
    for name, func, help_text in (
        ("register", cmd_fido2_register, "make a credential and verify it"),
        ("assert", cmd_fido2_assert, "get an assertion and verify it"),
    ):
        p = cmd(fido, name, func, help_text)
        p.add_argument("--pin", help="FIDO2 PIN (or EAPKIT_FIDO_PIN)")
        p.add_argument("--rp-id", default="bench.eapkit.test")
        p.add_argument("--uv", choices=["required", "preferred", "discouraged"])
        p.add_argument("--db", default="eapkit-token-bench.sqlite", help="credential store")
        p.add_argument("--user", required=name == "register")
        if name == "register":
            p.add_argument("--resident", action="store_true", help="discoverable credential")

    otp = tsub.add_parser("otp", help="YubiKey OTP applet").add_subparsers(
        dest="otp_command", required=True
    )
    resp = cmd(otp, "response", cmd_otp_response, "serial and HMAC-SHA1 challenge-response")
    resp.add_argument("--slot", type=int, default=2, choices=[1, 2])
    resp.add_argument("--challenge", help="hex")

    bench = cmd(tsub, "bench", cmd_bench, "N round trips: latency percentiles, failures")
    bench.add_argument("kind", choices=["oath", "piv", "fido2", "otp"])
    bench.add_argument("-n", "--count", type=int, default=100)
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.add_argument("--password", help="OATH password")
    bench.add_argument("--account", help="OATH account (default: the first TOTP one)")
    bench.add_argument("--secret", help="expected secret: base32 (oath) or hex (otp)")
    bench.add_argument("--slot", default="9a", help="PIV slot")
    bench.add_argument("--pin", help="PIV or FIDO2 PIN")
    bench.add_argument("--otp-slot", type=int, default=2, choices=[1, 2])
    bench.add_argument("--rp-id", default="bench.eapkit.test")
    bench.add_argument("--uv", choices=["required", "preferred", "discouraged"])


def main(argv: list[str] | None = None) -> int:
    """``python -m tokens.cli token ...`` until the lead wires ``eapkit token``."""
    parser = argparse.ArgumentParser(prog="python -m tokens.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
