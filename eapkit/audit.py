"""Audit reports over the decision log (``eapkit audit``).

The decision log is JSON lines (:class:`eapkit.radius.core.DecisionLog`): one line per
finished login (``result`` accept/reject/abandoned/dropped with ``user``, ``client``,
``method``, ``reason``, ``calling_station_id``), and event lines (``event``: lockouts,
recovery-code use, enrollments, helpdesk bypass codes, two-person resets, devices,
dropped datagrams).  This module reads any number of such files, skips (and counts)
lines that are not decision-log lines, and summarises a time window:

- logins and failures by user, client, method and reason;
- lockouts, bypass-code and recovery-code uses, resets and who approved them;
- new source addresses (Calling-Station-Id, RFC 2865 §5.31) per user: first seen in
  an accepted login inside the window, never in the history before it;
- new devices per user, by the device certificate's SHA-256 fingerprint (the device
  registry's key, :mod:`eapkit.devices`): first seen inside the window, never before
  it, in an accepted login bound to a device (``device_fingerprint``, written by
  :mod:`eapkit.radius.device_rounds`) or a ``device_allowed`` line (strongSwan's
  ext-auth hook, ``eapkit device check``);
- logins at unusual hours for that user (:func:`unusual_hour`).

The report is data (:class:`Report`); :mod:`eapkit.audit_html` draws it as a
self-contained HTML page.  Nothing here writes to the log.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eapkit.errors import ConfigError

__all__ = [
    "LOGIN_RESULTS",
    "LogFiles",
    "Report",
    "SkippedLines",
    "build_report",
    "parse_duration",
    "read_log",
    "report_text",
    "unusual_hour",
]

LOGIN_RESULTS = frozenset({"accept", "reject", "abandoned", "dropped"})

# Event names written by other parts of eapkit, grouped the way an auditor asks.
LOCKOUT_EVENTS = frozenset({"otp_locked_out", "password_locked_out", "locked_out"})
RECOVERY_EVENTS = frozenset({"recovery_code_used"})
BYPASS_EVENTS = frozenset({"bypass_issued", "bypass_used", "bypass_refused", "bypass_revoked"})
RESET_EVENTS = frozenset(
    {"reset_requested", "reset_approved", "reset_expired", "reset_refused", "reset_cancelled"}
)
DEVICE_EVENTS = frozenset({"device_added", "device_revoked", "device_refused"})

# The rule for unusual hours: with at least this many accepted logins before the
# window, a login whose hour (UTC) is more than one hour away from every hour the user
# logged in at before is unusual.
UNUSUAL_MIN_HISTORY = 10

# Fields the report reads as text; a line with another type there is skipped.
_STRING_FIELDS = (
    "user",
    "client",
    "method",
    "reason",
    "calling_station_id",
    "by",
    "device",
    "fingerprint",
    "device_fingerprint",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# what a peer's User-Name may carry that a terminal or a line-based reader would obey:
# C0 (newline, ESC of ANSI sequences), DEL, C1 and the Unicode line separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _visible(line: str) -> str:
    """``line`` with every control character as ``\\uXXXX``: one report line stays one."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


def parse_duration(text: str) -> float:
    """Seconds in ``7d``, ``12h``, ``30m``, ``90s``, ``2w``; ConfigError otherwise."""
    m = _DURATION.match(text)
    if m is None:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 7d, 12h, 30m)")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class SkippedLines:
    """Lines that are not decision-log lines, counted by why (never fatal)."""

    by_reason: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # "file:line: why", at most 10

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def add(self, where: str, why: str) -> None:
        self.by_reason[why] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{where}: {why}")


def _classify(line: str) -> tuple[dict[str, Any] | None, str]:
    """The record on ``line``, or None and why it is not one."""
    text = line.strip()
    if not text:
        return None, "empty"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None, "truncated" if text.startswith("{") else "not_json"
    if not isinstance(value, dict):
        return None, "not_an_object"
    t = value.get("time")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < 1e11:
        return None, "no_time"
    if "event" in value:
        if not isinstance(value["event"], str):
            return None, "bad_field"
    elif not isinstance(value.get("result"), str) or value["result"] not in LOGIN_RESULTS:
        return None, "foreign"
    if "event" in value:
        user = value.get("user")
        if isinstance(user, list) and all(isinstance(u, str) for u in user):
            value["user"] = ", ".join(user)  # device_added names every owner
        for key in _STRING_FIELDS:  # an event may leave one out as null (device_refused)
            if key in value and value[key] is None:
                del value[key]
    for key in _STRING_FIELDS:
        if key in value and not isinstance(value[key], str):
            return None, "bad_field"
    return value, ""


def read_log(paths: Iterable[Path], skipped: SkippedLines) -> Iterator[dict[str, Any]]:
    """Every decision-log record in ``paths``, in file order; other lines go to
    ``skipped``.  A file that cannot be read is a ConfigError (the operator named it)."""
    for path in paths:
        try:
            f = path.open("r", encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        with f:
            for n, line in enumerate(f, 1):
                record, why = _classify(line)
                if record is None:
                    if why != "empty":
                        skipped.add(f"{path.name}:{n}", why)
                    continue
                yield record


def unusual_hour(history_hours: Counter[int], hour: int) -> bool:
    """Whether a login at ``hour`` (0-23, UTC) is unusual for a user whose accepted
    logins before the window fell at ``history_hours``: only with at least
    :data:`UNUSUAL_MIN_HISTORY` of them, and only when no earlier login was within an
    hour of it (the hours wrap at midnight)."""
    if sum(history_hours.values()) < UNUSUAL_MIN_HISTORY:
        return False
    return all(history_hours[(hour + d) % 24] == 0 for d in (-1, 0, 1))


@dataclass
class Report:
    """What ``eapkit audit`` shows for one window ``[since, until)``."""

    since: float
    until: float
    logins: int = 0
    accepts: int = 0
    rejects: int = 0
    by_user: dict[str, Counter[str]] = field(default_factory=dict)  # user -> result counts
    by_client: Counter[str] = field(default_factory=Counter)
    by_method: Counter[str] = field(default_factory=Counter)
    failure_reasons: Counter[str] = field(default_factory=Counter)
    per_day: dict[str, Counter[str]] = field(default_factory=dict)  # YYYY-MM-DD -> results
    by_hour: Counter[int] = field(default_factory=Counter)  # accepted logins, UTC hour
    lockouts: list[dict[str, Any]] = field(default_factory=list)
    recovery_uses: list[dict[str, Any]] = field(default_factory=list)
    bypass: list[dict[str, Any]] = field(default_factory=list)
    resets: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    new_addresses: list[dict[str, Any]] = field(default_factory=list)
    new_devices: list[dict[str, Any]] = field(default_factory=list)
    unusual_hours: list[dict[str, Any]] = field(default_factory=list)
    other_events: Counter[str] = field(default_factory=Counter)
    skipped: SkippedLines = field(default_factory=SkippedLines)

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "logins": self.logins,
            "accepts": self.accepts,
            "rejects": self.rejects,
            "by_user": {u: dict(c) for u, c in sorted(self.by_user.items())},
            "by_client": dict(self.by_client.most_common()),
            "by_method": dict(self.by_method.most_common()),
            "failure_reasons": dict(self.failure_reasons.most_common()),
            "per_day": {d: dict(c) for d, c in sorted(self.per_day.items())},
            "by_hour": {str(h): self.by_hour[h] for h in range(24)},
            "lockouts": self.lockouts,
            "recovery_uses": self.recovery_uses,
            "bypass": self.bypass,
            "resets": self.resets,
            "devices": self.devices,
            "new_addresses": self.new_addresses,
            "new_devices": self.new_devices,
            "unusual_hours": self.unusual_hours,
            "other_events": dict(self.other_events.most_common()),
            "skipped": {"total": self.skipped.total, **dict(self.skipped.by_reason)},
            "unusual_hour_rule": (
                f"at least {UNUSUAL_MIN_HISTORY} accepted logins before the window, and none"
                " within an hour (UTC) of this one"
            ),
        }


def _event_name(record: dict[str, Any]) -> str:
    """The event's name; admin lines (``event: admin``) carry theirs in ``action``."""
    name = str(record.get("event", ""))
    if name == "admin" and isinstance(record.get("action"), str):
        return str(record["action"])
    return name


def _brief(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    out: dict[str, Any] = {"time": record["time"], "event": _event_name(record)}
    for key in keys:
        if key in record and record[key] not in ("", None):
            out[key] = record[key]
    return out


class LogFiles:
    """The decision-log files as records, readable more than once (:func:`build_report`
    reads them twice instead of holding them); lines that are not records are counted
    in ``skipped`` on the first reading only."""

    def __init__(self, paths: Iterable[Path], skipped: SkippedLines) -> None:
        self.paths = list(paths)
        self.skipped = skipped
        self._read = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        counted = SkippedLines() if self._read else self.skipped
        self._read = True
        return read_log(self.paths, counted)


def _login_fields(r: dict[str, Any]) -> tuple[str, str, str, int]:
    """(user, result, Calling-Station-Id, UTC hour) of a login record."""
    user = str(r.get("user") or r.get("outer_identity") or "")
    return user, str(r["result"]), str(r.get("calling_station_id", "")), _hour(r)


def _device_use(r: dict[str, Any]) -> tuple[str, str] | None:
    """(user, device fingerprint) of a record that shows a user logging in with a
    registered device: an accepted login bound to one, or ext-auth's ``device_allowed``."""
    if "event" in r:
        if _event_name(r) != "device_allowed":
            return None
        user, fp = str(r.get("user") or ""), str(r.get("fingerprint") or "")
    else:
        if r["result"] != "accept":
            return None
        user, fp = _login_fields(r)[0], str(r.get("device_fingerprint") or "")
    return (user, fp.replace(":", "").lower()) if user and fp else None


def _text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _hour(r: dict[str, Any]) -> int:
    return time.gmtime(float(r["time"])).tm_hour


def build_report(
    records: Iterable[dict[str, Any]], since: float, until: float, skipped: SkippedLines
) -> Report:
    """Summarise the records of ``[since, until)``; earlier records are the history
    that makes an address or a device new or an hour unusual.  Records may come in any order.

    A huge log is streamed: ``records`` is read twice (a list, or :class:`LogFiles`),
    first for the history before ``since``, then for the window, so memory holds each
    user's addresses, devices and login hours and the window's findings, never the log (a
    one-shot iterator is read into a list first)."""
    if isinstance(records, Iterator):
        records = list(records)
    report = Report(since=since, until=until, skipped=skipped)
    seen_addresses: dict[str, set[str]] = defaultdict(set)
    history_hours: dict[str, Counter[int]] = defaultdict(Counter)
    seen_devices: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if float(r["time"]) >= since:
            continue
        use = _device_use(r)
        if use is not None:
            seen_devices[use[0]].add(use[1])
        if "event" in r:
            continue
        user, result, address, hour = _login_fields(r)
        if result == "accept" and user:
            if address:
                seen_addresses[user].add(address)
            history_hours[user][hour] += 1
    first_seen: dict[tuple[str, str], dict[str, Any]] = {}
    first_device: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        t = float(r["time"])
        if not since <= t < until:
            continue
        use = _device_use(r)
        if use is not None and use[1] not in seen_devices[use[0]]:
            seen = first_device.get(use)
            if seen is None or t < seen["time"]:
                first_device[use] = {
                    "time": t,
                    "event": _event_name(r) or "login",
                    "user": use[0],
                    "fingerprint": use[1],
                    **{k: r[k] for k in ("device", "client", "connection") if _text(r.get(k))},
                }
        if "event" in r:
            _add_event(report, r)
            continue
        user, result, address, hour = _login_fields(r)
        _add_login(report, r, user, result, t)
        if result == "accept" and user:
            if address and address not in seen_addresses[user]:
                seen = first_seen.get((user, address))
                if seen is None or t < seen["time"]:
                    first_seen[(user, address)] = {
                        "time": t,
                        "user": user,
                        "address": address,
                        "client": r.get("client", ""),
                    }
            if unusual_hour(history_hours[user], hour):
                report.unusual_hours.append(
                    {"time": t, "user": user, "hour": hour, "client": r.get("client", "")}
                )
    report.new_addresses = list(first_seen.values())
    report.new_devices = list(first_device.values())
    for found in (
        report.lockouts,
        report.recovery_uses,
        report.bypass,
        report.resets,
        report.devices,
        report.new_addresses,
        report.new_devices,
        report.unusual_hours,
    ):
        found.sort(key=lambda e: float(e["time"]))  # stable: ties keep the log's order
    return report


def _add_login(report: Report, r: dict[str, Any], user: str, result: str, t: float) -> None:
    report.logins += 1
    report.by_user.setdefault(user or "(none)", Counter())[result] += 1
    report.by_client[str(r.get("client", ""))] += 1
    if r.get("method"):
        report.by_method[str(r["method"])] += 1
    day = time.strftime("%Y-%m-%d", time.gmtime(t))
    report.per_day.setdefault(day, Counter())[result] += 1
    if result == "accept":
        report.accepts += 1
        report.by_hour[time.gmtime(t).tm_hour] += 1
    else:
        report.rejects += result == "reject"
        report.failure_reasons[str(r.get("reason", ""))] += 1
        if r.get("reason") == "locked_out":
            report.lockouts.append(_brief(r, "user", "client", "method", "reason"))


def _add_event(report: Report, r: dict[str, Any]) -> None:
    name = _event_name(r)
    if name in LOCKOUT_EVENTS:
        report.lockouts.append(_brief(r, "user", "retry_after", "client"))
    elif name in RECOVERY_EVENTS:
        report.recovery_uses.append(_brief(r, "user", "client"))
    elif name in BYPASS_EVENTS:
        report.bypass.append(
            _brief(r, "user", "by", "reason", "id", "scope", "client", "refusal", "used")
        )
    elif name in RESET_EVENTS:
        report.resets.append(
            _brief(r, "user", "by", "requested_by", "reason", "id", "scope", "removed")
        )
    elif name in DEVICE_EVENTS:
        report.devices.append(_brief(r, "user", "by", "device", "fingerprint", "reason"))
    else:
        report.other_events[name or "(unnamed)"] += 1


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def report_text(report: Report) -> str:
    """The plain-text summary ``eapkit audit`` prints by default."""
    out = [
        f"eapkit audit: {_when(report.since)} .. {_when(report.until)}",
        f"logins: {report.logins} ({report.accepts} accepted, {report.rejects} rejected)",
    ]

    def table(title: str, rows: Iterable[tuple[str, object]]) -> None:
        rows = list(rows)
        if rows:
            out.append(f"{title}:")
            out.extend(f"  {k or '(none)'}: {v}" for k, v in rows)

    table(
        "by user",
        (
            (u, ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
            for u, c in sorted(report.by_user.items())
        ),
    )
    table("by client", report.by_client.most_common())
    table("by method", report.by_method.most_common())
    table("failures by reason", report.failure_reasons.most_common())

    def events(title: str, items: list[dict[str, Any]]) -> None:
        out.append(f"{title}: {len(items)}")
        for e in items[:50]:
            rest = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("time", "event"))
            out.append(f"  {_when(float(e['time']))} {e.get('event', '')} {rest}".rstrip())

    events("lockouts", report.lockouts)
    events("recovery-code uses", report.recovery_uses)
    events("bypass codes", report.bypass)
    events("resets", report.resets)
    events("devices", report.devices)
    events("new source addresses", report.new_addresses)
    events("new devices", report.new_devices)
    events("logins at unusual hours", report.unusual_hours)
    if report.skipped.total:
        why = ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.by_reason.items()))
        out.append(f"skipped lines: {report.skipped.total} ({why})")
    return "".join(_visible(line) + "\n" for line in out)
