"""The server's view of the user directory: a record is read once per request, and
never stale, neither for changes made by another process (``eapkit user ...``: the
next request reads again) nor for changes made through the same object."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path

from eapkit.directory import Directory, LocalDirectory, RequestScoped, User, request_scope
from eapkit.methods.gtc import gtc_peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius.clients import Client
from eapkit.radius.core import RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import (
    Code,
    decode,
    eap_message_attributes,
    encode_request,
    new_request_authenticator,
)
from eapkit.serve import ServeConfig, build_core, open_second_factors
from eapkit.session import PeerSession, Send
from eapkit.verify.otp import OtpCredential, totp
from tests.radius.helpers import datagram

SECRET = b"s3cr3t-shared"
ADDR = ("127.0.0.1", 4000)
OTP_SECRET = bytes(range(20))


class CountingDirectory(LocalDirectory):
    """The SQLite directory, counting its reads of user records."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: list[str] = []

    def get(self, name: str) -> User | None:
        self.reads.append(name)
        return super().get(name)


def test_records_are_reused_within_a_request_then_reread(tmp_path: Path) -> None:
    db = tmp_path / "eapkit.db"
    served = RequestScoped(LocalDirectory(db))
    admin = LocalDirectory(db)  # another process: `eapkit user ...`
    admin.add("alice", "wonderland", iterations=1000)
    with request_scope():
        first = served.get("alice")
        assert first is not None
        admin.delete("alice")
        assert served.get("alice") == first  # within the request: the record read before
    # the next request sees the change
    with request_scope():
        assert served.get("alice") is None
        assert served.check_password("alice", "wonderland", time.time()).reason == "unknown_user"
    admin.add("alice", "wonderland", iterations=1000)
    assert served.get("alice") is not None  # outside a request: always read through


def test_own_changes_are_seen_at_once(tmp_path: Path) -> None:
    served = RequestScoped(LocalDirectory(tmp_path / "eapkit.db"))
    with request_scope():
        assert served.get("bob") is None
        served.add("bob", "pw-one", iterations=1000, second_factor="totp")
        assert served.check_password("bob", "pw-one", 0).ok
        assert served.set_second_factor("bob", "none")
        user = served.get("bob")
        assert user is not None and user.second_factor == "none"
        assert served.delete("bob")
        assert served.get("bob") is None


def _core(tmp_path: Path, methods: list[str]) -> tuple[RadiusCore, CountingDirectory]:
    cfg = ServeConfig(db=tmp_path / "eapkit.db", methods=methods)
    cfg.clients = [Client.of("127.0.0.1/32", SECRET.decode())]
    users = CountingDirectory(cfg.db)
    users.add("tom", "pencil", second_factor="totp", iterations=1000)
    core = build_core(cfg, users, log_stream=io.StringIO())
    open_second_factors(cfg, users).totp.enroll("tom", OtpCredential(OTP_SECRET), time.time() - 60)
    users.reads.clear()
    return core, users


def _request(attrs: Sequence[tuple[int, bytes]], ident: int, authenticator: bytes) -> bytes:
    return encode_request(
        Code.ACCESS_REQUEST,
        ident,
        attrs,
        SECRET,
        authenticator=authenticator,
        message_authenticator=True,
    )


def test_one_pap_totp_login_reads_the_record_once(tmp_path: Path) -> None:
    core, users = _core(tmp_path, ["gtc"])
    authenticator = new_request_authenticator()
    password = ("pencil" + totp(OTP_SECRET, time.time())).encode()
    attrs = [
        (Attr.USER_NAME, b"tom"),
        (Attr.USER_PASSWORD, hide_password(password, SECRET, authenticator)),
    ]
    reply = decode(datagram(core, _request(attrs, 1, authenticator), ADDR, time.time()) or b"")
    assert reply.code == Code.ACCESS_ACCEPT
    assert users.reads == ["tom"]  # 6 before the request scope


def _eap_login(core: RadiusCore, peer: PeerSession) -> int:
    first = peer.receive(Identity(EapCode.REQUEST, 0).encode())
    assert isinstance(first, Send)
    eap, state, ident = first.packet, None, 0
    while True:
        ident += 1
        attrs = [(Attr.USER_NAME, b"tom"), *eap_message_attributes(eap)]
        if state is not None:
            attrs.append((Attr.STATE, state))
        data = _request(attrs, ident, new_request_authenticator())
        reply = decode(datagram(core, data, ADDR, time.time()) or b"")
        if reply.code != Code.ACCESS_CHALLENGE:
            return reply.code
        state = reply.get(Attr.STATE)
        action = peer.receive(reply.eap_message() or b"")
        assert isinstance(action, Send)
        eap = action.packet


def test_one_gtc_login_with_password_and_code_reads_the_record_once(tmp_path: Path) -> None:
    core, users = _core(tmp_path, ["gtc"])
    answer = "pencil" + totp(OTP_SECRET, time.time())
    peer = PeerSession([gtc_peer(lambda _prompt: answer)], "tom")
    assert _eap_login(core, peer) == Code.ACCESS_ACCEPT
    assert users.reads == ["tom"]  # 7 before the request scope


def test_request_scoped_is_a_directory(tmp_path: Path) -> None:
    directory: Directory = RequestScoped(LocalDirectory(tmp_path / "eapkit.db"))
    assert RequestScoped.around(directory) is directory
