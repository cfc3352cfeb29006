"""TLS session resumption on the RadSec listener (issue 17): TLS 1.2 session IDs and
tickets (RFC 5246 §7.4.1.2, RFC 5077) always, TLS 1.3 tickets (RFC 8446 §4.6.1) with
``tls13_tickets``; a NAS whose certificate was revoked or whose client entry was
removed does not resume its way back in."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from eapkit.pki import crl_pem, make_crl
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import Attribute, Code, decode, encode_request
from eapkit.radius.radsec import RADSEC_SECRET, RadsecClient, ServerContexts
from tests.radius.test_radsec import NOW, Pki, Server, _counted, _recv, gw1, pki, running

__all__ = ["pki"]  # the fixture, imported for its name

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


def _pap(
    server: Server, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[int, ssl.SSLSession | None, bool]:
    """One PAP login on a new connection (resuming ``session`` if given): the reply's
    code, the session to resume next time, whether this one was resumed.  A connection
    the server closes (during or after the handshake) raises ConnectionError or
    ssl.SSLError."""
    auth = bytes(range(16))
    attrs: list[Attribute] = [
        (Attr.USER_NAME, b"alice"),
        (Attr.USER_PASSWORD, hide_password(b"wonderland", RADSEC_SECRET, auth)),
    ]
    request = encode_request(
        Code.ACCESS_REQUEST,
        1,
        attrs,
        RADSEC_SECRET,
        authenticator=auth,
        message_authenticator=False,
    )
    with (
        socket.create_connection(server.addr, timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="radius.test", session=session) as tls,
    ):
        tls.sendall(request)
        head = _recv(tls, 4)
        reply = decode(head + _recv(tls, int.from_bytes(head[2:4], "big") - 4))
        return reply.code, tls.session, bool(tls.session_reused)


@pytest.mark.parametrize(
    ("tls_max", "tickets", "resumes"),
    [(TLS12, False, True), (TLS13, False, False), (TLS13, True, True)],
    ids=["tls12", "tls13-default", "tls13-tickets"],
)
def test_a_nas_resumes_its_session(
    tmp_path: Path, pki: Pki, tls_max: ssl.TLSVersion, tickets: bool, resumes: bool
) -> None:
    with running(tmp_path, pki, tls13_tickets=tickets) as server:
        ctx = server.nas_context(gw1(pki), "gw1", tls_max)
        code, session, reused = _pap(server, ctx)
        assert code == Code.ACCESS_ACCEPT and not reused
        code, _, reused = _pap(server, ctx, session)
        assert code == Code.ACCESS_ACCEPT
        assert reused is resumes
        assert server.core.stats.get("radsec_resumed", 0) == int(resumes)
    assert {d["client"] for d in server.decisions() if "result" in d} == {"gw1"}


def _refused(server: Server, ctx: ssl.SSLContext, session: ssl.SSLSession | None) -> bool:
    try:
        _pap(server, ctx, session)
    except (ConnectionError, ssl.SSLError, TimeoutError):
        return True
    return False


@pytest.mark.parametrize("tls_max", [TLS12, TLS13])
def test_a_revoked_nas_does_not_resume(tmp_path: Path, pki: Pki, tls_max: ssl.TLSVersion) -> None:
    """A new CRL means a new context: the session's ticket key and cache are gone, the
    handshake is a full one, and the revoked certificate is refused."""
    revoked = gw1(pki)
    with running(tmp_path, pki, tls13_tickets=True) as server:
        ctx = server.nas_context(revoked, "soon-revoked", tls_max)
        code, session, _ = _pap(server, ctx)
        assert code == Code.ACCESS_ACCEPT and session is not None
        server.crl.write_bytes(crl_pem(make_crl(pki.nas_ca, [revoked.serial], now=NOW)))
        assert _refused(server, ctx, session)
        assert _counted(server, "radsec_certificate_refused")
        assert server.core.stats.get("radsec_resumed", 0) == 0


class Entries:
    """A ``ClientSource`` the test edits."""

    def __init__(self, entries: Sequence[RadsecClient]) -> None:
        self.generation = 0
        self.clients: list[RadsecClient] = list(entries)

    def poll(self) -> None:
        pass

    def force(self) -> None:
        pass

    def remove(self, name: str) -> None:
        self.clients = [c for c in self.clients if c.name != name]
        self.generation += 1


def test_a_removed_nas_does_not_resume_even_with_the_same_ticket_key(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing an entry rebuilds the context too; with that rebuild disabled here, the
    session does resume, and the listener still matches the session's certificate
    against the entries: ``unknown_client``, closed."""
    monkeypatch.setattr(ServerContexts, "invalidate", lambda self: None)
    ca = pki.ca_file("nas", pki.nas_ca)
    source = Entries([RadsecClient("gw1", ca, san="gw1.vpn.test"), RadsecClient("gw2", ca)])
    with running(tmp_path, pki, clients=source) as server:
        ctx = server.nas_context(gw1(pki), "gw1", TLS12)
        code, session, _ = _pap(server, ctx)
        assert code == Code.ACCESS_ACCEPT
        source.remove("gw1")  # gw2's entry (any certificate of the CA) stays, after gw1
        code, session, reused = _pap(server, ctx, session)
        # gw2 matches any certificate of that CA: the resumed NAS is gw2 now, not gw1
        assert code == Code.ACCESS_ACCEPT and reused
        source.remove("gw2")
        assert _refused(server, ctx, session)
        assert _counted(server, "radsec_unknown_client")
        assert server.core.stats["radsec_resumed"] == 2
    clients = [d["client"] for d in server.decisions() if "result" in d]
    assert clients == ["gw1", "gw2"]


def test_the_ticket_key_rotates(tmp_path: Path, pki: Pki) -> None:
    """After ``session_lifetime`` seconds the context (its ticket key and session cache)
    is new: an older session does not resume."""
    with running(tmp_path, pki, session_lifetime=0.5) as server:
        ctx = server.nas_context(gw1(pki), "gw1", TLS12)
        _, session, _ = _pap(server, ctx)
        _, session, reused = _pap(server, ctx, session)
        assert reused  # within the lifetime
        time.sleep(0.6)
        code, _, reused = _pap(server, ctx, session)
        assert code == Code.ACCESS_ACCEPT and not reused
