"""The decision log as syslog messages (RFC 5424), for a SIEM.

Each decision-log record becomes one message::

    <PRI>1 TIMESTAMP HOSTNAME eapkit PROCID MSGID [eapkit@32473 user="..." ...] JSON

- PRI (§6.2.1) is facility * 8 + severity; the facility defaults to authpriv (10), the
  severity follows the record: a reject, lockout or refusal is warning (4), a dropped
  or discarded datagram notice (5), the rest informational (6).
- MSGID (§6.2.7) is the record's ``event``, or ``login`` for a login decision.
- STRUCTURED-DATA (§6.3) carries the fields a SIEM filters on, under the SD-ID
  ``eapkit@32473`` (§7.2.2: NAME@PEN; 32473 is the documentation PEN of RFC 5612, to
  be replaced by an operator's own with ``sd_id``).  PARAM-VALUEs escape ``"``, ``\\``
  and ``]`` (§6.3.3); PARAM-NAMEs keep only the characters §6.3.3 allows.
- MSG (§6.4) is the whole record as JSON, UTF-8 with the BOM (§6.4).
- Over UDP (RFC 5426 §3.2) a message is at most ``max_length`` octets (2048 by
  default, what §3.2 says receivers SHOULD take): MSG is cut first, at a UTF-8
  boundary; the header and structured data are never cut.

No secret is ever in a decision-log record, so none is in a message either.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from eapkit.errors import ConfigError

__all__ = ["AUTHPRIV", "SD_ID", "SyslogSender", "format_message", "severity"]

AUTHPRIV = 10  # RFC 5424 §6.2.1 table 1: security/authorization messages
SD_ID = "eapkit@32473"
BOM = "\ufeff"
NILVALUE = "-"

# The record fields copied into structured data, in this order.
SD_FIELDS = (
    "event",
    "result",
    "reason",
    "user",
    "client",
    "method",
    "inner_method",
    "transport",
    "radius_version",
    "calling_station_id",
    "by",
    "id",
    "login_id",
)


def severity(record: Mapping[str, Any]) -> int:
    """RFC 5424 §6.2.1 severity for a record: 4 warning, 5 notice, 6 informational."""
    event = str(record.get("event", ""))
    result = str(record.get("result", ""))
    if result == "reject" or "locked_out" in event or event.endswith("_refused"):
        return 4
    if result == "dropped" or event in ("dropped", "discarded"):
        return 5
    return 6


def _printusascii(text: str, limit: int) -> str:
    """§6: HOSTNAME, APP-NAME, PROCID, MSGID are 1*N PRINTUSASCII (33-126)."""
    kept = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return kept or NILVALUE


def _param_name(name: str) -> str:
    """§6.3.3 SD-NAME: PRINTUSASCII except '=', SP, ']', '"', at most 32."""
    return "".join(c for c in name if 33 <= ord(c) <= 126 and c not in '=]"')[:32]


# C0, DEL, C1 and the Unicode line/paragraph separators: a receiver that writes
# messages to a file one per line would let a user name with a newline start a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _param_value(value: object) -> str:
    """§6.3.3: '"', '\\' and ']' MUST be escaped with a backslash; control characters
    are written as the six characters ``\\u000a`` (the exact value is in the MSG's
    JSON)."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _timestamp(t: float) -> str:
    """§6.2.3: RFC 3339 in UTC with at most 6 fractional digits."""
    whole = int(t)
    micro = round((t - whole) * 1_000_000)
    if micro == 1_000_000:
        whole, micro = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micro:06d}Z"


def format_message(
    record: Mapping[str, Any],
    *,
    hostname: str = NILVALUE,
    procid: str = NILVALUE,
    facility: int = AUTHPRIV,
    sd_id: str = SD_ID,
    max_length: int = 2048,
) -> bytes:
    """One RFC 5424 message for ``record`` (a decision-log line), at most
    ``max_length`` octets; only MSG is shortened to fit."""
    if not 0 <= facility <= 23:
        raise ConfigError(f"syslog facility must be 0..23, not {facility}")
    pri = facility * 8 + severity(record)
    t = record.get("time")
    stamp = _timestamp(float(t)) if isinstance(t, (int, float)) else NILVALUE
    msgid = str(record.get("event") or "login")
    header = (
        f"<{pri}>1 {stamp} {_printusascii(hostname, 255)} eapkit "
        f"{_printusascii(procid, 128)} {_printusascii(msgid, 32)} "
    )
    params = []
    for key in SD_FIELDS:
        value = record.get(key)
        if value not in (None, ""):
            params.append(f'{_param_name(key)}="{_param_value(value)}"')
    sd = f"[{_printusascii(sd_id, 32)}{''.join(' ' + p for p in params)}]"
    head = (header + sd).encode("utf-8")
    body = (" " + BOM + json.dumps(dict(record), separators=(",", ":"))).encode("utf-8")
    room = max_length - len(head)
    if room < len(body):
        body = body[: max(room, 0)].decode("utf-8", "ignore").encode("utf-8")
        if len(body) <= len(BOM.encode()) + 1:  # nothing of the MSG left: omit it
            body = b""
    return head + body


class SyslogSender:
    """Sends decision-log records to ``udp://HOST:PORT`` (RFC 5426) or
    ``unix:/path`` (a datagram socket such as /dev/log).  A send that fails is
    counted, never raised: syslog is a copy, the decision log file stays the record."""

    def __init__(self, target: str, *, facility: int = AUTHPRIV, sd_id: str = SD_ID) -> None:
        self.target = target
        self.facility = facility
        self.sd_id = sd_id
        self.failures = 0
        self._hostname = socket.gethostname()
        url = urlsplit(target)
        if url.scheme == "udp":
            if not url.hostname or url.port is None:
                raise ConfigError(f"syslog target {target!r}: use udp://HOST:PORT")
            family = socket.AF_INET6 if ":" in url.hostname else socket.AF_INET
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
            self._addr: Any = (url.hostname, url.port)
        elif url.scheme == "unix" and (url.path or url.netloc):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._addr = url.path or url.netloc
        else:
            raise ConfigError(f"syslog target {target!r}: use udp://HOST:PORT or unix:/PATH")
        self._sock.setblocking(False)

    def send(self, record: Mapping[str, Any]) -> None:
        data = format_message(
            record,
            hostname=self._hostname,
            procid=str(os.getpid()),  # a worker's own, after fork
            facility=self.facility,
            sd_id=self.sd_id,
        )
        try:
            self._sock.sendto(data, self._addr)
        except OSError:
            self.failures += 1

    def close(self) -> None:
        self._sock.close()
