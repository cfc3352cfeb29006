"""``eapkit serve`` as a real process for the availability tests, and a NAS that talks
to it over loopback UDP from a source address of its choice (127.0.0.x), so two NASes
with different secrets can be told apart by the server (RFC 2865 §3)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import Attribute, Code, Packet, decode, encode_request
from tests.conftest import free_udp_port
from tests.interop.tools import Daemon

EAPKIT = (sys.executable, "-m", "eapkit")
SECRET_A = "secret-of-nas-a"  # 127.0.0.1
SECRET_B = "secret-of-nas-b"  # 127.0.0.2


def short_or_long(short: int, long: int) -> int:
    """``long`` when EAPKIT_LONG_SECURITY=1 is set, else ``short`` (the default, seconds)."""
    return long if os.environ.get("EAPKIT_LONG_SECURITY") == "1" else short


def rss_of(pid: int) -> int:
    """Resident set of process ``pid`` in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Server:
    """``eapkit serve`` with two NAS entries: nas-a (127.0.0.1) and nas-b
    (127.0.0.2), each with its own secret; users added before it starts."""

    workdir: Path
    users: tuple[tuple[str, str], ...] = (("alice", "wonderland"),)
    config: str = ""  # more TOML, at the top level
    port: int = 0
    daemon: Daemon | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.daemon is not None
        return self.daemon.pid

    def output(self) -> str:
        assert self.daemon is not None
        return self.daemon.output()

    def __enter__(self) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        db = self.workdir / "eapkit.db"
        for name, password in self.users:
            subprocess.run(
                [*EAPKIT, "user", "add", name, "--password", password, "--db", str(db)],
                check=True,
                capture_output=True,
            )
        self.port = free_udp_port()
        toml = self.workdir / "serve.toml"
        toml.write_text(
            f'listen = "127.0.0.1:{self.port}"\n'
            f'db = "{db}"\nlog = "{self.workdir / "decisions.log"}"\n'
            f"{self.config}\n"
            f'[[clients]]\naddress = "127.0.0.1/32"\nsecret = "{SECRET_A}"\nname = "nas-a"\n'
            f'[[clients]]\naddress = "127.0.0.2/32"\nsecret = "{SECRET_B}"\nname = "nas-b"\n'
        )
        self.daemon = Daemon(
            [sys.executable, "-m", "eapkit", "serve", "--config", str(toml)],
            self.workdir / "serve.log",
            ready=r"listening on",
            cwd=self.workdir,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def decisions(self) -> list[dict[str, object]]:
        import json

        path = self.workdir / "decisions.log"
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


class Nas:
    """A NAS on ``source`` (127.0.0.1 or 127.0.0.2) with its shared secret."""

    def __init__(self, server: Server, source: str, secret: str) -> None:
        self.server = ("127.0.0.1", server.port)
        self.secret = secret.encode()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(3.0)
        self._identifier = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Nas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_identifier(self) -> int:
        self._identifier = (self._identifier + 1) % 256
        return self._identifier

    def request(self, attributes: list[Attribute], identifier: int | None = None) -> bytes:
        ident = self.next_identifier() if identifier is None else identifier
        return encode_request(Code.ACCESS_REQUEST, ident, attributes, self.secret)

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def receive(self, timeout: float = 3.0) -> Packet | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(8192)
        except TimeoutError:
            return None
        return decode(data)

    def exchange(self, attributes: list[Attribute], timeout: float = 3.0) -> Packet | None:
        self.send(self.request(attributes))
        return self.receive(timeout)

    def identity(self, user: str, extra: list[Attribute] | None = None) -> bytes:
        """An Access-Request carrying EAP-Response/Identity (RFC 3579 §2.1)."""
        eap = Identity(EapCode.RESPONSE, 1, user.encode()).encode()
        return self.request(
            [(Attr.USER_NAME, user.encode()), (Attr.EAP_MESSAGE, eap)] + (extra or [])
        )

    def pap(self, user: str, password: str, state: bytes | None = None) -> bytes:
        """A PAP Access-Request (RFC 2865 §5.2), with ``state`` for a challenge's answer."""
        authenticator = os.urandom(16)
        attrs: list[Attribute] = [
            (Attr.USER_NAME, user.encode()),
            (Attr.USER_PASSWORD, hide_password(password.encode(), self.secret, authenticator)),
        ]
        if state is not None:
            attrs.append((Attr.STATE, state))
        return encode_request(
            Code.ACCESS_REQUEST,
            self.next_identifier(),
            attrs,
            self.secret,
            authenticator=authenticator,
        )
