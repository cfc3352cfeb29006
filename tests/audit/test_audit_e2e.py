"""``eapkit audit`` end to end: decisions written by a running ``eapkit serve``, a week
of history, foreign lines, the text, JSON and HTML reports, and the HTML page looked at
in a real browser (headless Chromium: a screenshot and the DOM it rendered)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageStat

from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import new_request_authenticator
from tests.conftest import require_tool
from tests.security.serving import SECRET, Serve

DAY = 86400.0


def pap_from(s: Serve, user: str, password: str, station: str) -> int:
    authenticator = new_request_authenticator()
    hidden = hide_password(password.encode(), SECRET.encode(), authenticator)
    attrs = [
        (Attr.USER_NAME, user.encode()),
        (Attr.USER_PASSWORD, hidden),
        (Attr.CALLING_STATION_ID, station.encode()),
    ]
    return int(s.access(attrs, authenticator).code)


def history(now: float) -> list[dict[str, Any]]:
    """A month of alice logging in from one address, always twelve hours away from the
    time of day the test runs (so the served logins "now" are at an unusual hour for
    her, whenever the test runs), and bob failing now and then."""
    base = now - now % DAY
    out: list[dict[str, Any]] = []
    for d in range(30, 0, -1):
        t = now - d * DAY + 12 * 3600  # d = 1..7 fall inside a 7-day window
        out.append(
            {
                "time": t,
                "client": "gw-a",
                "user": "alice",
                "method": "pap",
                "result": "accept",
                "reason": "ok",
                "calling_station_id": "198.51.100.7",
            }
        )
        if d % 3 == 0:
            out.append(
                {
                    "time": t + 60,
                    "client": "gw-b",
                    "user": "bob",
                    "method": "EAP-TTLS",
                    "result": "reject",
                    "reason": "bad_password",
                }
            )
    out.append(
        {
            "time": base - 2 * DAY,
            "event": "bypass_issued",
            "user": "bob",
            "by": "ann",
            "reason": "phone lost",
            "id": "bp-1",
        }
    )
    out.append(
        {
            "time": base - 2 * DAY + 300,
            "event": "bypass_used",
            "user": "bob",
            "by": "ann",
            "id": "bp-1",
        }
    )
    out.append(
        {"time": base - DAY, "event": "reset_requested", "user": "carol", "by": "ann", "id": "rs-1"}
    )
    # ext-auth's device checks: alice's laptop for weeks, her new phone this week
    for t, device, fp in (
        (now - 20 * DAY, "alice-laptop", "aa" * 32),
        (now - DAY, "alice-phone", "bb" * 32),
    ):
        out.append(
            {
                "time": t,
                "event": "device_allowed",
                "user": "alice",
                "device": device,
                "fingerprint": fp,
                "reason": "allowed",
            }
        )
    out.append(
        {
            "time": base - DAY + 600,
            "event": "reset_approved",
            "user": "carol",
            "by": "ben",
            "id": "rs-1",
        }
    )
    return out


def eapkit(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eapkit", *argv], capture_output=True, text=True, check=False
    )


def test_audit_of_a_running_servers_log(tmp_path: Path) -> None:
    with Serve(tmp_path / "serve", users=(("alice", "wonderland", "none"),)) as s:
        assert pap_from(s, "alice", "wonderland", "203.0.113.9") == 2  # a new address
        assert pap_from(s, "alice", "wrong", "203.0.113.9") == 3
        assert pap_from(s, "mallory", "x", "192.0.2.66") == 3
        served = s.decisions()
    assert [d.get("calling_station_id") for d in served if "result" in d] == [
        "203.0.113.9",
        "203.0.113.9",
        "192.0.2.66",
    ]
    now = time.time()
    log = tmp_path / "decisions.log"
    lines = [json.dumps(r) for r in history(now)] + [json.dumps(r) for r in served]
    lines.insert(3, '{"time": 17960, "user": "trunc')  # a line cut by a crash
    lines.insert(5, "Dec  2 09:00:00 gw charon: 12[IKE] foreign line")
    log.write_text("\n".join(lines) + "\n")

    text = eapkit("audit", str(log), "--since", "7d")
    assert text.returncode == 0, text.stderr
    assert "skipped lines: 2 (not_json 1, truncated 1)" in text.stdout

    out = eapkit("audit", str(log), "--since", "7d", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["by_user"]["alice"] == {"accept": 8, "reject": 1}  # 7 of history, 1 served
    assert report["by_user"]["mallory"] == {"reject": 1}
    assert report["failure_reasons"]["unknown_user"] == 1
    assert [(e["user"], e["address"]) for e in report["new_addresses"]] == [
        ("alice", "203.0.113.9")
    ]
    assert [(e["user"], e["device"]) for e in report["new_devices"]] == [("alice", "alice-phone")]
    unusual = [(e["user"], e["hour"]) for e in report["unusual_hours"]]
    assert unusual == [("alice", time.gmtime(served[0]["time"]).tm_hour)]  # 23 logins before
    assert [e["event"] for e in report["bypass"]] == ["bypass_issued", "bypass_used"]
    assert [(e["event"], e["by"]) for e in report["resets"]] == [
        ("reset_requested", "ann"),
        ("reset_approved", "ben"),
    ]

    html = tmp_path / "report.html"
    assert eapkit("audit", str(log), "--since", "14d", "--html", str(html)).returncode == 0
    look_in_a_browser(html, tmp_path, report_logins=eapkit_logins(log, "14d"))


def eapkit_logins(log: Path, since: str) -> int:
    out = eapkit("audit", str(log), "--since", since, "--json")
    return int(json.loads(out.stdout)["logins"])


def chromium(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    binary = require_tool("chromium")["chromium"]
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def look_in_a_browser(html: Path, tmp_path: Path, report_logins: int) -> None:
    dom = chromium(tmp_path, "--dump-dom", html.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f'id="tile-logins">logins<b>{report_logins}</b>' in dom.stdout
    for chart in ("chart-days", "chart-reasons", "chart-clients", "chart-hours"):
        assert f'id="{chart}"' in dom.stdout
    _, found, rest = dom.stdout.partition('<table id="new-devices">')
    new_devices = rest.split("</table>", 1)[0]
    assert found, "no table of new devices"
    assert "<td>alice-phone</td>" in new_devices and "alice-laptop" not in new_devices
    shot = Path(os.environ.get("EAPKIT_AUDIT_SCREENSHOT", tmp_path / "report.png"))
    taken = chromium(tmp_path, f"--screenshot={shot}", "--window-size=900,2600", html.as_uri())
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (900, 2600)
        stat = ImageStat.Stat(image.convert("L"))
        assert stat.stddev[0] > 10, "the screenshot is blank"
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
        rgb = {c for _, c in colours if isinstance(c, tuple)}
        # the accepted (green) and rejected (red) bars were drawn
        assert any(g > 100 and r < 80 and b < 80 for r, g, b in rgb)
        assert any(r > 170 and g < 70 and b < 70 for r, g, b in rgb)
