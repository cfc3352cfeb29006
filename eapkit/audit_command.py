"""``eapkit audit``: the command over :mod:`eapkit.audit` (the report) and
:mod:`eapkit.audit_html` (its page)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from eapkit.audit import (
    LogFiles,
    SkippedLines,
    build_report,
    parse_duration,
    read_log,
    report_text,
)
from eapkit.audit_html import render_html
from eapkit.errors import ConfigError

__all__ = ["add_audit_command", "cmd_audit"]


def add_audit_command(sub: Any) -> None:
    """``eapkit audit LOG... --since 7d [--until T] [--html FILE] [--json]``."""
    p = sub.add_parser("audit", help="report on the decision log: logins, failures, lockouts")
    p.add_argument("logs", nargs="+", metavar="LOG", help="decision-log files (JSON lines)")
    p.add_argument("--since", default="7d", help="window start, before now or --until (7d, 12h)")
    p.add_argument("--until", type=float, help="window end, Unix time (default: now)")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: Any) -> int:
    until = float(args.until) if args.until is not None else time.time()
    since = until - parse_duration(args.since)
    skipped = SkippedLines()
    paths = [Path(p) for p in args.logs]
    # two passes over regular files; a pipe (/dev/stdin, zcat <(...)) reads once
    logs = LogFiles(paths, skipped) if all(p.is_file() for p in paths) else None
    records = logs if logs is not None else read_log(paths, skipped)
    report = build_report(records, since, until, skipped)
    if args.html:
        target = Path(args.html)
        tmp = target.with_name(f".{target.name}.tmp")
        try:  # written whole or not at all
            tmp.write_text(render_html(report), encoding="utf-8")
            tmp.replace(target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"cannot write {target}: {exc.strerror}") from None
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(report_text(report), end="")
    return 0
