"""PEAPv0, both roles against each other ([MS-PEAP], RFC 9427), and every way it can fail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from eapkit.catalog import CATALOG, lookup
from eapkit.credentials import PasswordThenCode, Verdict
from eapkit.eap_tlv import CryptoBinding, Result, Tlv, TlvType, decode_tlvs, encode_tlvs
from eapkit.loopback import converse
from eapkit.methods.base import (
    Authenticator,
    Done,
    Factor,
    MethodFactory,
    Outcome,
    Peer,
    Reply,
    Step,
)
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.methods.peap import (
    PEAP,
    PeapAuthenticator,
    PeapPeer,
    peap_authenticator,
    peap_peer,
)
from eapkit.methods.peap_crypto_binding import compound_keys, compound_mac, peap_prf_plus
from eapkit.packet import Code
from eapkit.session import AuthenticatorSession, PeerSession, SessionConfig
from eapkit.testing import InMemoryPasswords
from eapkit.tlsio import Message, TlsVersion
from tests.methods.test_peap_helpers import (
    OUTER,
    PASSWORDS,
    drive,
    expected_csk,
    expected_tunnel_material,
    inner_authenticators,
    inner_peer,
    logged_authenticator,
    make_authenticator,
    make_peer,
    prf_plus,
    through_tunnel,
    tls_peer,
    tls_server,
)

VERSIONS = [TlsVersion.TLS1_2, TlsVersion.TLS1_3]
INNER = ["mschapv2", "gtc"]


def _vid(v: TlsVersion) -> str:
    return v.label


def _sessions(
    auth: MethodFactory[Authenticator], peer: MethodFactory[Peer]
) -> tuple[AuthenticatorSession, PeerSession]:
    cfg = SessionConfig(max_rounds=200)
    return (
        AuthenticatorSession([auth], config=cfg),
        PeerSession([peer], OUTER, config=cfg),
    )


# -- success, keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize("binding", ["optional", "off"])
def test_both_roles_agree_and_keys_match_an_independent_computation(
    version: TlsVersion, inner: str, binding: str
) -> None:
    logged = logged_authenticator(tls_server(version), inner_authenticators())
    peer = peap_peer(tls_peer(version), [inner_peer(inner)], "alice", crypto_binding=binding)  # type: ignore[arg-type]
    conv = converse(*_sessions(logged.factory, peer))
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert a.success and p.success, (a, p)
    assert a.method == PEAP and p.method == PEAP
    assert a.identity == OUTER and a.user == "alice"  # the inner identity is the user
    assert a.keys is not None and p.keys is not None
    assert a.keys == p.keys
    auth = logged.made[0]
    engine = auth.engine
    assert engine.cipher is not None
    material, session_id = expected_tunnel_material(
        logged.keylog, engine.cipher, engine.is_tls13, engine.server_random
    )
    assert engine.version is version
    assert a.keys.session_id == session_id
    attrs = a.outcome.attributes if a.outcome else {}
    assert attrs["inner_method"] == f"eap-{inner}"
    assert attrs["outer_identity"] == OUTER and attrs["inner_identity"] == "alice"
    if binding == "off":
        assert attrs["crypto_binding"] == "no"
        assert a.keys.msk == material[:64] and a.keys.emsk == material[64:128]
    else:
        assert attrs["crypto_binding"] == "yes"
        inner_result = auth._inner.result  # the ISK is the inner method's MSK
        assert inner_result is not None
        isk = inner_result.keys.msk[:32] if inner_result.keys else bytes(32)
        if inner == "gtc":
            assert isk == bytes(32)
        assert a.keys.msk == expected_csk(material[:60], isk)[:64]
        assert a.keys.emsk == b""
        assert a.keys.msk != material[:64]


@pytest.mark.parametrize("fragment_size", [40, 200])
def test_small_fragments_in_both_directions(fragment_size: int) -> None:
    from eapkit.tlsio import FramingConfig

    framing = FramingConfig(fragment_size=fragment_size, max_rounds=400)
    auth = peap_authenticator(tls_server(framing=framing), inner_authenticators())
    peer = peap_peer(tls_peer(framing=framing), [inner_peer("mschapv2")], "alice")
    conv = converse(*_sessions(auth, peer))
    assert conv.authenticator is not None and conv.authenticator.success
    assert conv.peer is not None and conv.peer.keys == conv.authenticator.keys


def test_peap_prf_plus_matches_a_second_writing() -> None:
    for size in (1, 20, 21, 60, 128):
        assert peap_prf_plus(b"k" * 40, b"seed", size) == prf_plus(b"k" * 40, b"seed", size)


def test_peer_nak_moves_the_server_to_its_next_inner_method() -> None:
    auth = peap_authenticator(tls_server(), inner_authenticators(["mschapv2", "gtc"]))
    peer = peap_peer(tls_peer(), [inner_peer("gtc")], "alice")
    conv = converse(*_sessions(auth, peer))
    assert conv.authenticator is not None and conv.authenticator.success
    assert conv.authenticator.outcome is not None
    assert conv.authenticator.outcome.attributes["inner_method"] == "eap-gtc"


class Codes:
    def __init__(self, good: str) -> None:
        self.good = good

    def __call__(self, user: str, code: str, now: float, /) -> Verdict:
        return Verdict.accept(user) if code == self.good else Verdict.reject("bad_code")


@pytest.mark.parametrize(("code", "reason"), [("123456", "ok"), ("000000", "bad_code")])
def test_second_factor_in_a_second_inner_gtc_round(code: str, reason: str) -> None:
    check = PasswordThenCode(InMemoryPasswords(PASSWORDS), Codes("123456"), lambda u: True)
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return code if "code" in prompt.lower() else "wonderland"

    auth = peap_authenticator(tls_server(), [gtc_authenticator(check)])
    peer = peap_peer(tls_peer(), [gtc_peer(answer)], "alice")
    conv = converse(*_sessions(auth, peer))
    assert conv.authenticator is not None and conv.peer is not None
    assert conv.authenticator.reason == reason
    assert conv.authenticator.success is (reason == "ok")
    assert conv.peer.success is (reason == "ok")
    assert prompts == ["Password: ", "One-time code: "]


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize(
    ("identity", "password", "reason"),
    [("alice", "guess", "bad_password"), ("mallory", "wonderland", "unknown_user")],
)
def test_wrong_password_and_unknown_inner_user(
    version: TlsVersion, inner: str, identity: str, password: str, reason: str
) -> None:
    auth = peap_authenticator(tls_server(version), inner_authenticators([inner]))
    peer = peap_peer(tls_peer(version), [inner_peer(inner, password)], identity)
    conv = converse(*_sessions(auth, peer))
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert not a.success and not p.success
    assert a.keys is None and p.keys is None
    if inner == "gtc":
        assert a.reason == reason
    else:  # MS-CHAPv2 gives an unknown user the same Failure as a wrong password
        assert a.reason in (reason, "authentication_failed", "bad_password")
    assert a.user == identity
    assert conv.transcript[-1][1][0] == Code.FAILURE


def test_inner_nak_of_every_method_fails() -> None:
    auth = peap_authenticator(tls_server(), inner_authenticators(["mschapv2"]))
    peer = peap_peer(tls_peer(), [inner_peer("gtc")], "alice")
    conv = converse(*_sessions(auth, peer))
    assert conv.authenticator is not None and conv.peer is not None
    assert not conv.authenticator.success and not conv.peer.success
    assert conv.authenticator.reason == "peer_refused_methods"


def test_server_binding_required_but_peer_does_not_bind() -> None:
    auth = make_authenticator(tls_server(), inner_authenticators(), crypto_binding="required")
    peer = make_peer(tls_peer(), [inner_peer("mschapv2")], crypto_binding="off")
    run = drive(auth, peer)
    assert isinstance(run.auth_step, Done)
    assert run.auth_step.outcome.reason == "crypto_binding_missing"


def test_peer_binding_required_but_server_does_not_bind() -> None:
    auth = make_authenticator(tls_server(), inner_authenticators(), crypto_binding="off")
    peer = make_peer(tls_peer(), [inner_peer("mschapv2")], crypto_binding="required")
    run = drive(auth, peer)
    assert isinstance(run.peer_step, Done) and not run.peer_step.outcome.success
    assert run.peer_step.outcome.reason == "crypto_binding_missing"
    assert isinstance(run.auth_step, Done) and not run.auth_step.outcome.success


# -- hand-made messages inside the tunnel ----------------------------------------------------------


def _is_extensions(data: bytes) -> bool:
    return len(data) > 4 and data[4] == 33


def _until_phase2(auth: PeapAuthenticator, peer: PeapPeer) -> bytes:
    """Run the handshake; the server's first phase-2 message (the inner Identity Request)."""
    message = auth.start()
    while auth.state != "phase2":
        step = peer.receive(message)
        assert step.type_data is not None
        reply = auth.receive(step.type_data)
        assert isinstance(reply, Reply)
        message = reply.type_data
    return message


def _forge_request(version: TlsVersion, plaintext: bytes) -> Done | Reply | None:
    """The peer's last step when the server's Extensions Request is ``plaintext``."""
    auth = make_authenticator(tls_server(version), inner_authenticators())
    peer = make_peer(tls_peer(version), [inner_peer("mschapv2")])
    real_send = auth._write

    def send(data: bytes) -> Reply | Done:
        return real_send(plaintext if _is_extensions(data) else data)

    auth._write = send  # type: ignore[method-assign]
    return drive(auth, peer).peer_step


def _forge_response(
    version: TlsVersion, plaintext: Callable[[int], bytes], inner: str = "mschapv2"
) -> Done | Reply | None:
    """The server's last step when the peer's Extensions Response is ``plaintext(id)``."""
    auth = make_authenticator(tls_server(version), inner_authenticators())
    peer = make_peer(tls_peer(version), [inner_peer(inner)])

    def answer(identifier: int, success: bool, binding: object, outcome: Outcome) -> Step:
        peer.engine.write(plaintext(identifier))
        return peer._send_last(outcome)

    peer._answer = answer  # type: ignore[method-assign]
    return drive(auth, peer).auth_step


def _request(tlvs: bytes, identifier: int = 9) -> bytes:
    body = bytes([33]) + tlvs
    return bytes([1, identifier]) + (len(body) + 4).to_bytes(2, "big") + body


def _response(tlvs: bytes, identifier: int) -> bytes:
    body = bytes([33]) + tlvs
    return bytes([2, identifier]) + (len(body) + 4).to_bytes(2, "big") + body


RESULT_SUCCESS = Tlv.result(Result.SUCCESS).encode()
RESULT_FAILURE = Tlv.result(Result.FAILURE).encode()


@pytest.mark.parametrize(
    ("tlvs", "reason"),
    [
        (b"\x80\x03\x00\x05\x00", "malformed"),  # TLV runs past the end
        (b"\x80\x03\x00\x01\x01", "malformed"),  # a one-byte Result TLV
        (b"\x80\x03", "malformed"),  # half a TLV header
        (RESULT_SUCCESS + b"\x80\x63\x00\x00", "malformed"),  # unknown mandatory TLV
        (RESULT_SUCCESS + RESULT_SUCCESS, "malformed"),  # two Result TLVs
        (RESULT_SUCCESS + b"\x00\x0c\x00\x02\x00\x00", "malformed"),  # short Crypto-Binding
        (RESULT_FAILURE, "eap_failure"),
        (Tlv.result(7).encode(), "eap_failure"),  # an unknown status is no success
        (
            RESULT_SUCCESS
            + Tlv(
                TlvType.CRYPTO_BINDING,
                CryptoBinding(0, 0, 0, bytes(32), bytes(20)).encode(),
                mandatory=False,
            ).encode(),
            "crypto_binding_failed",
        ),
    ],
)
def test_malformed_or_refusing_extensions_request(tlvs: bytes, reason: str) -> None:
    peer_step = _forge_request(TlsVersion.TLS1_3, _request(tlvs))
    assert isinstance(peer_step, Done)
    assert not peer_step.outcome.success
    assert peer_step.outcome.reason == reason


def test_vendor_and_soh_tlvs_are_skipped() -> None:
    auth = make_authenticator(tls_server(), inner_authenticators(), crypto_binding="off")
    peer = make_peer(tls_peer(), [inner_peer("mschapv2")])
    soh = Tlv(TlvType.VENDOR_SPECIFIC, b"\x00\x00\x01\x37" + b"\x00\x01\x00\x02hi", False)
    original_send = auth._write

    def send(data: bytes) -> Reply | Done:
        if len(data) > 4 and data[0] == 1 and data[4] == 33:
            data = data + soh.encode()
            data = data[:2] + len(data).to_bytes(2, "big") + data[4:]
        return original_send(data)

    auth._write = send  # type: ignore[method-assign]
    run = drive(auth, peer)
    assert isinstance(run.peer_step, Done) and run.peer_step.outcome.success
    assert isinstance(run.auth_step, Done) and run.auth_step.outcome.success


def test_extensions_request_with_only_ignorable_tlvs_is_acknowledged() -> None:
    auth = make_authenticator(tls_server(), inner_authenticators())
    peer = make_peer(tls_peer(), [inner_peer("mschapv2")])
    identity_response = peer.receive(_until_phase2(auth, peer))
    assert isinstance(identity_response, Reply)
    auth.engine.receive(identity_response.type_data)  # keeps the TLS record counters
    soh_only = _request(Tlv(TlvType.VENDOR_SPECIFIC, b"\x00\x00\x01\x37", False).encode(), 77)
    step = peer.receive(through_tunnel(auth.engine, soh_only))
    assert isinstance(step, Reply)
    plain = auth.engine.receive(step.type_data)
    assert isinstance(plain, Message) and plain.data == _response(b"", 77)


def test_soh_request_as_an_expanded_inner_method_is_refused_with_a_nak() -> None:
    """FreeRADIUS's SoH request: Expanded type, Microsoft (311), type 33, header-less."""
    auth = make_authenticator(tls_server(), inner_authenticators())
    peer = make_peer(tls_peer(), [inner_peer("mschapv2")])
    peer.engine.receive(_until_phase2(auth, peer))  # the real Identity Request, unseen
    soh = b"\xfe\x00\x01\x37\x00\x00\x00\x21" + b"\x00\x07\x00\x08\x00\x00\x01\x37\x00\x02\x00\x00"
    step = peer.receive(through_tunnel(auth.engine, soh))
    assert isinstance(step, Reply)
    answer = auth.engine.receive(step.type_data)
    assert isinstance(answer, Message)
    # header-less Expanded Nak (RFC 3748 §5.3.2) offering what the peer has: MS-CHAPv2
    assert answer.data[:8] == b"\xfe\x00\x00\x00\x00\x00\x00\x03"
    assert answer.data[8:] == b"\xfe\x00\x00\x00\x00\x00\x00\x1a"


def test_peer_refuses_success_before_the_inner_method() -> None:
    auth = make_authenticator(tls_server(), inner_authenticators())
    peer = make_peer(tls_peer(), [inner_peer("mschapv2")])
    identity_response = peer.receive(_until_phase2(auth, peer))
    assert isinstance(identity_response, Reply)
    auth.engine.receive(identity_response.type_data)  # keeps the TLS record counters
    done = peer.receive(through_tunnel(auth.engine, _request(RESULT_SUCCESS)))
    assert isinstance(done, Done) and not done.outcome.success
    assert done.outcome.reason == "no_inner_method"
    # and it says so in its own Result TLV
    plain = auth.engine.receive(done.type_data or b"")
    assert isinstance(plain, Message)
    assert plain.data == _response(RESULT_FAILURE, 9)


@pytest.mark.parametrize(
    "response",
    [
        b"\x01",  # header-less where a whole Extensions Response is due
        b"garbage",
        _response(RESULT_FAILURE, 0),  # wrong identifier
    ],
)
def test_server_refuses_a_bad_extensions_response(response: bytes) -> None:
    auth_step = _forge_response(TlsVersion.TLS1_2, lambda _id: response)
    assert isinstance(auth_step, Done) and not auth_step.outcome.success
    assert auth_step.outcome.reason in ("protocol_error", "malformed")


@pytest.mark.parametrize(
    ("tlvs", "reason"),
    [
        (RESULT_FAILURE, "peer_refused_success"),
        (b"", "peer_refused_success"),
        (b"\x80\x03\x00\x09", "malformed"),
        (RESULT_SUCCESS + b"\x80\x44\x00\x00", "malformed"),
        (
            RESULT_SUCCESS
            + Tlv(
                TlvType.CRYPTO_BINDING,
                CryptoBinding(0, 0, 1, bytes(32), bytes(20)).encode(),
                False,
            ).encode(),
            "crypto_binding_failed",
        ),
    ],
)
def test_server_reads_the_peer_result(tlvs: bytes, reason: str) -> None:
    auth_step = _forge_response(
        TlsVersion.TLS1_3, lambda identifier: _response(tlvs, identifier), inner="gtc"
    )
    assert isinstance(auth_step, Done) and not auth_step.outcome.success
    assert auth_step.outcome.reason == reason
    assert auth_step.outcome.identity == "alice"


def test_freeradius_full_header_identity_request_is_understood() -> None:
    auth = make_authenticator(tls_server(), inner_authenticators())
    peer = make_peer(tls_peer(), [inner_peer("mschapv2")])
    peer.engine.receive(_until_phase2(auth, peer))  # the header-less one, unseen by PEAP
    step = peer.receive(through_tunnel(auth.engine, b"\x01\x05\x00\x05\x01"))
    assert isinstance(step, Reply)
    answer = auth.engine.receive(step.type_data)
    assert isinstance(answer, Message) and answer.data == b"\x01alice"  # header-less


# -- the tunnel torn down ----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_peer_closes_the_tunnel_in_phase2(version: TlsVersion) -> None:
    auth = make_authenticator(tls_server(version), inner_authenticators())
    peer = make_peer(tls_peer(version), [inner_peer("mschapv2")])

    def to_auth(n: int, data: bytes) -> bytes:
        if auth.state == "phase2":
            auth.engine.receive(data)  # the real Response, read past by the record layer
            peer.engine.conn.shutdown()
            peer.engine._collect()
            return peer.engine.next_type_data()
        return data

    run = drive(auth, peer, to_auth=to_auth)
    assert isinstance(run.auth_step, Done) and not run.auth_step.outcome.success
    assert run.auth_step.outcome.reason == "close_notify"
    assert run.auth_step.outcome.attributes.get("phase") == "2"


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_garbage_record_in_phase2_ends_both_sides(version: TlsVersion) -> None:
    auth = make_authenticator(tls_server(version), inner_authenticators())
    peer = make_peer(tls_peer(version), [inner_peer("mschapv2")])

    def to_auth(n: int, data: bytes) -> bytes:
        if auth.state == "phase2":
            return b"\x00" + bytes([23, 3, 3, 0, 20]) + bytes(20)
        return data

    run = drive(auth, peer, to_auth=to_auth)
    assert isinstance(run.auth_step, Done) and not run.auth_step.outcome.success
    assert run.auth_step.outcome.reason not in ("ok", "")


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_server_closes_the_tunnel_in_phase2(version: TlsVersion) -> None:
    auth = make_authenticator(tls_server(version), inner_authenticators())
    peer = make_peer(tls_peer(version), [inner_peer("mschapv2")])

    def to_peer(n: int, data: bytes) -> bytes:
        if auth.state == "phase2":
            peer.engine.receive(data)  # the real Request, read past by the record layer
            auth.engine.conn.shutdown()
            auth.engine._collect()
            return auth.engine.next_type_data()
        return data

    run = drive(auth, peer, to_peer=to_peer)
    assert isinstance(run.peer_step, Done) and not run.peer_step.outcome.success
    assert run.peer_step.outcome.reason == "close_notify"


def test_peer_sends_tunnel_data_instead_of_acknowledging_finished() -> None:
    auth = make_authenticator(tls_server(TlsVersion.TLS1_2), inner_authenticators())
    peer = make_peer(tls_peer(TlsVersion.TLS1_2), [inner_peer("mschapv2")])

    def to_auth(n: int, data: bytes) -> bytes:
        if auth.state == "wait_ack":
            return through_tunnel(peer.engine, b"\x01alice")
        return data

    run = drive(auth, peer, to_auth=to_auth)
    assert isinstance(run.auth_step, Done)
    assert run.auth_step.outcome.reason == "protocol_error"


# -- wiring ----------------------------------------------------------------------------------------


def test_catalog_serve_and_probe_names() -> None:
    assert lookup("peap").method == PEAP and lookup(25).name == "peap"
    serve = {e.name for e in CATALOG if e.method == PEAP}
    probe = set(lookup("peap").peer_names())
    assert set(serve) == {"peap"} and set(probe) == {"peap-mschapv2", "peap-gtc"}


def test_probe_builders_make_peap_peers() -> None:
    from eapkit.errors import ConfigError
    from eapkit.probe import ProbeOptions, build_peer_methods

    opts = ProbeOptions(("127.0.0.1", 1812), b"s", "peap-gtc", "alice", password="pw")
    (factory,) = build_peer_methods(opts)
    assert factory.method == PEAP
    with pytest.raises(ConfigError, match="password"):
        build_peer_methods(replace(opts, method="peap-mschapv2", password=None))


def test_factory_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="inner"):
        peap_authenticator(tls_server(), [])
    with pytest.raises(ValueError, match="inner"):
        peap_peer(tls_peer(), [], "alice")
    with pytest.raises(ValueError, match="crypto_binding"):
        peap_peer(tls_peer(), [inner_peer("gtc")], "alice", crypto_binding="maybe")  # type: ignore[arg-type]


def test_compound_mac_covers_the_whole_tlv() -> None:
    ipmk, cmk = compound_keys(bytes(range(60)), bytes(32))
    assert len(ipmk) == 40 and len(cmk) == 20
    base = CryptoBinding(0, 0, 0, bytes(32), bytes(20))
    mac = compound_mac(cmk, base)
    assert compound_mac(cmk, replace(base, compound_mac=mac)) == mac  # MAC field zeroed
    assert compound_mac(cmk, replace(base, nonce=b"\x01" * 32)) != mac
    assert compound_mac(cmk, base, mandatory=True) != mac  # the header is covered
    tlvs = decode_tlvs(encode_tlvs([Tlv(TlvType.CRYPTO_BINDING, base.encode(), False)]))
    assert tlvs[0].value == base.encode()


class _Proving:
    """An inner authenticator whose success says it proved ``factors``."""

    def __init__(self, inner: Authenticator, factors: frozenset[Factor]) -> None:
        self.method = inner.method
        self._inner = inner
        self._factors = factors

    def start(self) -> bytes:
        return self._inner.start()

    def receive(self, type_data: bytes) -> Step:
        step = self._inner.receive(type_data)
        if isinstance(step, Done) and step.outcome.success:
            return replace(step, outcome=replace(step.outcome, factors=self._factors))
        return step


def test_success_carries_the_inner_methods_factors() -> None:
    proved = frozenset({Factor.PASSWORD, Factor.OTP_DEVICE})
    base = inner_authenticators(["mschapv2"])[0]
    proving = MethodFactory(base.method, lambda ctx: _Proving(base(ctx), proved), base.name)
    auth = make_authenticator(tls_server(), [proving])
    run = drive(auth, make_peer(tls_peer(), [inner_peer("mschapv2")]))
    assert isinstance(run.auth_step, Done) and run.auth_step.outcome.success
    assert run.auth_step.outcome.factors == proved
