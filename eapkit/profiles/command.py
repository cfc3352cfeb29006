"""``eapkit profile apple|windows|android|linux USER``: write a ready client profile
for the IKEv2 gateway (docs/profiles.md).

The input is checked completely first (the user exists in the server's directory, the
method suits the platform and the server, the CA and the device certificate are what
they must be), then the profile is written all at once; on any error nothing is
written and the command says why in one line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from eapkit.admin import _audit, read_secret
from eapkit.authz import CertificateIdentity
from eapkit.catalog import CATALOG
from eapkit.profiles import android, apple, linux, windows
from eapkit.profiles.common import (
    METHODS,
    ProfileError,
    ProfileRequest,
    load_ca,
    load_device,
    write_atomically,
)
from eapkit.serve import ServeConfig, open_directory

__all__ = ["KINDS", "add_profile_command", "cmd_profile"]

P12_PASSWORD_ENV = "EAPKIT_P12_PASSWORD"  # noqa: S105 - the variable's name
MIN_P12_PASSWORD = 8

# kind -> (methods it takes, default file name, writer)
KINDS: dict[
    str, tuple[tuple[str, ...], str, Callable[[ProfileRequest], bytes | dict[str, bytes]]]
] = {
    "apple": (apple.METHODS, "{user}.mobileconfig", apple.mobileconfig),
    "windows": (windows.METHODS, "{user}-vpn.ps1", windows.powershell),
    "android": (android.METHODS, "{user}.sswan", android.sswan),
    "linux": (linux.METHODS, "{user}-swanctl", linux.swanctl_tree),
}


# the EAP methods of eapkit serve (its ``methods`` list) a profile's method uses; for
# cert-eap, the EAP round after the device certificate (GTC for a code, or MS-CHAPv2)
SERVER_METHODS = {
    "eap-mschapv2": ("mschapv2",),
    "eap-tls": ("tls",),
    "peap": ("peap",),
    "teap": ("teap",),
    "cert-eap": ("gtc", "mschapv2"),
}


def _offered(method: str) -> bool:
    """TEAP goes into a profile only when this eapkit's catalog offers it."""
    return method != "teap" or any(entry.name == "teap" for entry in CATALOG)


def _p12_password(args: argparse.Namespace) -> str:
    password = read_secret(args.p12_password_file, P12_PASSWORD_ENV, what="PKCS#12 password")
    if password is None:
        password = getpass.getpass("password for the device certificate's PKCS#12: ")
    if len(password) < MIN_P12_PASSWORD:
        raise ProfileError(f"the PKCS#12 password must have at least {MIN_P12_PASSWORD} characters")
    return password


def _signer(args: argparse.Namespace) -> tuple[Any, Any, list[Any]] | None:
    if (args.sign_cert is None) != (args.sign_key is None):
        raise ProfileError("signing needs both --sign-cert and --sign-key")
    if args.sign_cert is None:
        return None
    if args.kind != "apple":
        raise ProfileError("--sign-cert signs Apple profiles only")
    try:
        certs = x509.load_pem_x509_certificates(Path(args.sign_cert).read_bytes())
        key = serialization.load_pem_private_key(Path(args.sign_key).read_bytes(), None)
    except (ValueError, TypeError) as exc:  # TypeError: an encrypted key without password
        raise ProfileError(f"cannot read the signing certificate or key: {exc}") from None
    cert, chain = certs[0], certs[1:]
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ProfileError(f"{args.sign_key}: signing takes an RSA or ECDSA key")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != cert.public_key().public_bytes(der, public):
        raise ProfileError(f"{args.sign_key} is not the key of {args.sign_cert}")
    return cert, key, chain


def _serve_config(args: argparse.Namespace) -> ServeConfig:
    cfg = ServeConfig.from_toml(Path(args.config)) if args.config else ServeConfig()
    if args.db:
        cfg.db = Path(args.db)
    return cfg


def build_request(args: argparse.Namespace, now: dt.datetime) -> ProfileRequest:
    """Every check of the input, in the order a person would fix them."""
    methods, _, _ = KINDS[args.kind]
    if args.method not in methods:
        raise ProfileError(f"{args.kind} profiles take {', '.join(methods)}; not {args.method}")
    if not _offered(args.method):
        raise ProfileError(f"this eapkit serve offers no {args.method} (not in 'eapkit methods')")
    if not args.gateway:
        raise ProfileError("give --gateway HOST (the address clients dial)")
    cfg = _serve_config(args)
    if not set(SERVER_METHODS[args.method]) & set(cfg.methods):
        raise ProfileError(
            f"eapkit serve here offers {', '.join(cfg.methods)}: {args.method} needs "
            f"{' or '.join(SERVER_METHODS[args.method])} in its methods"
        )
    if not cfg.db.exists() and cfg.directory == "local":
        raise ProfileError(f"no user database {cfg.db}: add users first with 'eapkit user add'")
    users = open_directory(cfg)
    try:
        known = users.get(args.user) is not None
    finally:
        users.close()
    if not known:
        raise ProfileError(f"no user {args.user}: add it first with 'eapkit user add {args.user}'")
    ca = load_ca(Path(args.ca))
    identity = CertificateIdentity(cfg.tls.identity, frozenset(cfg.tls.realms))
    device = load_device(
        args.user,
        args.method,
        Path(args.cert) if args.cert else None,
        Path(args.key) if args.key else None,
        identity=identity,
        now=now,
    )
    names = tuple(args.eap_server_name or ([cfg.tls.server_name] if cfg.tls.server_name else []))
    return ProfileRequest(
        user=args.user,
        gateway=args.gateway,
        gateway_id=args.gateway_id or args.gateway,
        method=args.method,
        ca=ca,
        eap_server_names=names,
        device=device,
        p12_password=_p12_password(args) if device is not None else None,
        name=args.name or "",
    )


def cmd_profile(args: argparse.Namespace) -> int:
    request = build_request(args, dt.datetime.now(dt.UTC))
    signer = _signer(args)
    _, default_name, writer = KINDS[args.kind]
    target = Path(args.out or default_name.format(user=linux._section(args.user)))
    if os.path.lexists(target):  # before the PKCS#12 is built, and again at the rename
        raise ProfileError(f"{target} exists: remove it or choose another --out")
    made = writer(request)
    if signer is not None and isinstance(made, bytes):
        made = apple.sign(made, *signer)
    files = made if isinstance(made, dict) else {"": made}
    write_atomically(target, files, private=request.device is not None)
    # a profile may carry a device certificate: the decision log says who got one
    _audit(args, _serve_config(args))(
        {
            "action": "profile_written",
            "user": request.user,
            "kind": args.kind,
            "method": request.method,
            "device_certificate": request.device is not None,
            "signed": signer is not None,
            "out": str(target),
        }
    )
    signed = " (signed)" if signer is not None else ""
    print(f"wrote {target}: {args.kind} {request.method} profile for {request.user}{signed}")
    return 0


def add_profile_command(sub: Any) -> None:
    """``profile`` on the ``eapkit`` parser."""
    p = sub.add_parser(
        "profile", help="write a client profile for the IKEv2 gateway (docs/profiles.md)"
    )
    p.add_argument("kind", choices=sorted(KINDS), help="the client platform")
    p.add_argument("user", help="the user (must exist in the server's directory)")
    p.add_argument("--gateway", help="the gateway's address or host name, as clients dial it")
    p.add_argument("--gateway-id", help="the identity in its certificate (default: --gateway)")
    p.add_argument(
        "--method", choices=METHODS, default="eap-mschapv2", help="how the client logs in"
    )
    p.add_argument("--ca", required=True, help="the CA of the gateway's (and eapkit's) certificate")
    p.add_argument("--cert", help="the user's device certificate (eap-tls, cert-eap)")
    p.add_argument("--key", help="its private key, PEM")
    p.add_argument("--p12-password-file", help=f"PKCS#12 password (or ${P12_PASSWORD_ENV})")
    p.add_argument(
        "--eap-server-name",
        action="append",
        help="a name in eapkit's certificate (default: [tls] server_name)",
    )
    p.add_argument("--name", help="the connection's name on the device")
    p.add_argument("--sign-cert", help="sign the Apple profile with this certificate")
    p.add_argument("--sign-key", help="and this key")
    p.add_argument("--out", help="the file (a directory for linux) to write")
    p.add_argument("--db", help="the server's database (default: eapkit.db)")
    p.add_argument("--config", help="eapkit serve's TOML file (its db, directory, [tls])")
    p.add_argument("--audit-stderr", action="store_true", help="audit lines on stderr too")
    p.set_defaults(func=cmd_profile)
