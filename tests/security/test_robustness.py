"""Every request ends in a reply or a logged drop, never a traceback (issue 15), against
a running ``eapkit serve`` (real sockets on loopback):

- Proxy-State attributes that push the reply over 4,096 octets: the request is dropped
  (``reply_too_large``, as FreeRADIUS refuses to encode such a reply), the decision log
  never says ``accept``, a retransmission runs nothing again;
- the store (Redis) down mid-login: an Access-Reject ``store_unavailable``;
- a State from one NAS named by another: ``unknown_state`` (EAP and PAP challenge);
- datagrams from an unknown address: one summary log line, not one per datagram.
"""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from eapkit.credentials import CHALLENGE, Verdict
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import MAX_PACKET_SIZE, Code, Packet, encode_request
from eapkit.radius.pap import PapAccess
from eapkit.verify.otp import hotp
from tests.conftest import require_tool
from tests.security.server import EAPKIT, SECRET_A, SECRET_B, Nas, Server, short_or_long


def _padded_pap(nas: Nas, user: str, password: str) -> bytes:
    """A PAP request padded with Proxy-State to exactly 4,096 octets: its reply
    (Class, Reply-Message, Message-Authenticator) is longer."""
    from eapkit.radius.hiding import hide_password

    authenticator = os.urandom(16)
    attrs = [
        (Attr.USER_NAME, user.encode()),
        (Attr.USER_PASSWORD, hide_password(password.encode(), nas.secret, authenticator)),
    ]
    ident = nas.next_identifier()

    def size(extra: list[tuple[int, bytes]]) -> int:
        return len(encode_request(Code.ACCESS_REQUEST, ident, attrs + extra, nas.secret))

    proxy: list[tuple[int, bytes]] = []
    while size(proxy) + 255 <= MAX_PACKET_SIZE:
        proxy.append((Attr.PROXY_STATE, bytes([len(proxy)]) * 253))
    rest = MAX_PACKET_SIZE - size(proxy) - 2
    if rest > 0:
        proxy.append((Attr.PROXY_STATE, b"z" * rest))
    data = encode_request(
        Code.ACCESS_REQUEST, ident, attrs + proxy, nas.secret, authenticator=authenticator
    )
    assert len(data) == MAX_PACKET_SIZE
    return data


def test_oversized_proxy_state_is_a_logged_drop_not_an_accept(tmp_path: Path) -> None:
    with Server(tmp_path) as srv, Nas(srv, "127.0.0.1", SECRET_A) as nas:
        request = _padded_pap(nas, "alice", "wonderland")
        nas.send(request)
        assert nas.receive(timeout=1.5) is None  # nothing sent: it would exceed 4096
        nas.send(request)  # the NAS retransmits: nothing runs again
        assert nas.receive(timeout=1.0) is None
        # the server still answers a normal request
        ok = nas.exchange([])  # no credentials: a Reject, but an answer
        assert ok is not None
        reply = _ask(nas, nas.pap("alice", "wonderland"))
        assert reply is not None and reply.code == Code.ACCESS_ACCEPT
        lines = [d for d in srv.decisions() if d.get("user") == "alice"]
        assert [d["result"] for d in lines] == ["dropped", "accept"], lines
        assert lines[0]["reason"] == "reply_too_large"
        assert "Traceback" not in srv.output()
        assert "reply_too_large" in srv.output()


def _ask(nas: Nas, data: bytes, timeout: float = 3.0) -> Packet | None:
    nas.send(data)
    return nas.receive(timeout)


def test_a_state_from_another_nas_is_refused(tmp_path: Path) -> None:
    with (
        Server(tmp_path) as srv,
        Nas(srv, "127.0.0.1", SECRET_A) as nas_a,
        Nas(srv, "127.0.0.2", SECRET_B) as nas_b,
    ):
        challenge = _ask(nas_a, nas_a.identity("alice"))
        assert challenge is not None and challenge.code == Code.ACCESS_CHALLENGE
        state = challenge.get(Attr.STATE)
        eap = challenge.eap_message()
        assert state is not None and eap is not None
        # nas-b (its own secret, a valid request) names nas-a's conversation
        nak = bytes([2, eap[1], 0, 6, 3, 6])  # a Legacy Nak asking for GTC
        stolen = nas_b.request(
            [(Attr.EAP_MESSAGE, nak), (Attr.STATE, state), (Attr.USER_NAME, b"alice")]
        )
        refused = _ask(nas_b, stolen)
        assert refused is not None and refused.code == Code.ACCESS_REJECT
        last = srv.decisions()[-1]
        assert last["client"] == "nas-b" and last["reason"] == "unknown_state"
        # nas-a's conversation goes on undisturbed
        own = nas_a.request(
            [(Attr.EAP_MESSAGE, nak), (Attr.STATE, state), (Attr.USER_NAME, b"alice")]
        )
        going_on = _ask(nas_a, own)
        assert going_on is not None and going_on.code == Code.ACCESS_CHALLENGE


def test_a_pap_challenge_state_is_bound_to_its_nas() -> None:
    """The PAP challenge (RFC 2865 §4.4) too: nas-b cannot answer nas-a's challenge."""

    def first(user: str, password: str, now: float) -> Verdict:
        return Verdict(False, CHALLENGE, user=user)

    def second(user: str, code: str, now: float) -> Verdict:
        return Verdict(code == "123456", "ok" if code == "123456" else "bad_code", user=user)

    from eapkit.radius.hiding import hide_password

    pap = PapAccess(first, code_check=second)

    def request(secret: bytes, password: str, state: bytes | None) -> Packet:
        from eapkit.radius.packet import decode

        auth = os.urandom(16)
        attrs = [
            (Attr.USER_NAME, b"alice"),
            (Attr.USER_PASSWORD, hide_password(password.encode(), secret, auth)),
        ]
        if state is not None:
            attrs.append((Attr.STATE, state))
        return decode(encode_request(Code.ACCESS_REQUEST, 1, attrs, secret, authenticator=auth))

    a, b = SECRET_A.encode(), SECRET_B.encode()
    challenge = pap.handle(request(a, "wonderland", None), a, "nas-a", 1.0)
    assert challenge is not None and challenge.code == Code.ACCESS_CHALLENGE
    state = dict(challenge.attributes)[Attr.STATE]
    stolen = pap.handle(request(b, "123456", state), b, "nas-b", 2.0)
    assert stolen is not None and stolen.decision is not None
    assert stolen.decision.reason == "unknown_state"
    own = pap.handle(request(a, "123456", state), a, "nas-a", 3.0)
    assert own is not None and own.code == Code.ACCESS_ACCEPT


def test_unknown_client_flood_writes_one_summary_line(tmp_path: Path) -> None:
    n = short_or_long(300, 5000)
    with Server(tmp_path) as srv:
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.3", 0))
        data = encode_request(Code.ACCESS_REQUEST, 1, [(Attr.USER_NAME, b"x")], b"guess")
        for _ in range(n):
            stranger.sendto(data, ("127.0.0.1", srv.port))
        stranger.close()
        # the server still answers its clients (a burst may overflow the socket's
        # buffer in the kernel: the NAS retransmits, as RFC 2865 §2.4 expects)
        with Nas(srv, "127.0.0.1", SECRET_A) as nas:
            request = nas.pap("alice", "wonderland")
            replies = (_ask(nas, request, timeout=1.0) for _ in range(5))
            reply = next((r for r in replies if r is not None), None)
            assert reply is not None and reply.code == Code.ACCESS_ACCEPT
        log_lines = [x for x in srv.output().splitlines() if "127.0.0.3" in x]
        decisions = [d for d in srv.decisions() if d.get("client") == "127.0.0.3"]
        assert 1 <= len(log_lines) <= 2, log_lines[:5]
        assert 1 <= len(decisions) <= 2
        assert re.search(r"dropped \d+ datagram", log_lines[0])


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    from tests.conftest import free_tcp_port
    from tests.store.redis_server import _ping

    exe = require_tool("redis-server")["redis-server"]
    port = free_tcp_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=(workdir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    deadline = time.monotonic() + 10
    while not _ping(port):
        assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return proc, port


def test_store_down_mid_login_is_a_reject_store_unavailable(tmp_path: Path) -> None:
    redis, port = _start_redis(tmp_path)
    try:
        config = f'store = "redis://127.0.0.1:{port}/0"\n'
        srv = Server(tmp_path / "serve", config=config)
        toml = srv.workdir / "serve.toml"
        with srv:
            out = subprocess.run(
                [*EAPKIT, "enroll", "totp", "alice", "--no-terminal", "--config", str(toml)],
                capture_output=True,
                text=True,
                check=True,
                cwd=srv.workdir,
            )
            found = re.search(r"secret=([A-Z2-7]+)", out.stdout)
            assert found is not None
            key = base64.b32decode(found.group(1) + "=" * (-len(found.group(1)) % 8))
            with Nas(srv, "127.0.0.1", SECRET_A) as nas:
                code = hotp(key, int(time.time()) // 30)
                ok = _ask(nas, nas.pap("alice", "wonderland" + code))
                assert ok is not None and ok.code == Code.ACCESS_ACCEPT
                os.kill(redis.pid, signal.SIGKILL)  # the store goes away
                redis.wait(5)
                # an answer ending in 8+ digits makes the server ask the store how many
                # digits alice's TOTP has, before any code check (the case)
                refused = _ask(nas, nas.pap("alice", "wonderland12345678"), timeout=5.0)
                assert refused is not None and refused.code == Code.ACCESS_REJECT
                # an EAP round with the store down ends the same way, never silent
                eap = _ask(nas, nas.identity("alice"), timeout=5.0)
                assert eap is not None
            results = [(d["result"], d["reason"]) for d in srv.decisions() if "result" in d]
            assert results[-1] == ("reject", "store_unavailable"), results
            assert "Traceback" not in srv.output()
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait(5)


def test_unknown_client_summaries_stay_bounded_under_spoofed_sources() -> None:
    """Many spoofed source addresses: the per-address summary table stays bounded."""
    from eapkit.radius.clients import Client, ClientTable
    from eapkit.radius.core import DecisionLog, RadiusCore

    log = io.StringIO()
    core = RadiusCore(
        ClientTable([Client.of("127.0.0.1/32", "s")]), None, decisions=DecisionLog(log)
    )
    for i in range(10_000):
        core.receive(b"x", (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1812), 1.0)
    assert len(core._unknown) <= 4096
    assert core.stats["unknown_client"] == 10_000
