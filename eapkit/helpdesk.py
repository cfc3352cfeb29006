"""The helpdesk's commands: ``eapkit bypass``, ``eapkit reset``, ``eapkit approve`` and
``eapkit store rekey`` (docs/operating.md).

The acting administrator comes from ``--by`` or ``$EAPKIT_ADMIN`` and must be one of the
configuration's ``[admin] administrators``; a command without one, or with a name not in
the list, is refused before anything is written.  Every change is one decision-log line
(``event`` ``bypass_issued``, ``bypass_revoked``, ``reset_requested``,
``reset_approved``, ``reset_expired``, ``rekey``) with ``user``, ``by``, ``reason``,
``id`` and ``scope``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from eapkit.admin import _audit, _config, _second_factors
from eapkit.bridge.config import MAX_ENROLL_TTL, BridgeConfig
from eapkit.bypass import METHODS, BypassRefused
from eapkit.errors import ConfigError
from eapkit.radius.clients import Client
from eapkit.radsec_config import radsec_clients
from eapkit.reset import DEFAULT_TTL, ResetRefused, ResetRequests, ResetStore, admin_key
from eapkit.second_factor import sealing_keys
from eapkit.serve import ServeConfig
from eapkit.store import open_store
from eapkit.store.rekey import SwapStore, key_census, rekey

__all__ = ["ADMIN_ENV", "add_helpdesk_commands", "duration", "require_admin"]

ADMIN_ENV = "EAPKIT_ADMIN"
MAX_LINK_TTL = MAX_ENROLL_TTL
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``1h`` or ``2d``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (90s, 15m, 1h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def require_admin(cfg: ServeConfig, by: str | None) -> str:
    """The acting administrator: ``--by`` or ``$EAPKIT_ADMIN``, one of the list (matched
    by :func:`~eapkit.reset.admin_key`; the list's spelling is what gets recorded)."""
    name = (by or os.environ.get(ADMIN_ENV) or "").strip()
    if not name:
        raise BypassRefused(f"name the acting administrator (--by or ${ADMIN_ENV})")
    if not cfg.administrators:
        raise ConfigError("no [admin] administrators are configured (see docs/operating.md)")
    same = [a for a in cfg.administrators if admin_key(a) == admin_key(name)]
    if not same:
        raise BypassRefused(f"{name} is not one of the configured [admin] administrators")
    if len(same) > 1:  # "ada" and "Ada" listed: which person is acting is unclear
        raise BypassRefused(f"{name} is listed more than once in [admin] administrators")
    return same[0].strip()


def _client_names(cfg: ServeConfig) -> set[str]:
    clients = cfg.clients or [
        Client.of("127.0.0.0/8", "x", "localhost"),
        Client.of("::1/128", "x", "localhost6"),
    ]
    return {c.name for c in [*clients, *radsec_clients(cfg.radsec)]}


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# -- eapkit bypass ---------------------------------------------------------------------


def cmd_bypass(args: argparse.Namespace) -> int:
    """``bypass USER ...`` issues; ``bypass list [USER]``; ``bypass revoke ID``."""
    words: list[str] = args.words
    if words[0] == "list" and len(words) <= 2:
        return _bypass_list(args, words[1] if len(words) == 2 else None)
    if words[0] == "revoke" and len(words) == 2:
        return _bypass_revoke(args, words[1])
    if len(words) != 1:
        raise ConfigError("usage: eapkit bypass USER | bypass list [USER] | bypass revoke ID")
    second, cfg = _second_factors(args)
    by = require_admin(cfg, args.by)
    user = words[0]
    if second.users.get(user) is None:
        raise BypassRefused(f"no user {user}")
    if args.client and args.client not in _client_names(cfg):
        raise BypassRefused(f"no client {args.client!r} in the configuration")
    methods = tuple(m for item in args.methods for m in item.split(",") if m)
    bypass, code = second.bypass.issue(
        user,
        by=by,
        reason=args.reason or "",
        ttl=args.ttl,
        uses=args.uses,
        methods=methods,
        client=args.client or "",
        now=time.time(),
    )
    print(code)
    print(
        f"bypass {bypass.id} for {user}: {bypass.uses} use(s) until {_when(bypass.expires)}"
        f"{'; methods ' + ','.join(bypass.methods) if bypass.methods else ''}"
        f"{'; client ' + bypass.client if bypass.client else ''}"
        " (the code is shown only now)",
        file=sys.stderr,
    )
    return 0


def _bypass_list(args: argparse.Namespace, user: str | None) -> int:
    second, _ = _second_factors(args)
    now = time.time()
    for b in second.bypass.all(user):
        used = second.bypass.used(b.id)
        state = "expired" if now >= b.expires else ("used up" if used >= b.uses else "live")
        print(
            f"{b.id}  {b.user}  {state}  used {used}/{b.uses}  until {_when(b.expires)}"
            f"  methods {','.join(b.methods) or 'any'}  client {b.client or 'any'}"
            f"  by {b.by}  reason {b.reason!r}"
        )
    return 0


def _bypass_revoke(args: argparse.Namespace, bypass_id: str) -> int:
    second, cfg = _second_factors(args)
    by = require_admin(cfg, args.by)
    bypass = second.bypass.revoke(bypass_id, by=by, reason=args.reason or "", now=time.time())
    print(f"bypass {bypass.id} of {bypass.user} revoked")
    return 0


# -- eapkit reset / approve --------------------------------------------------------------


def _resets(args: argparse.Namespace) -> tuple[ResetRequests, ServeConfig, Any]:
    second, cfg = _second_factors(args)
    store = second.store
    if not all(hasattr(store, name) for name in ("record_keys", "swap")):
        raise ConfigError(f"this store ({type(store).__name__}) cannot apply resets")
    reset_store: ResetStore = store  # type: ignore[assignment]
    return ResetRequests(reset_store, audit=_audit(args, cfg), key_of=second.key), cfg, second


def cmd_reset(args: argparse.Namespace) -> int:
    """``reset USER --factors ... --reason ... --by ADMIN``; ``reset list``."""
    resets, cfg, second = _resets(args)
    now = time.time()
    if args.user == "list":
        resets.sweep(now)
        for r in resets.all():
            print(
                f"{r.id}  {r.user}  {r.state_at(now)}  factors {','.join(r.factors)}"
                f"  asked by {r.by} {_when(r.created)}  expires {_when(r.expires)}"
                f"{'  approved by ' + r.approved_by if r.approved_by else ''}"
                f"  reason {r.reason!r}"
            )
        return 0
    by = require_admin(cfg, args.by)
    if second.users.get(args.user) is None:
        raise ResetRefused(f"no user {args.user}")
    factors = [f for item in args.factors.split(",") if (f := item.strip())]
    req = resets.request(args.user, factors, by=by, reason=args.reason or "", now=now, ttl=args.ttl)
    print(req.id)
    print(
        f"reset {req.id} of {','.join(req.factors)} for {req.user} waits for another "
        f"administrator until {_when(req.expires)}: eapkit approve {req.id} --by NAME",
        file=sys.stderr,
    )
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    """Apply a pending reset (a different administrator) and print the user's one-time
    re-enrollment link."""
    from eapkit.bridge.gate import Bridge

    resets, cfg, second = _resets(args)
    by = require_admin(cfg, args.by)
    if args.link_ttl is not None and not 0 < args.link_ttl <= MAX_LINK_TTL:
        # the link enrolls a factor for whoever holds it: a day or so, not a standing key
        raise ResetRefused(f"--link-ttl must be more than 0 and at most {MAX_LINK_TTL / 86400:g}d")
    pending = resets.get(args.id)
    if pending is not None and second.users.get(pending.user) is None:
        # deleted since (outside 'eapkit user del', say in LDAP): nobody to re-enroll
        raise ResetRefused(f"no user {pending.user} any more: reset {args.id} not applied")
    req, removed = resets.approve(
        args.id, by=by, now=time.time(), administrators=cfg.administrators
    )
    print(
        f"reset {req.id} applied: {','.join(req.factors)} of {req.user} removed"
        f" ({removed} store key(s)); their one-time re-enrollment link:",
        file=sys.stderr,
    )
    bridge_cfg = cfg.bridge or BridgeConfig()
    bridge = Bridge(bridge_cfg, second.users, second.store, audit=_audit(args, cfg))
    print(bridge.enrollment_link(req.user, time.time(), args.link_ttl))
    if cfg.bridge is None:
        print("(eapkit serve needs a [bridge] table for this link to work)", file=sys.stderr)
    return 0


# -- eapkit store rekey -----------------------------------------------------------------


def cmd_store_rekey(args: argparse.Namespace) -> int:
    """Re-seal every record under the newest key (resumable); ``--verify`` only counts
    the records each key id still seals (exit 1 while an old key is still needed)."""
    cfg = _config(args)
    store = open_store(cfg.store or f"sqlite:{cfg.db}")
    if not all(hasattr(store, name) for name in ("record_keys", "swap")):
        raise ConfigError(f"this store ({type(store).__name__}) cannot be re-keyed")
    swap_store: SwapStore = store  # type: ignore[assignment]
    sealer = sealing_keys(cfg.db, keys_file=cfg.store_keys_file, create=False)
    if not args.verify:
        try:
            report = rekey(swap_store, sealer, batch=args.batch)
        except KeyboardInterrupt:
            print("interrupted: run 'eapkit store rekey' again to go on", file=sys.stderr)
            return 130
        print(report.summary())
        _audit(args, cfg)(
            {
                "event": "rekey",
                "key": sealer.current,
                "resealed": report.resealed,
                "current": report.current,
                "plain": report.plain,
                "failed": len(report.failed),
                "resumed_after": report.resumed_after,
            }
        )
        for key in report.failed:
            print(f"does not open with any configured key: {key}", file=sys.stderr)
    census = key_census(swap_store)
    old = {kid: n for kid, n in census.items() if kid != sealer.current}
    for kid, n in sorted(census.items()):
        print(f"key {kid}: {n} record(s){' (current)' if kid == sealer.current else ''}")
    if old:
        print(f"old key(s) still needed: {', '.join(sorted(old))}")
        return 1
    print(f"only the current key {sealer.current} is needed: older keys can be dropped")
    return 0


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--db", help="the server's database (default: eapkit.db)")
    p.add_argument("--config", help="eapkit serve's TOML file (its [admin], db, store)")
    p.add_argument("--audit-stderr", action="store_true", help="audit lines on stderr too")
    return p


def add_helpdesk_commands(sub: Any, store_commands: Any) -> None:
    """``bypass``, ``reset`` and ``approve`` on the ``eapkit`` parser, ``rekey`` on
    ``eapkit store``."""
    common = _common
    byp = common(
        sub.add_parser(
            "bypass",
            help="helpdesk: a temporary code in place of a user's second factor",
            description="eapkit bypass USER --reason TEXT --by ADMIN [--ttl 1h] [--uses 1] "
            "[--methods pap,ttls] [--client NAS]; eapkit bypass list [USER]; "
            "eapkit bypass revoke ID --by ADMIN",
        )
    )
    byp.add_argument("words", nargs="+", metavar="USER | list [USER] | revoke ID")
    byp.add_argument("--ttl", type=duration, default=3600.0, help="how long (default 1h)")
    byp.add_argument("--uses", type=int, default=1, help="how many logins (default 1)")
    byp.add_argument(
        "--methods", action="append", default=[], help=f"only in these: {', '.join(METHODS)}"
    )
    byp.add_argument("--client", help="only from this NAS (its [[clients]] name)")
    byp.add_argument("--reason", help="why (required; logged with every use)")
    byp.add_argument("--by", help=f"the acting administrator (or ${ADMIN_ENV})")
    byp.set_defaults(func=cmd_bypass)

    rst = common(
        sub.add_parser(
            "reset",
            help="two-person reset of a user's second factors (approved by another admin)",
        )
    )
    rst.add_argument("user", metavar="USER | list")
    rst.add_argument(
        "--factors", default="all", help="totp,yubikey,webauthn,recovery or all (default)"
    )
    rst.add_argument("--reason", help="why (required)")
    rst.add_argument("--by", help=f"the requesting administrator (or ${ADMIN_ENV})")
    rst.add_argument("--ttl", type=duration, default=DEFAULT_TTL, help="expiry (default 24h)")
    rst.set_defaults(func=cmd_reset)
    app = common(sub.add_parser("approve", help="approve a pending reset (another admin)"))
    app.add_argument("id")
    app.add_argument("--by", help=f"the approving administrator (or ${ADMIN_ENV})")
    app.add_argument(
        "--link-ttl",
        type=duration,
        help="how long the re-enrollment link lives, at most 7d"
        " (default: [bridge] enroll_ttl, itself 1d unless set)",
    )
    app.set_defaults(func=cmd_approve)

    rk = common(
        store_commands.add_parser("rekey", help="re-seal every record under the newest key")
    )
    rk.add_argument("--batch", type=int, default=200, help="records per step (resume point)")
    rk.add_argument(
        "--verify", action="store_true", help="only say whether an old key is still needed"
    )
    rk.set_defaults(func=cmd_store_rekey)
