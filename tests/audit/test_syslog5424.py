"""The decision log's syslog copy (RFC 5424): the message grammar, escaping, length,
and a real receiver (rsyslog) fed by a running ``eapkit serve``."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.errors import ConfigError
from eapkit.syslog5424 import SD_ID, SyslogSender, format_message, severity
from tests.conftest import free_udp_port, require_tool
from tests.security.serving import Serve

# RFC 5424 §6 ABNF, as a parser: HEADER SP STRUCTURED-DATA [SP MSG].
HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 "
    rb"(?P<ts>-|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d))"
    rb" (?P<host>[\x21-\x7e]{1,255}) (?P<app>[\x21-\x7e]{1,48}) (?P<proc>[\x21-\x7e]{1,128})"
    rb" (?P<msgid>[\x21-\x7e]{1,32}) "
)


CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def parse(message: bytes) -> dict[str, Any]:
    """Split a message per RFC 5424 §6; the SD-PARAM values unescaped (§6.3.3)."""
    m = HEADER.match(message)
    assert m, message[:80]
    rest = message[m.end() :]
    params: dict[str, str] = {}
    assert rest.startswith(b"["), rest[:40]
    i = 1
    sd_id = re.match(rb'[^ \]"=]{1,32}', rest[i:])
    assert sd_id
    i += sd_id.end()
    while rest[i : i + 1] == b" ":
        name = re.match(rb'[^ \]"=]{1,32}', rest[i + 1 :])
        assert name
        i += 1 + name.end()
        assert rest[i : i + 2] == b'="'
        i += 2
        value = bytearray()
        while rest[i : i + 1] != b'"':
            if rest[i : i + 1] == b"\\" and rest[i + 1 : i + 2] in (b'"', b"\\", b"]"):
                i += 1
            assert i < len(rest), "unterminated PARAM-VALUE"
            value += rest[i : i + 1]
            i += 1
        i += 1
        params[name.group().decode()] = value.decode("utf-8")
    assert rest[i : i + 1] == b"]"
    msg = rest[i + 1 :]
    assert msg == b"" or msg.startswith(b" \xef\xbb\xbf")  # SP BOM UTF-8 (§6.4)
    return {
        "pri": int(m["pri"]),
        "ts": m["ts"].decode(),
        "app": m["app"].decode(),
        "msgid": m["msgid"].decode(),
        "sd_id": sd_id.group().decode(),
        "params": params,
        "msg": msg[4:].decode("utf-8") if msg else "",
    }


def test_a_login_line() -> None:
    record = {
        "time": 1796000000.25,
        "client": "gw-a",
        "user": 'ali"ce]\\',
        "method": "pap",
        "result": "reject",
        "reason": "bad_password",
        "calling_station_id": "198.51.100.7",
    }
    m = parse(format_message(record, hostname="radius1", procid="42"))
    assert m["pri"] == 10 * 8 + 4  # authpriv.warning
    assert m["ts"] == "2026-11-30T00:53:20.250000Z"  # date -u -d @1796000000
    assert (m["app"], m["msgid"], m["sd_id"]) == ("eapkit", "login", SD_ID)
    assert m["params"]["user"] == 'ali"ce]\\'
    assert m["params"]["calling_station_id"] == "198.51.100.7"
    assert json.loads(m["msg"]) == record


def test_severities() -> None:
    assert severity({"result": "accept"}) == 6
    assert severity({"event": "otp_locked_out"}) == 4
    assert severity({"event": "device_refused"}) == 4
    assert severity({"event": "dropped"}) == 5


def test_only_msg_is_cut_to_the_length_limit() -> None:
    record = {"time": 1.0, "result": "accept", "user": "u", "detail": "é" * 3000}
    data = format_message(record, max_length=480)
    assert len(data) <= 480
    m = parse(data)
    assert m["params"]["user"] == "u"  # structured data intact
    data.decode("utf-8")  # cut at a character boundary


def test_bad_targets_are_clear_errors() -> None:
    for target in ("tcp://127.0.0.1:514", "udp://127.0.0.1", "unix:", "syslog"):
        with pytest.raises(ConfigError):
            SyslogSender(target)
    with pytest.raises(ConfigError):
        format_message({"time": 1.0}, facility=24)


records = st.dictionaries(
    st.sampled_from(["event", "result", "reason", "user", "client", "method", "by", "id", "n"]),
    st.one_of(st.text(max_size=40), st.integers(), st.none()),
).map(lambda d: {**d, "time": 1796000000.123456})


@given(records, st.integers(min_value=120, max_value=4096), st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_every_message_parses_and_keeps_its_values(
    record: dict[str, Any], limit: int, host: str
) -> None:
    data = format_message(record, hostname=host, max_length=limit)
    m = parse(data)
    assert len(data) <= limit or m["msg"] == ""  # only header + SD may exceed it
    for key, value in m["params"].items():
        original = record[key]
        text = original if isinstance(original, str) else json.dumps(original)
        assert value == CONTROL.sub(lambda c: f"\\u{ord(c.group()):04x}", text)
        assert not CONTROL.search(value)
    if m["msg"] and len(data) < limit - 8:
        assert json.loads(m["msg"]) == record


@pytest.mark.parametrize("sep", ["\n", "\r\n", "\r", "\u2028", "\x85", "\x00"])
def test_a_user_name_cannot_start_a_second_line(sep: str) -> None:
    """A User-Name with a line break (RADIUS allows any octets, RFC 2865 §5.1) must not
    reach a receiver that stores one message per line as two lines."""
    forged = '<38>1 2026-12-02T10:00:00Z gw eapkit - login [eapkit@32473 result="accept"]'
    record = {"event": "login", "result": "reject", "user": f"eve{sep}{forged}", "time": 1.0}
    data = format_message(record)
    text = data.decode("utf-8")
    assert text.splitlines() == [text]  # str.splitlines knows every Unicode line break
    assert b"\x00" not in data
    m = parse(data)
    assert m["params"]["user"].startswith("eve\\u") and json.loads(m["msg"]) == record


def test_sent_over_udp() -> None:
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", port))
        rx.settimeout(5)
        sender = SyslogSender(f"udp://127.0.0.1:{port}", facility=4)
        sender.send({"time": 2.0, "result": "accept", "user": "alice"})
        m = parse(rx.recv(65535))
        sender.close()
    assert m["pri"] == 4 * 8 + 6 and m["params"]["user"] == "alice"


# imuxsock's default parser for a local socket reads the traditional format only
# (it would take "1" of "<86>1 ..." for the tag): a receiver of RFC 5424 over a unix
# socket turns it off, and has the hostname parsed from the message.
RSYSLOG_INPUTS = {
    "udp": """module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{port}")""",
    "unix": """module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" UseSpecialParser="off" ParseHostname="on")""",
}

RSYSLOG_CONF = """
global(workDirectory="{work}")
{input}
template(name="fields" type="string"
  string="%app-name%|%msgid%|%syslogfacility%|%syslogseverity%|%hostname%|%procid%|%structured-data%\\n")
action(type="omfile" file="{out}" template="fields")
"""


@pytest.mark.interop
@pytest.mark.parametrize("transport", ["udp", "unix"])
def test_rsyslog_receives_the_decisions_of_a_running_server(tmp_path: Path, transport: str) -> None:
    """Real software on the other end: rsyslogd (Debian) parses our RFC 5424 lines,
    over UDP (RFC 5426) and over a unix datagram socket (as /dev/log)."""
    rsyslogd = require_tool("rsyslogd")["rsyslogd"]
    port = free_udp_port()
    # sun_path holds 108 bytes; pytest's tmp_path can be longer
    sockdir = Path(tempfile.mkdtemp(prefix="eapkit-syslog-"))
    sock = sockdir / "log.sock"
    out = tmp_path / "received.log"
    work = tmp_path / "rsyslog"
    work.mkdir()
    conf = tmp_path / "rsyslog.conf"
    rsyslog_input = RSYSLOG_INPUTS[transport].format(port=port, socket=sock)
    conf.write_text(RSYSLOG_CONF.format(work=work, input=rsyslog_input, out=out))
    target = f"udp://127.0.0.1:{port}" if transport == "udp" else f"unix:{sock}"
    proc = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while transport == "unix" and not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        config = f'syslog = "{target}"\n'
        with Serve(tmp_path / "serve", config, users=(("alice", "wonderland", "none"),)) as s:
            assert s.pap("alice", "wonderland").code == 2
            assert s.pap("alice", "wrong").code == 3
            deadline = time.monotonic() + 10
            lines: list[str] = []
            while time.monotonic() < deadline:
                lines = out.read_text().splitlines() if out.exists() else []
                if len(lines) >= 2:
                    break
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(sockdir, ignore_errors=True)
    logins = [line.split("|", 6) for line in lines if "|login|" in line]
    assert len(logins) == 2, lines
    (app, msgid, facility, sev, host, procid, sd), (_, _, _, sev2, _, _, sd2) = logins
    assert (app, msgid, facility) == ("eapkit", "login", "10")
    assert (sev, sev2) == ("6", "4")
    assert host == socket.gethostname() and procid.isdigit(), (host, procid)
    assert f"[{SD_ID} " in sd and 'user="alice"' in sd and 'result="accept"' in sd
    assert 'client="gw-a"' in sd and 'reason="bad_password"' in sd2
