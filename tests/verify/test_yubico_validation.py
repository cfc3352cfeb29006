"""The Yubico validation protocol 2.0: eapkit's server with ``yubico-client`` as the
real client, and eapkit's service check (which drives ``yubico-client``) against it.

Every status the protocol defines is provoked here, each by one change to a request
that otherwise succeeds; signatures are checked both ways (the client's request by the
server, the server's response by the client).
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import DecodeError
from eapkit.rand import DeterministicRandom
from eapkit.store import MemoryStore, SqliteStore, Store
from eapkit.verify.yubico import YubicoVerifier, YubikeyCredential, YubikeyToken, encode_otp
from eapkit.verify.yubico_server import (
    BACKEND_ERROR,
    BAD_OTP,
    BAD_SIGNATURE,
    MISSING_PARAMETER,
    NO_SUCH_CLIENT,
    NOT_ENOUGH_ANSWERS,
    OK,
    OPERATION_NOT_ALLOWED,
    REPLAYED_OTP,
    REPLAYED_REQUEST,
    STATUSES,
    VERIFY_PATH,
    ApiClient,
    StoreApiClients,
    ValidationService,
    parse_response,
    sign,
    signature_valid,
)
from eapkit.yubico_validation import make_http_server
from tests.conftest import IN_CI
from tests.verify.helpers import NOW, DownStore, sealer

# The [yubico] extra: skipped locally without it, a collection error under CI.
if not IN_CI:
    pytest.importorskip("yubico_client", reason="the [yubico] extra is not installed")
from yubico_client import Yubico
from yubico_client.yubico_exceptions import (
    InvalidClientIdError,
    SignatureVerificationError,
    StatusCodeError,
)

AES = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
UID = bytes.fromhex("8792ebfe26cc")
PUBLIC = "vvcccbhhhhhh"
OTHER_PUBLIC = "vvcccbjjjjjj"
API = ApiClient("87", bytes(range(20)))
DISABLED = ApiClient("88", bytes(range(1, 21)), enabled=False)


def otp(
    usage: int, session: int, *, key: bytes = AES, public: str = PUBLIC, ts: int = 0x2A3B4C
) -> str:
    return encode_otp(YubikeyToken(UID, usage, ts, session, 0x1234), key, public)


class DownAll(DownStore):
    """DownStore, single-use tokens included."""

    def put_once(self, key: str, value: bytes, ttl: float, now: float) -> bool:
        return self._fail() if self.down else super().put_once(key, value, ttl, now)


@dataclass
class Server:
    service: ValidationService
    url: str
    store: Store


def start(service: ValidationService) -> tuple[Any, str]:
    httpd = make_http_server(service, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}{VERIFY_PATH}"


def make_service(store: Store, **kw: Any) -> ValidationService:
    seal = None if isinstance(store, MemoryStore) else sealer()
    verifier = YubicoVerifier(store, seal, rand=DeterministicRandom(1))
    verifier.enroll("alice", YubikeyCredential(PUBLIC, UID, AES), NOW)
    clients = StoreApiClients(store, seal)
    clients.add(API)
    clients.add(DISABLED)
    return ValidationService(verifier, clients, **kw)


@pytest.fixture
def server(tmp_path: Any) -> Iterator[Server]:
    store = SqliteStore(str(tmp_path / "ykval.db"))
    service = make_service(store)
    httpd, url = start(service)
    try:
        yield Server(service, url, store)
    finally:
        httpd.shutdown()
        httpd.server_close()
        store.close()


def client(url: str, api: ApiClient | None = API, client_id: str | None = None) -> Any:
    return Yubico(
        client_id or (api.id if api else "87"),
        api.key_b64 if api else None,
        api_urls=(url,),
        max_retries=1,
    )


def exchange(
    yc: Any,
    url: str,
    otp_text: str,
    *,
    nonce: str = "abcdefghijklmnopqrstuvwxyz",
    timestamp: bool = False,
    sl: int | str | None = None,
    timeout: int | None = None,
    query: str | None = None,
) -> dict[str, str]:
    """One request built and signed by yubico-client, the response signature and echo
    checked by yubico-client; returns the response's pairs (status included)."""
    import requests

    if query is None:
        query = yc.generate_query_string(otp_text, nonce, timestamp, sl, timeout)
    body = requests.get(f"{url}?{query}", timeout=10).text
    # raises on a bad h or echo; raises these two for their statuses after checking h
    with contextlib.suppress(StatusCodeError, InvalidClientIdError):
        yc.verify_response(body, otp_text, nonce, return_response=True)
    _, line = yc.parse_parameters_from_response(body)
    params: dict[str, str] = yc.get_parameters_as_dictionary(line)
    return params


# -- yubico-client's own verify() -----------------------------------------------------


def test_ok_then_replayed_through_yubico_client_verify(server: Server) -> None:
    yc = client(server.url)
    first = otp(3, 0)
    assert yc.verify(first) is True
    with pytest.raises(StatusCodeError) as err:
        yc.verify(first)
    assert err.value.status_code == REPLAYED_OTP
    assert yc.verify(otp(3, 1)) is True
    with pytest.raises(StatusCodeError):  # an older counter pair is a replay too
        yc.verify(otp(2, 9))


def test_timestamp_answer_carries_the_tokens_counters(server: Server) -> None:
    answer = client(server.url).verify(otp(7, 4, ts=0x0A0B0C), timestamp=True, return_response=True)
    assert answer["status"] == OK
    assert (answer["sessioncounter"], answer["sessionuse"]) == ("7", "4")
    assert answer["timestamp"] == str(0x0A0B0C)
    assert answer["sl"] == "100"  # one shared store: fully in sync


def test_no_such_client_through_yubico_client(server: Server) -> None:
    with pytest.raises(InvalidClientIdError):
        client(server.url, None, client_id="4242").verify(otp(3, 0))


def test_response_signed_with_another_key_is_refused_by_the_client(server: Server) -> None:
    # The client holds a different key: its request fails our check (BAD_SIGNATURE,
    # signed with the real key) and the client refuses our response's signature.
    wrong = ApiClient(API.id, b"\x55" * 20)
    with pytest.raises(SignatureVerificationError):
        client(server.url, wrong).verify(otp(3, 0))


# -- every status, one change each ----------------------------------------------------


def test_ok_request_signed_and_response_signed(server: Server) -> None:
    answer = exchange(client(server.url), server.url, otp(4, 0))
    assert answer["status"] == OK
    assert answer["otp"] == otp(4, 0)


def test_unsigned_request_accepted_unless_signatures_are_required(tmp_path: Any) -> None:
    for required, expected in ((False, OK), (True, BAD_SIGNATURE)):
        store = MemoryStore()
        httpd, url = start(make_service(store, require_signature=required))
        try:
            unsigned = client(url, None)
            signed_check = client(url)  # checks the response's h with the real key
            query = unsigned.generate_query_string(otp(1, 0), "abcdefghijklmnopqrstuvwxyz")
            assert "h=" not in query
            answer = exchange(signed_check, url, otp(1, 0), query=query)
            assert answer["status"] == expected
        finally:
            httpd.shutdown()
            httpd.server_close()


def test_bad_signature(server: Server) -> None:
    wrong = client(server.url, ApiClient(API.id, b"\x55" * 20))
    query = wrong.generate_query_string(otp(5, 0), "abcdefghijklmnopqrstuvwxyz")
    answer = exchange(client(server.url), server.url, otp(5, 0), query=query)
    assert answer["status"] == BAD_SIGNATURE
    # ... and the OTP was not consumed by the refused request.
    assert exchange(client(server.url), server.url, otp(5, 0), nonce="z" * 16)["status"] == OK


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": "short0123456789"},  # 15 characters
        {"nonce": "x" * 41},
        {"sl": 101},
        {"query_drop": "otp"},
        {"query_drop": "nonce"},
        {"query_add": "timestamp=2"},
        {"query_add": "timeout=soon"},
        {"query_add": "sl=sometimes"},
        {"query_add": "otp=cccccccccccccccccccccccccccccccc"},  # repeated
    ],
    ids=str,
)
def test_missing_parameter(server: Server, change: dict[str, Any]) -> None:
    yc = client(server.url)
    nonce = change.get("nonce", "abcdefghijklmnopqrstuvwxyz")
    the_otp = otp(6, 0)
    if "sl" in change:
        # yubico-client refuses sl=101 itself: sign such a request by hand
        params = {"id": API.id, "otp": the_otp, "nonce": nonce, "sl": "101"}
        query = "&".join(f"{k}={v}" for k, v in params.items())
        query += "&h=" + sign(params, API.key).replace("+", "%2B")
    else:
        query = yc.generate_query_string(the_otp, nonce)
    if "query_drop" in change:
        pairs = [p for p in query.split("&") if not p.startswith(change["query_drop"] + "=")]
        pairs = [p for p in pairs if not p.startswith("h=")]
        fields = dict(p.split("=", 1) for p in pairs)
        query = "&".join(pairs) + "&h=" + sign(fields, API.key).replace("+", "%2B")
    if "query_add" in change:
        pairs = [p for p in query.split("&") if not p.startswith("h=")] + [change["query_add"]]
        fields = dict(p.split("=", 1) for p in pairs)
        query = "&".join(pairs) + "&h=" + sign(fields, API.key).replace("+", "%2B")
    answer = exchange(yc, server.url, the_otp, nonce=nonce, query=query)
    assert answer["status"] == MISSING_PARAMETER
    # the OTP is still good afterwards
    assert exchange(yc, server.url, the_otp, nonce="n" * 20)["status"] == OK


def test_missing_id(server: Server) -> None:
    import requests

    body = requests.get(f"{server.url}?otp={otp(1, 1)}&nonce={'a' * 16}", timeout=10).text
    params = parse_response(body)
    assert params["status"] == MISSING_PARAMETER
    assert "h" not in params  # no client, no key to sign with
    body = requests.get(f"{server.url}?id=87&id=87&otp=x&nonce={'a' * 16}", timeout=10).text
    assert parse_response(body)["status"] == MISSING_PARAMETER  # whose id? unsigned too


@pytest.mark.parametrize(
    "bad",
    [
        "not-an-otp",
        "vvcccbhhhhhh" + "c" * 31,  # one character short
        "vvcccbhhhhhh" + "a" * 32,  # not modhex
    ],
)
def test_bad_otp_format(server: Server, bad: str) -> None:
    yc = Yubico(API.id, API.key_b64, api_urls=(server.url,), translate_otp=False)
    assert exchange(yc, server.url, bad)["status"] == BAD_OTP


@pytest.mark.parametrize(
    "forged",
    [
        otp(9, 0, key=bytes(16)),  # another AES key: the CRC does not hold
        otp(9, 0, public=OTHER_PUBLIC),  # a key nobody enrolled
    ],
    ids=["wrong-aes-key", "unknown-public-id"],
)
def test_bad_otp_content(server: Server, forged: str) -> None:
    assert exchange(client(server.url), server.url, forged)["status"] == BAD_OTP


def test_replayed_otp_with_a_fresh_nonce(server: Server) -> None:
    yc = client(server.url)
    assert exchange(yc, server.url, otp(10, 0), nonce="a" * 20)["status"] == OK
    assert exchange(yc, server.url, otp(10, 0), nonce="b" * 20)["status"] == REPLAYED_OTP


def test_replayed_request_same_nonce(server: Server) -> None:
    yc = client(server.url)
    nonce = "c" * 40
    assert exchange(yc, server.url, otp(11, 0), nonce=nonce)["status"] == OK
    assert exchange(yc, server.url, otp(11, 0), nonce=nonce)["status"] == REPLAYED_REQUEST
    # a reused nonce is refused before the OTP is looked at: this fresh OTP survives it
    assert exchange(yc, server.url, otp(11, 1), nonce=nonce)["status"] == REPLAYED_REQUEST
    assert exchange(yc, server.url, otp(11, 1), nonce="d" * 40)["status"] == OK


def test_nonce_is_per_client(tmp_path: Any) -> None:
    store = MemoryStore()
    service = make_service(store)
    other = ApiClient("89", b"\x77" * 20)
    assert isinstance(service.clients, StoreApiClients)
    service.clients.add(other)
    httpd, url = start(service)
    try:
        nonce = "e" * 16
        assert exchange(client(url), url, otp(1, 0), nonce=nonce)["status"] == OK
        assert exchange(client(url, other), url, otp(1, 1), nonce=nonce)["status"] == OK
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_operation_not_allowed(server: Server) -> None:
    answer = exchange(client(server.url, DISABLED), server.url, otp(12, 0))
    assert answer["status"] == OPERATION_NOT_ALLOWED  # and signed with its key


def test_no_such_client_signed_request(server: Server) -> None:
    stranger = Yubico("4242", None, api_urls=(server.url,))
    assert exchange(stranger, server.url, otp(12, 1))["status"] == NO_SUCH_CLIENT


def broken_backend() -> tuple[DownAll, ValidationService]:
    """A service whose OTP store can be taken down; its clients live elsewhere, so a
    request gets as far as the OTP."""
    store = DownAll()
    service = make_service(store)
    clients = StoreApiClients(MemoryStore())
    clients.add(API)
    service.clients = clients
    return store, service


def test_backend_error() -> None:
    store, service = broken_backend()
    httpd, url = start(service)
    try:
        store.down = True
        answer = exchange(client(url), url, otp(1, 0))
        assert answer["status"] == BACKEND_ERROR
        # (signed: exchange() had yubico-client check the response's h)
        store.down = False
        assert exchange(client(url), url, otp(1, 0), nonce="f" * 16)["status"] == OK
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_backend_error_when_the_client_records_are_unreachable() -> None:
    store = DownAll()
    service = make_service(store)
    store.down = True
    assert service.handle(f"id=87&otp={otp(1, 0)}&nonce={'a' * 16}", NOW).status == BACKEND_ERROR


# -- sync level, timeout and peers ------------------------------------------------------


class Clock:
    """A monotonic clock the test moves (slow peers advance it)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class SlowPeer(MemoryStore):
    def __init__(self, clock: Clock, delay: float) -> None:
        super().__init__()
        self.clock, self.delay = clock, delay

    def advance(self, key: str, value: int) -> bool:
        self.clock.t += self.delay
        return super().advance(key, value)


def peered(peers: list[Store], clock: Clock | None = None) -> tuple[Any, str]:
    return start(make_service(MemoryStore(), peers=peers, clock=clock or Clock()))


def test_not_enough_answers_and_sync_levels() -> None:
    down = DownAll()
    down.down = True
    httpd, url = peered([MemoryStore(), down])  # one of two peers answers: 50 %
    yc = client(url)
    try:
        answer = exchange(yc, url, otp(1, 0), sl=100)
        assert (answer["status"], answer["sl"]) == (NOT_ENOUGH_ANSWERS, "50")
        # the OTP was consumed locally nevertheless (as in yubikey-val)
        assert exchange(yc, url, otp(1, 0), nonce="g" * 16, sl=0)["status"] == REPLAYED_OTP
        assert exchange(yc, url, otp(1, 1), nonce="h" * 16, sl=50)["status"] == OK
        assert exchange(yc, url, otp(1, 2), nonce="i" * 16, sl="secure")["status"] == OK  # 40
        assert exchange(yc, url, otp(1, 3), nonce="j" * 16, sl="fast")["status"] == OK  # 1
        answer = exchange(yc, url, otp(1, 4), nonce="k" * 16)  # default level 60
        assert answer["status"] == NOT_ENOUGH_ANSWERS
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_timeout_bounds_the_sync() -> None:
    clock = Clock()
    peers: list[Store] = [SlowPeer(clock, 2.0), SlowPeer(clock, 2.0)]
    httpd, url = peered(peers, clock)
    yc = client(url)
    try:
        # 3 s: the first peer answers at 2 s, the second at 4 s (too late)
        answer = exchange(yc, url, otp(1, 0), sl=100, timeout=3)
        assert (answer["status"], answer["sl"]) == (NOT_ENOUGH_ANSWERS, "50")
        answer = exchange(yc, url, otp(1, 1), nonce="m" * 16, sl=100, timeout=5)
        assert (answer["status"], answer["sl"]) == (OK, "100")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_two_servers_with_their_own_stores_refuse_each_others_otps() -> None:
    store_a, store_b = MemoryStore(), MemoryStore()
    a = make_service(store_a, peers=[store_b])
    b = make_service(store_b, peers=[store_a])
    httpd_a, url_a = start(a)
    httpd_b, url_b = start(b)
    try:
        assert exchange(client(url_a), url_a, otp(2, 0), nonce="q" * 16)["status"] == OK
        assert exchange(client(url_b), url_b, otp(2, 0), nonce="r" * 16)["status"] == REPLAYED_OTP
        assert exchange(client(url_b), url_b, otp(2, 1), nonce="s" * 16)["status"] == OK
        assert exchange(client(url_a), url_a, otp(2, 1), nonce="t" * 16)["status"] == REPLAYED_OTP
    finally:
        for httpd in (httpd_a, httpd_b):
            httpd.shutdown()
            httpd.server_close()


# -- the service without HTTP: signatures and properties --------------------------------


def test_signature_example_of_the_specification() -> None:
    # "Verifying signatures": the pairs are sorted, h is left out.
    params = {"b": "1", "a": "2", "c": "3"}
    h = sign(params, b"key")
    assert signature_valid({**params, "h": h}, b"key")
    assert signature_valid({"a": "2", "c": "3", "b": "1", "h": h}, b"key")
    assert not signature_valid({**params, "c": "4", "h": h}, b"key")
    assert not signature_valid(params, b"key")  # no h at all


def test_other_paths_are_not_found(server: Server) -> None:
    import requests

    assert requests.get(server.url.replace("verify", "other"), timeout=10).status_code == 404


def test_api_keys_are_sealed_at_rest(tmp_path: Any) -> None:
    store = SqliteStore(str(tmp_path / "c.db"))
    clients = StoreApiClients(store, sealer())
    clients.add(API)
    raw = store.get("ykval:client:87")
    assert raw is not None and base64.b64encode(API.key) not in raw
    assert clients.get("87") == API
    created = clients.create(DeterministicRandom(3))
    assert clients.get(created.id) == created
    store.close()


@given(st.text(max_size=300))
def test_any_query_gets_a_protocol_answer(query: str) -> None:
    service = _PROPERTY_SERVICE
    answer = service.handle(query, NOW)
    assert answer.status in STATUSES
    params = parse_response(answer.body)
    assert params["status"] == answer.status
    if "h" in params:
        assert signature_valid(params, API.key)


@given(
    st.dictionaries(
        st.sampled_from(["id", "otp", "nonce", "h", "sl", "timeout", "timestamp", "x"]),
        st.one_of(st.text(max_size=50), st.just("87"), st.just(otp(1, 0))),
    )
)
def test_any_parameters_get_a_protocol_answer(params: dict[str, str]) -> None:
    from urllib.parse import urlencode

    answer = _PROPERTY_SERVICE.handle(urlencode(params), NOW)
    assert answer.status in STATUSES
    try:
        parsed = parse_response(answer.body)
    except DecodeError:  # pragma: no cover - would be a bug
        pytest.fail("unparseable response")
    assert parsed["status"] == answer.status


_PROPERTY_SERVICE = make_service(MemoryStore())


# -- eapkit's service check (yubico-client inside) against the server -------------------


def service_check(urls: tuple[str, ...], api: ApiClient = API, **kw: Any) -> Any:
    from eapkit.verify.yubico_client import YubicoServiceCheck

    return YubicoServiceCheck(
        api.id,
        api.key_b64,
        public_ids=lambda user: [PUBLIC] if user == "alice" else [],
        api_urls=urls,
        timeout=5,
        rand=DeterministicRandom(9),
        **kw,
    )


def test_service_check_verdicts(server: Server) -> None:
    check = service_check((server.url,))
    first = check.verify("alice", otp(20, 1), NOW)
    assert (first.ok, first.reason, first.step) == (True, "ok", 20 << 8 | 1)
    assert check.verify("alice", otp(20, 1), NOW).reason == "replayed"
    assert check.verify("alice", otp(20, 2, key=bytes(16)), NOW).reason == "bad_code"
    assert check.verify("alice", "not an otp", NOW).reason == "malformed"
    assert check.verify("bob", otp(20, 3), NOW).reason == "unknown_user"  # nothing enrolled
    assert check.verify("alice", otp(20, 3, public=OTHER_PUBLIC), NOW).reason == "bad_code"
    # the refusals above did not reach the service: this OTP is still fresh
    verdict = check("alice", otp(20, 3), NOW)
    assert verdict.ok and verdict.user == "alice"
    assert check.verify(None, otp(20, 4), NOW).ok  # no binding asked for


def test_service_check_fails_closed(server: Server) -> None:
    wrong_key = service_check((server.url,), ApiClient(API.id, b"\x55" * 20))
    verdict = wrong_key.verify("alice", otp(21, 0), NOW)
    assert (verdict.reason, verdict.detail.startswith("response signature")) == (
        "store_unavailable",
        True,
    )
    disabled = service_check((server.url,), DISABLED).verify("alice", otp(21, 0), NOW)
    assert (disabled.reason, disabled.detail) == (
        "store_unavailable",
        "service: OPERATION_NOT_ALLOWED",
    )
    from tests.conftest import free_tcp_port

    nobody = f"http://127.0.0.1:{free_tcp_port()}{VERIFY_PATH}"
    assert service_check((nobody,)).verify("alice", otp(21, 0), NOW).reason == "store_unavailable"
    # failover: the first server does not answer, the second does
    assert service_check((nobody, server.url)).verify("alice", otp(21, 0), NOW).ok


def test_service_check_tries_the_next_server_after_a_backend_error(server: Server) -> None:
    store, broken = broken_backend()
    httpd, url = start(broken)
    try:
        store.down = True
        check = service_check((url, server.url))
        assert check.verify("alice", otp(22, 0), NOW).ok
        only_broken = service_check((url,)).verify("alice", otp(22, 1), NOW)
        assert (only_broken.reason, only_broken.detail) == (
            "store_unavailable",
            "service: BACKEND_ERROR",
        )
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_service_check_refuses_a_response_that_does_not_echo() -> None:
    """A man in the middle replaying an old signed OK for another OTP is refused."""
    store = MemoryStore()
    service = make_service(store)
    good = service.handle(
        f"id=87&otp={otp(1, 0)}&nonce={'a' * 16}", NOW
    ).body  # signed OK for another OTP and nonce

    import http.server

    class Replayer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = good.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Replayer)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}{VERIFY_PATH}"
        verdict = service_check((url,)).verify("alice", otp(1, 1), NOW)
        assert verdict.reason == "store_unavailable" and "echo" in verdict.detail
    finally:
        httpd.shutdown()
        httpd.server_close()
