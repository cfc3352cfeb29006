"""``eapkit device``: the device registry's commands (issue 20, :mod:`eapkit.devices`).

- ``add CERT --user U [--user V] [--name N]``: register a device certificate for the
  users allowed to log in with it.  Refused: a file that holds no certificate, an
  unknown user, a certificate or name registered already.
- ``list`` / ``show NAME``.
- ``revoke NAME --reason TEXT [--crl OUT --ca CA --ca-key KEY]``: mark it revoked and
  rewrite the CRL the gateway loads.  The CA and the new CRL are made before the
  registry changes, so a bad CA file changes nothing; the CRL replaces the old file by
  a rename, so the gateway never reads half of one.
- ``crl --ca CA --ca-key KEY --out OUT``: write the CRL again (before its nextUpdate).
- ``check``: the program strongSwan's ext-auth plugin runs after authentication
  (:mod:`eapkit.integrations.strongswan_ext_auth`): exit 0 lets the IKE_SA up.

Every change and every check is one JSON line in the decision log (``event`` =
``device_added``, ``device_revoked``, ``device_allowed``, ``device_refused``, with the
user, the device's name and fingerprint, and the reason).  The acting administrator
comes from ``--by``, else ``$EAPKIT_ADMIN``, else the login name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from eapkit import pki
from eapkit.devices import (
    Device,
    DeviceError,
    DeviceRegistry,
    device_crl,
    load_ca,
    load_certificate,
)
from eapkit.errors import ConfigError
from eapkit.integrations.strongswan_ext_auth import ExtAuthRequest, check
from eapkit.private_files import private_dir
from eapkit.serve import ServeConfig, open_directory
from eapkit.store import open_store

__all__ = ["ADMIN_ENV", "add_device_commands"]

ADMIN_ENV = "EAPKIT_ADMIN"


def _config(args: argparse.Namespace) -> ServeConfig:
    cfg = ServeConfig.from_toml(Path(args.config)) if args.config else ServeConfig()
    if args.db:
        cfg.db = Path(args.db)
    for path in (cfg.db, Path(cfg.log) if cfg.log != "-" else None):
        if path is not None and path.parent != Path():
            private_dir(path.parent)  # as admin.make_dirs: /var/lib/eapkit, /var/log/eapkit
    return cfg


def _registry(cfg: ServeConfig) -> DeviceRegistry:
    return DeviceRegistry(open_store(cfg.store or f"sqlite:{cfg.db}"))


def _log(cfg: ServeConfig, args: argparse.Namespace) -> Callable[[dict[str, Any]], None]:
    def write(event: dict[str, Any]) -> None:
        line = json.dumps({"time": round(time.time(), 3), **event})
        if cfg.log != "-":
            with Path(cfg.log).open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        if cfg.log == "-" or getattr(args, "audit_stderr", False):
            print(line, file=sys.stderr)

    return write


def _admin(args: argparse.Namespace) -> str:
    by: str = args.by or os.environ.get(ADMIN_ENV) or getpass.getuser()
    return by


def _describe(device: Device) -> str:
    lines = [
        f"name:        {device.name}",
        f"state:       {device.state}",
        f"owners:      {', '.join(device.owners)}",
        f"subject:     {device.subject}",
        f"issuer:      {device.issuer}",
        f"serial:      {device.serial:x}",
        f"sha256:      {device.fingerprint}",
        f"identities:  {'; '.join(device.identities)}",
        f"not after:   {_when(device.not_after)}",
        f"added:       {_when(device.added_at)} by {device.added_by}",
    ]
    if device.state == "revoked":
        lines.append(f"revoked:     {_when(device.revoked_at)} by {device.revoked_by}")
        lines.append(f"reason:      {device.reason}")
    return "\n".join(lines)


def _when(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def cmd_device_add(args: argparse.Namespace) -> int:
    cfg = _config(args)
    cert = load_certificate(Path(args.certificate))
    users = open_directory(cfg)
    for user in args.user:
        if users.get(user) is None:
            raise ConfigError(f"no user {user}: add it first with 'eapkit user add {user}'")
    by = _admin(args)
    device = Device.from_certificate(
        cert, name=args.name, owners=args.user, added_by=by, now=time.time()
    )
    if device.not_after < time.time():
        raise DeviceError(f"{args.certificate} expired on {_when(device.not_after)}")
    _registry(cfg).add(device)
    print(f"device {device.name} added for {', '.join(device.owners)} ({device.fingerprint})")
    _log(cfg, args)(
        {
            "event": "device_added",
            "device": device.name,
            "fingerprint": device.fingerprint,
            "user": list(device.owners),
            "by": by,
        }
    )
    return 0


def cmd_device_list(args: argparse.Namespace) -> int:
    for device in _registry(_config(args)).list():
        print(
            f"{device.name}\t{device.state}\t{','.join(device.owners)}\t"
            f"{device.fingerprint[:16]}\t{device.subject}"
        )
    return 0


def cmd_device_show(args: argparse.Namespace) -> int:
    device = _registry(_config(args)).get(args.name)
    if device is None:
        raise DeviceError(f"no device {args.name}")
    print(_describe(device))
    return 0


def _crl_args(args: argparse.Namespace, out: str | None) -> tuple[pki.Issued, Path] | None:
    given = [x for x in (out, args.ca, args.ca_key) if x]
    if not given:
        return None
    if len(given) != 3:
        raise ConfigError("a CRL needs all three of --crl/--out, --ca and --ca-key")
    assert out is not None
    return load_ca(Path(args.ca), Path(args.ca_key)), Path(out)


def _write_crl(
    registry: DeviceRegistry, ca: pki.Issued, devices: list[Device], days: float
) -> bytes:
    crl = device_crl(
        ca, devices, number=registry.next_crl_number(), now=dt.datetime.now(dt.UTC), days=days
    )
    return pki.crl_pem(crl)


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it over: a reader sees the old or the
    new file, never half of one (a CRL is public: mode 0644)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def cmd_device_revoke(args: argparse.Namespace) -> int:
    cfg = _config(args)
    registry = _registry(cfg)
    crl_to = _crl_args(args, args.crl)  # a bad CA file stops here, before any change
    device = registry.get(args.name)
    if device is None:
        raise DeviceError(f"no device {args.name}")
    if device.state == "revoked":
        raise DeviceError(f"device {device.name} was revoked already")
    if not args.reason.strip():
        raise DeviceError("a revocation needs a reason (--reason)")
    by, now = _admin(args), time.time()
    crl: bytes | None = None
    if crl_to is not None:
        ca, _ = crl_to
        after = replace(device, state="revoked", revoked_at=now, revoked_by=by)
        others = [d for d in registry.list() if d.fingerprint != device.fingerprint]
        crl = _write_crl(registry, ca, [*others, after], args.crl_days)
    revoked = registry.revoke(device.name, by=by, reason=args.reason, now=now)
    if crl is not None and crl_to is not None:
        _replace(crl_to[1], crl)
    print(f"device {revoked.name} revoked")
    if crl_to is not None:
        print(f"CRL written to {crl_to[1]}: reload it on the gateway (swanctl --load-creds)")
    _log(cfg, args)(
        {
            "event": "device_revoked",
            "device": revoked.name,
            "fingerprint": revoked.fingerprint,
            "serial": format(revoked.serial, "x"),
            "user": list(revoked.owners),
            "reason": revoked.reason,
            "by": by,
        }
    )
    return 0


def cmd_device_crl(args: argparse.Namespace) -> int:
    cfg = _config(args)
    registry = _registry(cfg)
    crl_to = _crl_args(args, args.out)
    if crl_to is None:
        raise ConfigError("--out, --ca and --ca-key are needed")
    ca, out = crl_to
    devices = registry.list()
    _replace(out, _write_crl(registry, ca, devices, args.crl_days))
    listed = sum(
        d.state == "revoked" and d.issuer == ca.certificate.subject.rfc4514_string()
        for d in devices
    )
    print(f"CRL with {listed} revoked device(s) written to {out}")
    return 0


def cmd_device_check(args: argparse.Namespace) -> int:
    """ext-auth's script: exit 0 allows the IKE_SA, 1 refuses it (any error refuses
    too: the command exits non-zero)."""
    cfg = _config(args)
    request = ExtAuthRequest.from_environ(os.environ)
    decision = check(_registry(cfg), request, args.connection or ())
    line = decision.record(request.remote_id, request.eap_id)
    line.update(ike_sa=request.unique_id, connection=request.name, source=request.remote_host)
    _log(cfg, args)(line)
    device = f"device {decision.device.name}" if decision.device else "no registered device"
    who = request.eap_id or "(no EAP identity)"
    verdict = "allowed" if decision.allowed else "refused"
    print(f"eapkit: {who} with {device} ({request.remote_id}): {verdict}, {decision.reason}")
    return 0 if decision.allowed else 1


def add_device_commands(sub: Any) -> None:
    """``device add|list|show|revoke|crl|check`` on the ``eapkit`` parser."""

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", help="the server's database (default: eapkit.db)")
        p.add_argument("--config", help="eapkit serve's TOML file (its db, store, log)")
        p.add_argument("--audit-stderr", action="store_true", help="log lines on stderr too")
        return p

    def by(p: argparse.ArgumentParser) -> None:
        p.add_argument("--by", help=f"the acting administrator (default ${ADMIN_ENV}, login)")

    def ca(p: argparse.ArgumentParser) -> None:
        p.add_argument("--ca", help="the CA certificate that issued the devices (PEM)")
        p.add_argument("--ca-key", help="that CA's private key (PEM), to sign the CRL")
        p.add_argument("--crl-days", type=float, default=7, help="the CRL's validity")

    dev = sub.add_parser("device", help="the device registry (certificates bound to users)")
    dsub = dev.add_subparsers(dest="device_command", required=True)
    add = common(dsub.add_parser("add", help="register a device certificate for its users"))
    add.add_argument("certificate", help="the device certificate (PEM or DER)")
    add.add_argument("--user", action="append", required=True, help="an owner (repeatable)")
    add.add_argument("--name", help="the device's name (default: the certificate's CN)")
    by(add)
    add.set_defaults(func=cmd_device_add)
    common(dsub.add_parser("list", help="list devices")).set_defaults(func=cmd_device_list)
    show = common(dsub.add_parser("show", help="one device in full"))
    show.add_argument("name", help="name or SHA-256 fingerprint (or 8+ hex digits of it)")
    show.set_defaults(func=cmd_device_show)
    rev = common(dsub.add_parser("revoke", help="revoke a device (and rewrite the CRL)"))
    rev.add_argument("name", help="name or SHA-256 fingerprint")
    rev.add_argument("--reason", required=True)
    rev.add_argument("--crl", help="rewrite this CRL file (with --ca and --ca-key)")
    by(rev)
    ca(rev)
    rev.set_defaults(func=cmd_device_revoke)
    crl = common(dsub.add_parser("crl", help="write the CRL of the revoked devices"))
    crl.add_argument("--out", help="the CRL file (PEM)")
    ca(crl)
    crl.set_defaults(func=cmd_device_crl)
    chk = common(dsub.add_parser("check", help="strongSwan ext-auth's script (reads IKE_*)"))
    chk.add_argument(
        "--connection",
        action="append",
        help="only bind logins of this IKE connection (IKE_NAME; repeatable)",
    )
    chk.set_defaults(func=cmd_device_check)
