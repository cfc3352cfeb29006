"""A bridge on a memory store and an in-memory user directory, driven like a browser."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from eapkit.bridge.app import BridgeApp, Request, Response
from eapkit.bridge.config import BridgeConfig
from eapkit.bridge.gate import Bridge
from eapkit.directory import LocalDirectory
from eapkit.store.memory import MemoryStore
from eapkit.testing.soft_authenticator import SoftAuthenticator

ORIGIN = "http://localhost:8812"
PASSWORD = "correct horse"


def make_bridge(timeout: float = 60.0, poll: float = 0.02, **kw: Any) -> Bridge:
    users = LocalDirectory(":memory:")
    users.add("alice", PASSWORD, iterations=1000)
    users.add("bob", PASSWORD, iterations=1000)
    config = BridgeConfig(url=ORIGIN, timeout=timeout, **kw)
    events: list[dict[str, Any]] = []
    bridge = Bridge(config, users, MemoryStore(), audit=events.append, poll=poll)
    bridge.events = events  # type: ignore[attr-defined]
    return bridge


@dataclass
class Browser:
    """What the page's script does, against the app without sockets."""

    app: BridgeApp
    origin: str = ORIGIN
    cookies: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, body: Any = None, now: float = 1000.0) -> Response:
        headers = {"origin": self.origin, "content-type": "application/json"}
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        raw = b"" if body is None else json.dumps(body).encode()
        response = self.app.handle(Request(method, path, headers, raw), now)
        for name, value in response.headers:
            if name == "Set-Cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";")[0]
        return response

    def json(self, method: str, path: str, body: Any = None, now: float = 1000.0) -> Any:
        return json.loads(self.call(method, path, body, now).body)

    def enroll(self, token: str, key: SoftAuthenticator, now: float = 1000.0) -> Response:
        begin = self.json("POST", "/api/enroll/begin", {"token": token}, now)
        credential = key.create(begin["options"], origin=self.origin)
        return self.call(
            "POST", "/api/enroll/finish", {"token": token, "credential": credential}, now
        )

    def sign_in(
        self, key: SoftAuthenticator, user: str | None = None, now: float = 1000.0
    ) -> Response:
        begin = self.json("POST", "/api/signin/begin", {"user": user} if user else {}, now)
        credential = key.get(begin["options"], origin=self.origin)
        return self.call("POST", "/api/signin/finish", {"credential": credential}, now)


def token_of(link: str) -> str:
    return link.split("#", 1)[1]
