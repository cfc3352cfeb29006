"""The HTML page of ``eapkit audit --html``: one self-contained file (inline CSS and SVG
charts, no script, nothing fetched), so it opens from a mail attachment or an archive.

Every value from the log is escaped (:func:`html.escape`): user names and reasons are
whatever a NAS or a peer sent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from eapkit.audit import Report

__all__ = ["render_html"]

_ACCEPT = "#2e7d32"
_REJECT = "#c62828"
_OTHER = "#9e9e9e"
_BAR = "#1565c0"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def _stacked_days(per_day: dict[str, Counter[str]]) -> str:
    """Logins per day, accepted (green) under rejected (red) and other (grey)."""
    days = sorted(per_day)
    if not days:
        return "<p class=empty>No logins in this window.</p>"
    width, height, pad = 760, 220, 30
    top = max(sum(c.values()) for c in per_day.values()) or 1
    step = (width - 2 * pad) / len(days)
    bar = max(2.0, step * 0.7)
    parts = [
        f'<svg class=chart id=chart-days viewBox="0 0 {width} {height}" role=img'
        ' aria-label="logins per day">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}"'
        ' stroke="#444"/>',
        f'<text x="4" y="{pad - 8}" class=axis>{top}</text>',
    ]
    for i, day in enumerate(days):
        c = per_day[day]
        x = pad + i * step + (step - bar) / 2
        y = float(height - pad)
        for key, colour in (("accept", _ACCEPT), ("reject", _REJECT)):
            h = c[key] / top * (height - 2 * pad)
            if h:
                y -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}"'
                    f' fill="{colour}"><title>{escape(day)}: {c[key]} {key}</title></rect>'
                )
        other = sum(v for k, v in c.items() if k not in ("accept", "reject"))
        if other:
            h = other / top * (height - 2 * pad)
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}"'
                f' fill="{_OTHER}"><title>{escape(day)}: {other} other</title></rect>'
            )
        if len(days) <= 16 or i % max(1, len(days) // 8) == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height - pad + 14}" class=axis>{escape(day[5:])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _hbars(chart_id: str, rows: Sequence[tuple[str, int]], colour: str) -> str:
    """A horizontal bar per row (label, count), largest first."""
    if not rows:
        return "<p class=empty>None.</p>"
    rows = list(rows)[:15]
    width, line = 760, 22
    top = max(n for _, n in rows) or 1
    height = line * len(rows) + 10
    parts = [
        f'<svg class=chart id="{chart_id}" viewBox="0 0 {width} {height}" role=img>',
    ]
    for i, (label, n) in enumerate(rows):
        y = 5 + i * line
        w = n / top * (width - 260)
        parts.append(
            f'<text x="0" y="{y + 15}" class=label>{escape((label or "(none)")[:40])}</text>'
            f'<rect x="220" y="{y + 3}" width="{w:.1f}" height="{line - 6}" fill="{colour}"/>'
            f'<text x="{224 + w:.1f}" y="{y + 15}" class=label>{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _hours(by_hour: Counter[int]) -> str:
    width, height, pad = 760, 160, 24
    top = max(by_hour.values(), default=0) or 1
    step = (width - 2 * pad) / 24
    parts = [f'<svg class=chart id=chart-hours viewBox="0 0 {width} {height}" role=img>']
    for h in range(24):
        bh = by_hour[h] / top * (height - 2 * pad)
        x = pad + h * step
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{height - pad - bh:.1f}" width="{step - 4:.1f}"'
            f' height="{bh:.1f}" fill="{_BAR}"><title>{h:02d}h: {by_hour[h]}</title></rect>'
            f'<text x="{x + 4:.1f}" y="{height - pad + 14}" class=axis>{h:02d}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _events_table(table_id: str, items: Iterable[dict[str, Any]]) -> str:
    items = list(items)
    if not items:
        return f"<p class=empty id={table_id}>None.</p>"
    keys: list[str] = []
    for e in items:
        keys += [k for k in e if k not in ("time", "event") and k not in keys]
    head = "".join(f"<th>{escape(k)}</th>" for k in ["time", "event", *keys])
    body = []
    for e in items[:500]:
        cells = [_when(float(e["time"])), str(e.get("event", ""))]
        cells += [str(e.get(k, "")) for k in keys]
        body.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table id={table_id}><tr>{head}</tr>{''.join(body)}</table>"


def _skipped(report: Report) -> str:
    """Lines that were not decision-log lines, by why, and where the first few were."""
    if not report.skipped.total:
        return "<p class=empty id=skipped>None.</p>"
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td>{v}</td></tr>"
        for k, v in sorted(report.skipped.by_reason.items())
    )
    where = "".join(f"<li>{escape(w)}</li>" for w in report.skipped.examples)
    return f"<table id=skipped><tr><th>why</th><th>lines</th></tr>{rows}</table><ul>{where}</ul>"


_STYLE = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:820px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}
.tiles{display:flex;gap:12px}.tile{border:1px solid #ccc;border-radius:6px;padding:10px 16px}
.tile b{display:block;font-size:26px}.chart{width:100%;height:auto}
.axis{font-size:10px;fill:#444}.label{font-size:12px;fill:#222}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px}
.empty{color:#777}.note{color:#555;font-size:12px}
"""


def render_html(report: Report) -> str:
    """The report as one HTML document."""
    users = sorted(report.by_user.items(), key=lambda kv: -sum(kv[1].values()))
    user_rows = [(u, c.get("reject", 0)) for u, c in users if c.get("reject", 0)]
    tiles = [
        ("logins", report.logins, "tile-logins"),
        ("accepted", report.accepts, "tile-accepts"),
        ("rejected", report.rejects, "tile-rejects"),
        ("lockouts", len(report.lockouts), "tile-lockouts"),
        ("bypass codes", len(report.bypass), "tile-bypass"),
        ("skipped lines", report.skipped.total, "tile-skipped"),
    ]
    tile_html = "".join(
        f'<div class=tile id="{tid}">{escape(name)}<b>{n}</b></div>' for name, n, tid in tiles
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>eapkit audit</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>eapkit audit: {escape(_when(report.since))} to {escape(_when(report.until))}</h1>"
        f"<div class=tiles>{tile_html}</div>"
        "<h2>Logins per day</h2>"
        f'<p class=note><span style="color:{_ACCEPT}">■</span> accepted '
        f'<span style="color:{_REJECT}">■</span> rejected '
        f'<span style="color:{_OTHER}">■</span> abandoned or dropped</p>'
        + _stacked_days(report.per_day)
        + "<h2>Failures by reason</h2>"
        + _hbars("chart-reasons", report.failure_reasons.most_common(), _REJECT)
        + "<h2>Failures by user</h2>"
        + _hbars("chart-users", sorted(user_rows, key=lambda r: -r[1]), _REJECT)
        + "<h2>Logins by client</h2>"
        + _hbars("chart-clients", report.by_client.most_common(), _BAR)
        + "<h2>Logins by method</h2>"
        + _hbars("chart-methods", report.by_method.most_common(), _BAR)
        + "<h2>Accepted logins by hour (UTC)</h2>"
        + _hours(report.by_hour)
        + "<h2>Lockouts</h2>"
        + _events_table("lockouts", report.lockouts)
        + "<h2>Bypass codes</h2>"
        + _events_table("bypass", report.bypass)
        + "<h2>Recovery-code uses</h2>"
        + _events_table("recovery", report.recovery_uses)
        + "<h2>Resets and approvals</h2>"
        + _events_table("resets", report.resets)
        + "<h2>Devices</h2>"
        + _events_table("devices", report.devices)
        + "<h2>New source addresses</h2>"
        + _events_table("new-addresses", report.new_addresses)
        + "<h2>New devices</h2>"
        + _events_table("new-devices", report.new_devices)
        + "<h2>Logins at unusual hours</h2>"
        + f"<p class=note>{escape(str(report.as_json()['unusual_hour_rule']))}</p>"
        + _events_table("unusual-hours", report.unusual_hours)
        + "<h2>Skipped lines</h2>"
        + _skipped(report)
        + "</body></html>\n"
    )
