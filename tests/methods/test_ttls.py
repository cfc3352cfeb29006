"""EAP-TTLSv0, both roles against each other (RFC 5281, RFC 9427): every inner method
over TLS 1.2 and 1.3, keys against an independent computation, and every failure path."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given
from hypothesis import strategies as st

from eapkit.catalog import lookup
from eapkit.credentials import (
    PasswordAndCode,
    PasswordThenCode,
    ResponseCheck,
    Verdict,
)
from eapkit.diameter import MICROSOFT, Avp, AvpCode, encode_avps
from eapkit.loopback import Conversation
from eapkit.methods.base import (
    Authenticator,
    Done,
    Factor,
    KeyMaterial,
    MethodContext,
    MethodFactory,
    Peer,
    Reply,
    Step,
)
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.methods.ttls import (
    TTLS,
    InnerChap,
    InnerEap,
    InnerMethod,
    InnerMsChapV2,
    InnerPap,
    TtlsAuthenticator,
    TtlsPeer,
    any_realm,
    implicit_challenge,
    pad_password,
    same_realm,
    ttls_authenticator,
    ttls_peer,
    unpad_password,
)
from eapkit.packet import Code, decode
from eapkit.testing import InMemoryPasswords, StaticNtHashes
from eapkit.tlsio import Failed, Fragment, FramingConfig, TlsContext, TlsRole, TlsVersion
from tests.certs import lab, peer_config, run, server_config

VERSIONS = [TlsVersion.TLS1_2, TlsVersion.TLS1_3]
USER = "alice@example.org"
OUTER = "anonymous@example.org"
PASSWORD = "wonderland"
PASSWORDS = {USER: PASSWORD, "bob": "builder"}
NT = StaticNtHashes.from_passwords(PASSWORDS)


def _vid(v: TlsVersion) -> str:
    return v.label


INNERS: dict[str, Callable[[str], InnerMethod]] = {
    "pap": lambda pw: InnerPap(pw),
    "chap": lambda pw: InnerChap(pw),
    "mschapv2": lambda pw: InnerMsChapV2(pw),
    "eap-gtc": lambda pw: InnerEap([gtc_peer(lambda _prompt: pw)]),
    "eap-mschapv2": lambda pw: InnerEap([mschapv2_peer(pw)]),
}


# -- an independent computation of the keys, from the secrets OpenSSL logs ---------------


def _p_hash(algo: str, secret: bytes, seed: bytes, size: int) -> bytes:
    """RFC 5246 §5 P_hash (the TLS 1.2 PRF)."""
    out, a = b"", seed
    while len(out) < size:
        a = hmac.digest(secret, a, algo)
        out += hmac.digest(secret, a + seed, algo)
    return out[:size]


def _expand_label(algo: str, secret: bytes, label: bytes, context: bytes, size: int) -> bytes:
    """RFC 8446 §7.1 HKDF-Expand-Label."""
    full = b"tls13 " + label
    info = size.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    algorithm = hashes.SHA384() if algo == "sha384" else hashes.SHA256()
    return HKDFExpand(algorithm, size, info).derive(secret)


def _tls13_exporter(algo: str, secret: bytes, label: bytes, context: bytes, size: int) -> bytes:
    """RFC 8446 §7.5 TLS-Exporter."""
    empty = hashlib.new(algo, b"").digest()
    derived = _expand_label(algo, secret, label, empty, len(empty))
    return _expand_label(algo, derived, b"exporter", hashlib.new(algo, context).digest(), size)


def _independent_keys(
    keylog: list[bytes], cipher: str, tls13: bool, server_random: bytes
) -> KeyMaterial:
    """RFC 5281 §8 (TLS 1.2) / RFC 9427 with type code 0x15 (TLS 1.3)."""
    algo = "sha384" if cipher.endswith("SHA384") else "sha256"
    lines = [line.split() for line in keylog]
    if tls13:
        secret = bytes.fromhex(next(p[2] for p in lines if p[0] == b"EXPORTER_SECRET").decode())
        material = _tls13_exporter(algo, secret, b"EXPORTER_EAP_TLS_Key_Material", b"\x15", 128)
        method_id = _tls13_exporter(algo, secret, b"EXPORTER_EAP_TLS_Method-Id", b"\x15", 64)
        return KeyMaterial(material[:64], material[64:], b"\x15" + method_id)
    entry = next(p for p in lines if p[0] == b"CLIENT_RANDOM")
    client_random, master = bytes.fromhex(entry[1].decode()), bytes.fromhex(entry[2].decode())
    seed = client_random + server_random
    material = _p_hash(algo, master, b"ttls keying material" + seed, 128)
    return KeyMaterial(material[:64], material[64:], b"\x15" + seed)


# -- set-up --------------------------------------------------------------------------------


@dataclass
class Server:
    """A TTLS server factory that keeps its method instances; ``keylog`` collects the TLS
    secrets when the factory was built on a context that logs them (:func:`_server`)."""

    factory: MethodFactory[Authenticator]
    made: list[TtlsAuthenticator] = field(default_factory=list)
    keylog: list[bytes] = field(default_factory=list)

    def wrapped(self) -> MethodFactory[Authenticator]:
        def create(ctx: MethodContext) -> Authenticator:
            auth = self.factory(ctx)
            assert isinstance(auth, TtlsAuthenticator)
            self.made.append(auth)
            return auth

        return MethodFactory(TTLS, create, "ttls")


def _server(
    version: TlsVersion = TlsVersion.TLS1_3,
    *,
    framing: FramingConfig | None = None,
    pap: ResponseCheck | None = None,
    eap: list[MethodFactory[Authenticator]] | None = None,
    **kw: Any,
) -> Server:
    changes: dict[str, Any] = {"verify_peer": False, "max_version": version}
    if framing is not None:
        changes["framing"] = framing
    options: dict[str, Any] = {
        "pap": pap if pap is not None else InMemoryPasswords(PASSWORDS),
        "chap": PASSWORDS.get,
        "mschapv2": NT,
        "eap": eap
        if eap is not None
        else [mschapv2_authenticator(NT), gtc_authenticator(InMemoryPasswords(PASSWORDS))],
    }
    options.update(kw)
    keylog: list[bytes] = []
    context = TlsContext(server_config(lab(), **changes), TlsRole.SERVER)
    context.ssl_context.set_keylog_callback(lambda _conn, line: keylog.append(line))
    return Server(ttls_authenticator(context, **options), keylog=keylog)


def _peer(
    inner: InnerMethod, identity: str | None = USER, framing: FramingConfig | None = None
) -> MethodFactory[Peer]:
    changes: dict[str, Any] = {"certificate": None, "private_key": None}
    if framing is not None:
        changes["framing"] = framing
    return ttls_peer(peer_config(lab(), **changes), inner, identity=identity)


def _run(server: Server, peer: MethodFactory[Peer], outer: str = OUTER) -> Conversation:
    return run(server.wrapped(), peer, identity=outer)


# -- success for every inner method, both TLS versions --------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_every_inner_method_agrees_on_keys(version: TlsVersion, inner: str) -> None:
    server = _server(version)
    conv = _run(server, _peer(INNERS[inner](PASSWORD)))
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert (a.success, a.reason, p.success, p.reason) == (True, "ok", True, "ok"), (a, p)
    assert a.keys is not None and a.keys == p.keys
    assert len(a.keys.msk) == 64 and len(a.keys.emsk) == 64 and len(a.keys.session_id) == 65
    # the outer identity was anonymous; the authenticated user is the inner one
    assert (a.identity, a.user) == (OUTER, USER)
    assert a.outcome is not None and p.outcome is not None
    assert a.outcome.attributes["inner_method"] == inner
    assert p.outcome.attributes["inner_method"] == inner
    assert a.outcome.attributes["tls_version"] == version.label
    engine = server.made[0].engine
    assert engine.cipher is not None
    tls13 = version is TlsVersion.TLS1_3
    expected = _independent_keys(server.keylog, engine.cipher, tls13, engine.server_random)
    assert a.keys == expected
    # the last packet is the outer EAP-Success
    assert decode(conv.transcript[-1][1]).code is Code.SUCCESS


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("inner", ["pap", "eap-mschapv2"])
def test_small_fragments(version: TlsVersion, inner: str) -> None:
    framing = FramingConfig(fragment_size=64, max_rounds=400)
    conv = _run(
        _server(version, framing=framing),
        _peer(INNERS[inner](PASSWORD), framing=framing),
    )
    assert conv.authenticator is not None and conv.authenticator.success
    assert conv.peer is not None and conv.peer.success
    assert conv.authenticator.keys == conv.peer.keys
    for _, packet in conv.transcript:
        assert len(packet) <= 64 + 10


def test_inner_identity_defaults_to_the_outer_one() -> None:
    conv = _run(_server(), _peer(InnerPap(PASSWORD), identity=None), outer=USER)
    assert conv.authenticator is not None and conv.authenticator.success
    assert conv.authenticator.user == USER


def test_registry_knows_ttls() -> None:
    assert lookup("ttls").method == TTLS
    assert lookup(21).module == "eapkit.methods.ttls"


# -- failures: each ends in a Failure with a reason -----------------------------------------


def _failed(conv: Conversation) -> tuple[str, str]:
    a, p = conv.authenticator, conv.peer
    assert a is not None and not a.success and a.keys is None
    assert decode(conv.transcript[-1][1]).code is Code.FAILURE
    assert p is None or (not p.success and p.keys is None)
    return a.reason, p.reason if p is not None else ""


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_wrong_password(version: TlsVersion, inner: str) -> None:
    conv = _run(_server(version), _peer(INNERS[inner]("guess")))
    server_reason, peer_reason = _failed(conv)
    assert server_reason == "bad_password"
    if inner in ("mschapv2", "eap-mschapv2"):
        assert peer_reason == "authentication_failure"  # told by MS-CHAP-Error / E=691
    assert conv.authenticator is not None and conv.authenticator.user == USER


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_unknown_inner_user(version: TlsVersion, inner: str) -> None:
    conv = _run(_server(version), _peer(INNERS[inner](PASSWORD), identity="mallory@example.org"))
    server_reason, _ = _failed(conv)
    assert server_reason == "unknown_user"


@pytest.mark.parametrize(
    ("inner", "offered"),
    [
        ("pap", {"pap": None}),
        ("chap", {"chap": None}),
        ("mschapv2", {"mschapv2": None}),
        ("eap-gtc", {"eap": []}),
    ],
)
def test_inner_method_not_offered(inner: str, offered: dict[str, Any]) -> None:
    server = Server(
        ttls_authenticator(
            server_config(lab(), verify_peer=False),
            **{
                "pap": InMemoryPasswords(PASSWORDS),
                "chap": PASSWORDS.get,
                "mschapv2": NT,
                "eap": [gtc_authenticator(InMemoryPasswords(PASSWORDS))],
                **offered,
            },
        )
    )
    assert _failed(_run(server, _peer(INNERS[inner](PASSWORD))))[0] == "inner_method_not_allowed"


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_inner_method_nak_ends_in_failure(version: TlsVersion) -> None:
    """The server offers only inner EAP-MSCHAPv2; the peer has only EAP-GTC and Naks."""
    server = _server(version, eap=[mschapv2_authenticator(NT)])
    reason, _ = _failed(_run(server, _peer(INNERS["eap-gtc"](PASSWORD))))
    assert reason == "peer_refused_methods"


def test_inner_nak_moves_to_the_next_method() -> None:
    server = _server(eap=[mschapv2_authenticator(NT), gtc_authenticator(PASSWORDS_CHECK)])
    conv = _run(server, _peer(INNERS["eap-gtc"](PASSWORD)))
    assert conv.authenticator is not None and conv.authenticator.success
    assert conv.authenticator.outcome is not None
    assert conv.authenticator.outcome.attributes["inner_method"] == "eap-gtc"


PASSWORDS_CHECK = InMemoryPasswords(PASSWORDS)


@pytest.mark.parametrize(
    ("outer", "inner_user", "success"),
    [
        ("anonymous@example.org", "alice@example.org", True),
        ("anonymous@EXAMPLE.org", "alice@example.org", True),
        ("anonymous@evil.example", "alice@example.org", False),
        ("anonymous", "alice@example.org", False),
        ("anonymous", "bob", True),
    ],
)
@pytest.mark.parametrize("inner", ["pap", "eap-gtc"])
def test_realm_policy(outer: str, inner_user: str, success: bool, inner: str) -> None:
    password = PASSWORDS[inner_user]
    conv = _run(
        _server(realm_policy=same_realm),
        _peer(INNERS[inner](password), identity=inner_user),
        outer=outer,
    )
    assert conv.authenticator is not None
    assert conv.authenticator.success is success
    if not success:
        assert conv.authenticator.reason == "realm_mismatch"
    # the default policy lets any outer realm through
    conv = _run(
        _server(realm_policy=any_realm),
        _peer(INNERS[inner](password), identity=inner_user),
        outer=outer,
    )
    assert conv.authenticator is not None and conv.authenticator.success


# -- two-factor policies through the credential combinators --------------------------------


class FakeCodes:
    """A test double of a one-time-code verifier: one valid code, used once."""

    def __init__(self, code: str = "123456") -> None:
        self.code = code
        self.used: list[str] = []

    def __call__(self, user: str, code: str, now: float) -> Verdict:
        if code in self.used:
            return Verdict.reject("replayed")
        if not hmac.compare_digest(code.encode(), self.code.encode()):
            return Verdict.reject("bad_code")
        self.used.append(code)
        return Verdict.accept(user)


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_pap_password_and_code_in_one_field(version: TlsVersion) -> None:
    codes = FakeCodes()
    check = PasswordAndCode(PASSWORDS_CHECK, codes, lambda user: 6)
    server = _server(version, pap=check)
    ok = _run(server, _peer(InnerPap(PASSWORD + "123456")))
    assert ok.authenticator is not None and ok.authenticator.success
    replay = _run(server, _peer(InnerPap(PASSWORD + "123456")))
    assert _failed(replay)[0] == "replayed"
    wrong = _run(server, _peer(InnerPap(PASSWORD + "654321")))
    assert _failed(wrong)[0] == "bad_code"
    bad_pw = _run(server, _peer(InnerPap("guess" + "123456")))
    assert _failed(bad_pw)[0] == "bad_password"


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_pap_then_code_through_reply_message(version: TlsVersion) -> None:
    codes = FakeCodes()
    check = PasswordThenCode(PASSWORDS_CHECK, codes, lambda user: True, prompt="Code: ")
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return "123456"

    conv = _run(_server(version, pap=check), _peer(InnerPap(PASSWORD, challenge=answer)))
    assert conv.authenticator is not None and conv.authenticator.success, conv.authenticator
    assert conv.peer is not None and conv.peer.success
    assert prompts == ["Code: "]
    # a peer that cannot answer the challenge fails
    codes.used.clear()
    no_answer = _run(_server(version, pap=check), _peer(InnerPap(PASSWORD)))
    assert no_answer.peer is not None and no_answer.peer.reason == "protocol_error"
    # a wrong code fails with the verifier's reason
    wrong = _run(
        _server(version, pap=check), _peer(InnerPap(PASSWORD, challenge=lambda _p: "000000"))
    )
    assert _failed(wrong)[0] == "bad_code"


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_inner_gtc_second_round_for_the_code(version: TlsVersion) -> None:
    codes = FakeCodes()
    check = PasswordThenCode(PASSWORDS_CHECK, codes, lambda user: True)
    answers = iter([PASSWORD, "123456"])
    server = _server(version, eap=[gtc_authenticator(check)])
    conv = _run(server, _peer(InnerEap([gtc_peer(lambda _prompt: next(answers))])))
    assert conv.authenticator is not None and conv.authenticator.success, conv.authenticator
    assert conv.peer is not None and conv.peer.success
    answers = iter([PASSWORD, "999999"])
    wrong = _run(server, _peer(InnerEap([gtc_peer(lambda _prompt: next(answers))])))
    assert _failed(wrong)[0] == "bad_code"


# -- hand-made phase-2 AVPs and a torn-down tunnel ------------------------------------------


def _tampering_peer(
    inner: InnerMethod, replace: Callable[[bytes, TtlsPeer], bytes | None], index: int = 0
) -> MethodFactory[Peer]:
    """A TTLS peer whose ``index``-th tunnel write is replaced by ``replace(data, peer)``
    (None: tear the tunnel down with a TLS close_notify instead)."""
    base = _peer(inner)

    def create(ctx: MethodContext) -> Peer:
        peer = base(ctx)
        assert isinstance(peer, TtlsPeer)
        real = peer.engine.write
        count = iter(range(1000))

        def write(data: bytes) -> None:
            if next(count) != index:
                real(data)
                return
            new = replace(data, peer)
            if new is None:
                peer.engine.conn.shutdown()
                peer.engine._collect()
            else:
                real(new)

        peer.engine.write = write  # type: ignore[method-assign]
        return peer

    return MethodFactory(TTLS, create, "ttls")


def _challenge(peer: TtlsPeer) -> tuple[bytes, int]:
    return implicit_challenge(peer.engine)


NAME = Avp(AvpCode.USER_NAME, USER.encode())
PAP_OK = Avp(AvpCode.USER_PASSWORD, pad_password(PASSWORD.encode()))


def _mschap_avps(peer: TtlsPeer, ident_delta: int = 0, challenge_flip: bool = False) -> bytes:
    from eapkit.crypto.mschap import generate_nt_response

    challenge, ident = _challenge(peer)
    sent = bytes([challenge[0] ^ 1]) + challenge[1:] if challenge_flip else challenge
    peer_challenge = bytes(16)
    nt_response = generate_nt_response(challenge, peer_challenge, USER, password=PASSWORD)
    response = bytes([(ident + ident_delta) & 0xFF, 0]) + peer_challenge + bytes(8) + nt_response
    return encode_avps(
        [
            NAME,
            Avp(AvpCode.MS_CHAP_CHALLENGE, sent, MICROSOFT),
            Avp(AvpCode.MS_CHAP2_RESPONSE, response, MICROSOFT),
        ]
    )


def _chap_avps(peer: TtlsPeer, ident_delta: int) -> bytes:
    challenge, ident = _challenge(peer)
    ident = (ident + ident_delta) & 0xFF
    digest = hashlib.md5(bytes([ident]) + PASSWORD.encode() + challenge).digest()
    return encode_avps(
        [
            NAME,
            Avp(AvpCode.CHAP_CHALLENGE, challenge),
            Avp(AvpCode.CHAP_PASSWORD, bytes([ident]) + digest),
        ]
    )


MALFORMED: dict[str, tuple[Callable[[bytes, TtlsPeer], bytes | None], str]] = {
    "truncated-header": (lambda d, p: b"\x00\x00\x00\x01\x40", "malformed"),
    "length-below-header": (lambda d, p: bytes.fromhex("00000001 40000004"), "malformed"),
    "length-past-end": (lambda d, p: bytes.fromhex("00000001 400000ff") + b"alice", "malformed"),
    "vendor-avp-too-short": (lambda d, p: bytes.fromhex("00000001 c0000009 00"), "malformed"),
    "unknown-mandatory": (
        lambda d, p: d + Avp(9999, b"x", None, mandatory=True).encode(),
        "unsupported_avp",
    ),
    "unknown-mandatory-vendor": (
        lambda d, p: Avp(1, b"x", 4242, mandatory=True).encode() + d,
        "unsupported_avp",
    ),
    "no-user-name": (lambda d, p: PAP_OK.encode(), "malformed"),
    "user-name-not-utf8": (
        lambda d, p: encode_avps([Avp(AvpCode.USER_NAME, b"\xff\xfe"), PAP_OK]),
        "malformed",
    ),
    "password-not-utf8": (
        lambda d, p: encode_avps([NAME, Avp(AvpCode.USER_PASSWORD, b"\xff" * 16)]),
        "malformed",
    ),
    "no-credentials": (lambda d, p: NAME.encode(), "malformed"),
    "chap-wrong-ident": (lambda d, p: _chap_avps(p, 1), "challenge_mismatch"),
    "chap-short-password": (
        lambda d, p: encode_avps(
            [NAME, Avp(AvpCode.CHAP_CHALLENGE, bytes(16)), Avp(AvpCode.CHAP_PASSWORD, b"\x01")]
        ),
        "malformed",
    ),
    "mschapv2-wrong-ident": (lambda d, p: _mschap_avps(p, ident_delta=1), "challenge_mismatch"),
    "mschapv2-own-challenge": (
        lambda d, p: _mschap_avps(p, challenge_flip=True),
        "challenge_mismatch",
    ),
    "mschapv2-no-challenge": (
        lambda d, p: encode_avps([NAME, Avp(AvpCode.MS_CHAP2_RESPONSE, bytes(50), MICROSOFT)]),
        "malformed",
    ),
    "eap-not-identity": (
        lambda d, p: Avp(AvpCode.EAP_MESSAGE, bytes.fromhex("02000006 0300")).encode(),
        "malformed",
    ),
    "eap-garbage": (lambda d, p: Avp(AvpCode.EAP_MESSAGE, b"\x02").encode(), "malformed"),
    "empty-application-data": (lambda d, p: b"", "protocol_error"),
    "close-notify": (lambda d, p: None, "close_notify"),
}


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_phase2_from_the_peer(version: TlsVersion, case: str) -> None:
    replace, reason = MALFORMED[case]
    conv = _run(_server(version), _tampering_peer(InnerPap(PASSWORD), replace))
    a, p = conv.authenticator, conv.peer
    assert a is not None and not a.success and a.keys is None
    assert a.reason == reason, (a.reason, a.detail)
    assert p is None or not p.success


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_unknown_optional_avp_is_ignored(version: TlsVersion) -> None:
    extra = Avp(9999, b"ignore me", None, mandatory=False).encode()
    conv = _run(_server(version), _tampering_peer(InnerPap(PASSWORD), lambda d, p: extra + d))
    assert conv.authenticator is not None and conv.authenticator.success


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_eap_message_split_over_avps_is_joined(version: TlsVersion) -> None:
    """RADIUS servers split EAP packets into 253-octet attributes (RFC 3579 §3.1)."""

    def split(data: bytes, peer: TtlsPeer) -> bytes:
        eap = data[8 : 8 + int.from_bytes(data[5:8], "big") - 8]
        return encode_avps([Avp(AvpCode.EAP_MESSAGE, eap[:3]), Avp(AvpCode.EAP_MESSAGE, eap[3:])])

    conv = _run(_server(version), _tampering_peer(INNERS["eap-gtc"](PASSWORD), split))
    assert conv.authenticator is not None and conv.authenticator.success


def _tampering_server(
    replace: Callable[[bytes], bytes | None], version: TlsVersion, index: int = 0
) -> Server:
    """A TTLS server whose ``index``-th tunnel write is replaced (None: close_notify)."""
    inner = _server(version)

    def create(ctx: MethodContext) -> Authenticator:
        auth = inner.factory(ctx)
        assert isinstance(auth, TtlsAuthenticator)
        real = auth.engine.write
        count = iter(range(1000))

        def write(data: bytes) -> None:
            if next(count) != index:
                real(data)
                return
            new = replace(data)
            if new is None:
                auth.engine.conn.shutdown()
                auth.engine._collect()
            else:
                real(new)

        auth.engine.write = write  # type: ignore[method-assign]
        return auth

    return Server(MethodFactory(TTLS, create, "ttls"))


def _flip_success(data: bytes) -> bytes:
    """Change one hex digit of the authenticator response in MS-CHAP2-Success."""
    out = bytearray(data)
    pos = data.index(b"S=") + 2
    out[pos] = ord("0") if out[pos] != ord("0") else ord("1")
    return bytes(out)


PEER_CASES: dict[str, tuple[str, Callable[[bytes], bytes | None], str]] = {
    "forged-ms-chap2-success": ("mschapv2", _flip_success, "bad_authenticator_response"),
    "wrong-ident-in-success": (
        "mschapv2",
        lambda d: d[:12] + bytes([d[12] ^ 1]) + d[13:],
        "bad_authenticator_response",
    ),
    "garbage-avps": ("mschapv2", lambda d: b"\x00\x00\x01", "malformed"),
    "unknown-mandatory": (
        "mschapv2",
        lambda d: Avp(77, b"x", None, True).encode() + d,
        "unsupported_avp",
    ),
    "no-result": ("mschapv2", lambda d: Avp(77, b"x", None, False).encode(), "protocol_error"),
    "no-eap-message": ("eap-gtc", lambda d: Avp(77, b"x", None, False).encode(), "malformed"),
    "inner-eap-garbage": (
        "eap-gtc",
        lambda d: Avp(AvpCode.EAP_MESSAGE, b"\x01\x02").encode(),
        "malformed",
    ),
    "close-notify": ("mschapv2", lambda d: None, "close_notify"),
}


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("case", sorted(PEER_CASES))
def test_malformed_phase2_from_the_server(version: TlsVersion, case: str) -> None:
    inner, replace, reason = PEER_CASES[case]
    conv = _run(_tampering_server(replace, version), _peer(INNERS[inner](PASSWORD)))
    p = conv.peer
    assert p is not None and not p.success and p.keys is None
    assert p.reason == reason, (p.reason, p.detail)


# -- the codec helpers ------------------------------------------------------------------------


def test_password_padding() -> None:
    assert pad_password(b"") == bytes(16)
    assert pad_password(b"abc") == b"abc" + bytes(13)
    assert pad_password(b"x" * 16) == b"x" * 16
    assert pad_password(b"x" * 17) == b"x" * 17 + bytes(15)
    assert unpad_password(b"abc" + bytes(13)) == b"abc"


@given(st.binary(max_size=300).filter(lambda b: not b.endswith(b"\x00")))
def test_password_padding_round_trips(password: bytes) -> None:
    padded = pad_password(password)
    assert len(padded) % 16 == 0 and len(padded) >= 16
    assert unpad_password(padded) == password


# -- arbitrary bytes at every state: a Failure (or a step), never an exception --------------


@dataclass
class Pair:
    auth: TtlsAuthenticator
    peer: TtlsPeer


def _pair(inner: str, version: TlsVersion) -> Pair:
    server = _server(version)
    ctx = MethodContext(identity=OUTER.encode())
    auth = server.factory(ctx)
    peer = _peer(INNERS[inner](PASSWORD))(MethodContext(identity=OUTER.encode()))
    assert isinstance(auth, TtlsAuthenticator) and isinstance(peer, TtlsPeer)
    return Pair(auth, peer)


def _shuttle(pair: Pair, at: int, payload: bytes) -> Iterator[tuple[str, bytes, Step]]:
    """Run both methods; the ``at``-th message delivered is replaced by ``payload``.
    Yields (receiver, message, step) for every delivery."""
    message = pair.auth.start()
    for k in range(0, 400, 2):
        if at == k:
            message = payload
        step = pair.peer.receive(message)
        yield "peer", message, step
        if step.type_data is None:
            return
        message = step.type_data
        if at == k + 1:
            message = payload
        auth_step = pair.auth.receive(message)
        yield "auth", message, auth_step
        if isinstance(auth_step, Done):
            return
        message = auth_step.type_data


def _check_run(inner: str, version: TlsVersion, at: int, payload: bytes) -> None:
    for receiver, message, step in _shuttle(_pair(inner, version), at, payload):
        assert isinstance(step, Reply | Done)
        if receiver == "auth" and isinstance(step, Done) and step.outcome.success:
            # arbitrary bytes end a conversation well only as the acknowledgement due
            assert message != payload or Fragment.decode(message).is_ack


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("inner", ["pap", "mschapv2", "eap-mschapv2"])
@given(at=st.integers(0, 24), payload=st.binary(max_size=64))
def test_arbitrary_bytes_at_every_state(
    inner: str, version: TlsVersion, at: int, payload: bytes
) -> None:
    _check_run(inner, version, at, payload)


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@given(index=st.integers(0, 3), payload=st.binary(max_size=120))
def test_arbitrary_tunnel_data_from_the_peer(
    version: TlsVersion, index: int, payload: bytes
) -> None:
    """Arbitrary plaintext in the tunnel, at any of the peer's phase-2 writes."""
    conv = _run(
        _server(version),
        _tampering_peer(INNERS["eap-mschapv2"](PASSWORD), lambda d, p: payload, index),
    )
    a = conv.authenticator
    assert a is not None
    # writes 0-2 are the Identity, the MS-CHAPv2 Response and its Success acknowledgement:
    # replaced, the conversation fails; there is no write 3, so nothing changes then
    assert a.success is (index == 3)


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@given(index=st.integers(0, 2), payload=st.binary(max_size=120))
def test_arbitrary_tunnel_data_from_the_server(
    version: TlsVersion, index: int, payload: bytes
) -> None:
    conv = _run(
        _tampering_server(lambda d: payload, version, index),
        _peer(INNERS["eap-mschapv2"](PASSWORD)),
    )
    # writes 0 and 1 are the MS-CHAPv2 Challenge and Success Requests: replaced, the
    # peer refuses; there is no write 2, so nothing changes then
    assert (conv.peer is not None and conv.peer.success) is (index == 2)


# -- what the tunnel proved, and TLS failing under a write --------------------------------


@pytest.mark.parametrize("inner", ["chap", "mschapv2"])
def test_password_inner_methods_prove_a_password(inner: str) -> None:
    conv = _run(_server(), _peer(INNERS[inner](PASSWORD)))
    assert conv.authenticator is not None and conv.authenticator.outcome is not None
    assert conv.authenticator.outcome.factors == frozenset({Factor.PASSWORD})


def test_pap_carries_the_factors_of_the_check() -> None:
    proved = frozenset({"password", "otp_device", "a_factor_not_known_here"})

    def check(user: str, response: str, now: float) -> Verdict:
        return Verdict(True, "ok", user, "", proved)

    conv = _run(_server(pap=check), _peer(INNERS["pap"](PASSWORD)))
    assert conv.authenticator is not None and conv.authenticator.outcome is not None
    assert conv.authenticator.outcome.factors == {Factor.PASSWORD, Factor.OTP_DEVICE}


def _failing_writes(factory: MethodFactory[Any]) -> MethodFactory[Any]:
    """The same method, whose TLS engine fails on every application write."""

    def create(ctx: MethodContext) -> Any:
        method = factory(ctx)
        engine = method.engine

        def write(data: bytes) -> None:
            engine.failure = Failed("internal_error", "write failed")

        engine.write = write
        return method

    return MethodFactory(factory.method, create, factory.name)


@pytest.mark.parametrize("inner", ["pap", "eap-gtc"])
def test_authenticator_ends_when_tls_fails_under_a_write(inner: str) -> None:
    prompt = PasswordThenCode(PASSWORDS_CHECK, FakeCodes(), lambda user: True)
    server = _server(pap=prompt)  # PAP answers with a Reply-Message: a server write
    conv = run(_failing_writes(server.wrapped()), _peer(INNERS[inner](PASSWORD)), identity=OUTER)
    assert _failed(conv)[0] == "internal_error"


@pytest.mark.parametrize("inner", sorted(INNERS))
def test_peer_ends_when_tls_fails_under_a_write(inner: str) -> None:
    conv = _run(_server(), _failing_writes(_peer(INNERS[inner](PASSWORD))))
    assert conv.peer is not None and conv.peer.reason == "internal_error"
    assert conv.authenticator is not None and not conv.authenticator.success
