"""``eapkit serve`` as a real process for the security tests: its own directory,
config file, users and decision log; PAP over real UDP from a chosen source address."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eapkit.pki import PkiFiles
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import (
    Attribute,
    Code,
    Packet,
    decode,
    encode_request,
    new_request_authenticator,
)
from tests.conftest import free_udp_port
from tests.interop.tools import Daemon

SECRET = "security-secret"

CLIENTS = f"""
[[clients]]
address = "127.0.0.1/32"
secret = "{SECRET}"
name = "gw-a"

[[clients]]
address = "127.0.0.2/32"
secret = "{SECRET}"
name = "gw-b"
"""


@dataclass
class Serve:
    """``python -m eapkit serve --config workdir/serve.toml``, users added first as
    (name, password, second_factor); stopped by pid."""

    workdir: Path
    config: str = ""
    users: tuple[tuple[str, str, str], ...] = ()
    port: int = 0
    daemon: Daemon | None = field(default=None, repr=False)

    @property
    def db(self) -> Path:
        return self.workdir / "eapkit.db"

    @property
    def pki(self) -> PkiFiles:
        return PkiFiles(self.workdir / "eapkit-pki", "alice")

    def eapkit(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eapkit", *argv, "--db", str(self.db)],
            check=True,
            capture_output=True,
            text=True,
        )

    def __enter__(self) -> Serve:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, password, second in self.users:
            self.eapkit("user", "add", name, "--password", password, "--second-factor", second)
        self.port = free_udp_port()
        conf = self.workdir / "serve.toml"
        conf.write_text(
            f'listen = ["127.0.0.1:{self.port}"]\ndb = "eapkit.db"\nlog = "decisions.log"\n'
            + self.config
            + CLIENTS
        )
        argv = [sys.executable, "-m", "eapkit", "serve", "--config", str(conf)]
        self.daemon = Daemon(
            argv, self.workdir / "serve.log", ready="listening on", cwd=self.workdir
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def decisions(self) -> list[dict[str, Any]]:
        path = self.workdir / "decisions.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def pap(self, user: str, password: str, *, source: str = "127.0.0.1") -> Packet:
        """One PAP Access-Request from ``source``; the reply."""
        authenticator = new_request_authenticator()
        hidden = hide_password(password.encode(), SECRET.encode(), authenticator)
        attrs = [(Attr.USER_NAME, user.encode()), (Attr.USER_PASSWORD, hidden)]
        return self.access(attrs, authenticator, source=source)

    def access(
        self, attrs: Sequence[Attribute], authenticator: bytes, *, source: str = "127.0.0.1"
    ) -> Packet:
        """One Access-Request with ``attrs`` from ``source``; the reply."""
        data = encode_request(
            Code.ACCESS_REQUEST,
            1,
            attrs,
            SECRET.encode(),
            authenticator=authenticator,
            message_authenticator=True,
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(10.0)
            sock.sendto(data, ("127.0.0.1", self.port))
            return decode(sock.recv(4096))
