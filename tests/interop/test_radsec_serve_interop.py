"""Real RadSec software in front of ``eapkit serve``'s TLS listener (RFC 6614).

1. ``eapol_test`` -> radsecproxy 1.9 (UDP in, TLS out) -> ``eapkit serve`` (``[radsec]``):
   every EAP method eapkit serves, the EAP methods' TLS in 1.2 and 1.3, the RadSec hop
   pinned to TLS 1.2 and to TLS 1.3 (radsecproxy ``TlsVersion``; the rows of
   ``MORE_ROWS``, TEAP with the TEAP-enabled eapol_test, and the TTLS inner methods
   serve refuses run over the TLS 1.3 hop only), ``MPPE keys OK``
   (eapkit hid the MS-MPPE keys with ``radsec``, radsecproxy re-hid them with the UDP
   secret), and each decision line saying it came over RadSec from the ``gateway``.
   A radsecproxy whose client certificate is from another CA (or from the right CA
   with a name no ``[[radsec.clients]]`` entry matches) is refused at the TLS layer:
   eapkit serve logs the refused connection, eapol_test gets no Accept.  With
   ``StatusServer on`` radsecproxy's watchdog (RFC 5997) gets its answer over TLS.
2. FreeRADIUS 3.2 as a RadSec proxy (``home_server`` with ``proto = tcp`` and a
   ``tls`` section, a ``home_server_pool`` and a ``realm``): ``eapol_test`` ->
   FreeRADIUS (UDP) -> eapkit serve (TLS).

The configurations are those of docs/radsec.md's radsecproxy and FreeRADIUS sections.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eapkit import pki
from eapkit.private_files import write_private
from tests.conftest import free_tcp_port
from tests.interop.radsec_tools import (
    FreeRadiusRadsecProxy,
    RadsecProxy,
    serve_output,
    wait_for_tcp,
)
from tests.interop.teap_tools import teap_eapol_test, teap_network
from tests.interop.tools import EapkitServe, EapolResult, eapol_test

pytestmark = pytest.mark.interop

SERVER_NAME = "radius.eapkit.test"  # the dNSName of eapkit serve's RadSec certificate
PASSWORD = "wonderland"


@dataclass(frozen=True)
class HopPki:
    """The RadSec hop's certificates (not the EAP methods': those are serve's demo PKI)."""

    work: Path

    def path(self, name: str) -> Path:
        return self.work / name


@pytest.fixture(scope="module")
def hop(tmp_path_factory: pytest.TempPathFactory) -> HopPki:
    work = tmp_path_factory.mktemp("radsec-hop")
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("RadSec NAS CA", now=now)
    rogue_ca = pki.make_ca("RadSec NAS CA", now=now)  # same name, another key
    issued = {
        "server": pki.make_server(ca, [SERVER_NAME], now=now),
        "gateway": pki.make_client(ca, "gateway", now=now),
        "intruder": pki.make_client(ca, "intruder", now=now),  # right CA, no entry
        "rogue": pki.make_client(rogue_ca, "gateway", now=now),  # right name, wrong CA
    }
    (work / "ca.pem").write_bytes(ca.cert_pem)
    for name, cert in issued.items():
        (work / f"{name}.pem").write_bytes(cert.chain_pem)
        write_private(work / f"{name}.key", cert.key_pem)
    return HopPki(work)


def serve_config(hop: HopPki, port: int) -> str:
    """The ``[radsec]`` table of docs/radsec.md, on 127.0.0.1:``port``; serve's default
    methods and TEAP last (a peer that wants another Naks it), with hostap 2.10's TEAP
    key derivations (``compat = "rfc7170"``, docs/teap.md) for the TEAP-enabled
    eapol_test."""
    return (
        'methods = ["tls", "ttls", "peap", "mschapv2", "gtc", "teap"]\n'
        '\n[teap]\ncompat = "rfc7170"\n\n'
        "[radsec]\n"
        f'listen = ["127.0.0.1:{port}"]\n'
        f'cert = "{hop.path("server.pem")}"\n'
        f'key = "{hop.path("server.key")}"\n'
        'min_version = "1.2"\n'
        "idle_timeout = 60\n"
        "\n[[radsec.clients]]\n"
        'name = "gateway"\n'
        f'ca = "{hop.path("ca.pem")}"\n'
        'subject = "gateway"\n'
    )


@pytest.fixture(scope="module")
def serve(hop: HopPki) -> Iterator[tuple[EapkitServe, int]]:
    work = hop.work / "serve"
    work.mkdir()
    port = free_tcp_port()
    config = work / "eapkit.toml"
    config.write_text(serve_config(hop, port))
    config.chmod(0o600)
    with EapkitServe(work, extra=["--config", str(config)]) as server:
        wait_for_tcp(port, server)
        yield server, port


def _proxy(
    hop: HopPki,
    port: int,
    name: str,
    client: str = "gateway",
    tls_version: str | None = None,
    status_server: str | None = None,
) -> RadsecProxy:
    """radsecproxy forwarding to 127.0.0.1:``port`` with ``client``'s certificate."""
    return RadsecProxy(
        hop.work / f"radsecproxy-{name}",
        port,
        ca=hop.path("ca.pem"),
        cert=hop.path(f"{client}.pem"),
        key=hop.path(f"{client}.key"),
        server_name=SERVER_NAME,
        tls_version=tls_version,
        status_server=status_server,
    )


@pytest.fixture(scope="module", params=["1.2", "1.3"], ids=["hop-tls12", "hop-tls13"])
def bridge(
    request: pytest.FixtureRequest, hop: HopPki, serve: tuple[EapkitServe, int]
) -> Iterator[RadsecProxy]:
    """radsecproxy with the gateway's certificate, its TLS hop pinned to one version."""
    version: str = request.param
    with _proxy(hop, serve[1], f"tls{version}", tls_version=version) as proxy:
        yield proxy


# -- 1. eapol_test -> radsecproxy (UDP) -> eapkit serve (TLS) ------------------------------

_TLS13 = 'phase1="tls_disable_tlsv1_3=0"\n'
_TLS12 = 'phase1="tls_disable_tlsv1_3=1"\n'
_OUTER = 'anonymous_identity="anonymous"\n'
_CERT = 'client_cert="{pki}/alice.pem"\nprivate_key="{pki}/alice.key"\n'

# name -> (network block, no_mppe, the EAP method's TLS version or None)
ROWS: dict[str, tuple[str, bool, str | None]] = {
    "tls-tls12": ("eap=TLS\n" + _CERT + _TLS12, False, "1.2"),
    "tls-tls13": ("eap=TLS\n" + _CERT + _TLS13, False, "1.3"),
    "ttls-pap-tls12": ('eap=TTLS\nphase2="auth=PAP"\n' + _OUTER + _TLS12, False, "1.2"),
    "ttls-pap-tls13": ('eap=TTLS\nphase2="auth=PAP"\n' + _OUTER + _TLS13, False, "1.3"),
    "ttls-eap-mschapv2-tls12": (
        'eap=TTLS\nphase2="autheap=MSCHAPV2"\n' + _OUTER + _TLS12,
        False,
        "1.2",
    ),
    "ttls-eap-mschapv2-tls13": (
        'eap=TTLS\nphase2="autheap=MSCHAPV2"\n' + _OUTER + _TLS13,
        False,
        "1.3",
    ),
    "peap-mschapv2-tls12": ('eap=PEAP\nphase2="auth=MSCHAPV2"\n' + _OUTER + _TLS12, False, "1.2"),
    "peap-mschapv2-tls13": ('eap=PEAP\nphase2="auth=MSCHAPV2"\n' + _OUTER + _TLS13, False, "1.3"),
    "mschapv2": ("eap=MSCHAPV2\n", False, None),
    "gtc": ("eap=GTC\n", True, None),  # EAP-GTC derives no MSK (INTEROP.md): -n
}


def _eapol(
    serve: EapkitServe,
    port: int,
    workdir: Path,
    network: str,
    *,
    no_mppe: bool = False,
    password: str = PASSWORD,
    timeout: int = 15,
) -> EapolResult:
    block = (
        "key_mgmt=IEEE8021X\n"
        + network.format(pki=serve.pki)
        + f'identity="alice"\npassword="{password}"\nca_cert="{serve.pki / "ca.pem"}"\n'
    )
    return eapol_test(block, port, workdir, no_mppe=no_mppe, timeout=timeout)


def _explain(result: EapolResult, bridge: RadsecProxy, server: EapkitServe) -> str:
    return (
        result.output[-2500:]
        + "\n--- radsecproxy ---\n"
        + bridge.output()[-2000:]
        + "\n--- eapkit serve ---\n"
        + serve_output(server)[-2000:]
    )


def _accepted_over_the_hop(
    result: EapolResult,
    bridge: RadsecProxy,
    server: EapkitServe,
    before: int,
    *,
    no_mppe: bool = False,
    tls: str | None = None,
) -> dict[str, Any]:
    """eapol_test's success (and ``MPPE keys OK``), relayed by radsecproxy from the TLS
    hop, decided by serve's RadSec listener for the gateway: the decision line."""
    explain = _explain(result, bridge, server)
    assert result.success, explain
    assert no_mppe or result.mppe_ok, explain
    if tls is not None:
        assert f"TLSv{tls}" in result.output, explain
    # The Accept came over the TLS hop: radsecproxy relayed it "from home" ...
    accepted = [line for line in bridge.output().splitlines() if "Access-Accept for user" in line]
    assert accepted and "from home to nas" in accepted[-1], explain
    # ... and eapkit serve decided it on its RadSec listener, for the gateway's certificate.
    [decision] = [d for d in server.decisions[before:] if d.get("result") == "accept"]
    assert decision["user"] == "alice", decision
    assert decision["transport"] == "radsec" and decision["radius_version"] == "1.0", decision
    assert decision["client"] == "gateway", decision
    return dict(decision)


@pytest.mark.parametrize("row", sorted(ROWS))
def test_eapol_test_through_radsecproxy_to_serve(
    bridge: RadsecProxy, serve: tuple[EapkitServe, int], tmp_path: Path, row: str
) -> None:
    server, _ = serve
    network, no_mppe, tls = ROWS[row]
    before = len(server.decisions)
    result = _eapol(server, bridge.port, tmp_path, network, no_mppe=no_mppe)
    _accepted_over_the_hop(result, bridge, server, before, no_mppe=no_mppe, tls=tls)


def _peap(version: int, inner: str, tls13: bool = False) -> str:
    """PEAP with ``peapver`` pinned: wpa_supplicant without it takes the server's
    version, and serve offers 1 (docs/interop.md, "PEAP versions")."""
    phase1 = f'phase1="peapver={version} tls_disable_tlsv1_3={0 if tls13 else 1}"\n'
    return f'eap=PEAP\n{phase1}phase2="auth={inner}"\n' + _OUTER


# The rest of what serve offers and eapol_test drives, through one hop (TLS 1.3):
# name -> (network block, the decision's inner_method, a line of eapol_test's log)
MORE_ROWS: dict[str, tuple[str, str, str]] = {
    "ttls-mschapv2-tls13": (
        'eap=TTLS\nphase2="auth=MSCHAPV2"\n' + _OUTER + _TLS13,
        "mschapv2",  # MS-CHAP-V2 in Diameter AVPs (RFC 5281 §11.2.4), not inner EAP
        "EAP-TTLS: Phase 2 MSCHAPV2 authentication succeeded",
    ),
    "ttls-eap-gtc-tls12": (
        'eap=TTLS\nphase2="autheap=GTC"\n' + _OUTER + _TLS12,
        "eap-gtc",
        "EAP-TTLS: Selected Phase 2 EAP vendor 0 method 6",  # GTC
    ),
    "peap0-mschapv2-tls12": (_peap(0, "MSCHAPV2"), "eap-mschapv2", "Using PEAP version 0"),
    "peap1-mschapv2-tls12": (_peap(1, "MSCHAPV2"), "eap-mschapv2", "Using PEAP version 1"),
    "peap1-gtc-tls12": (_peap(1, "GTC"), "eap-gtc", "Using PEAP version 1"),
}


@pytest.mark.parametrize("bridge", ["1.3"], indirect=True)
@pytest.mark.parametrize("row", sorted(MORE_ROWS))
def test_more_methods_through_radsecproxy_to_serve(
    bridge: RadsecProxy, serve: tuple[EapkitServe, int], tmp_path: Path, row: str
) -> None:
    server, _ = serve
    network, inner, logged = MORE_ROWS[row]
    before = len(server.decisions)
    result = _eapol(server, bridge.port, tmp_path, network)
    decision = _accepted_over_the_hop(result, bridge, server, before)
    assert decision["inner_method"] == inner, decision
    assert logged in result.output, _explain(result, bridge, server)


@pytest.mark.parametrize("bridge", ["1.3"], indirect=True)
@pytest.mark.parametrize("tls13", [False, True], ids=["tls12", "tls13"])
def test_teap_through_radsecproxy_to_serve(
    bridge: RadsecProxy, serve: tuple[EapkitServe, int], tmp_path: Path, tls13: bool
) -> None:
    """EAP-TEAP (the user, inner EAP-MSCHAPv2) with the TEAP-enabled eapol_test of
    /opt/eapkit/teap: ``MPPE keys OK`` is hostap's MSK equal to the keys serve sent over
    TLS and radsecproxy re-hid with the UDP secret."""
    server, _ = serve
    network = teap_network({"ca.pem": server.pki / "ca.pem"}, tls13=tls13)
    before = len(server.decisions)
    result = teap_eapol_test(network, bridge.port, tmp_path, secret=bridge.secret)
    decision = _accepted_over_the_hop(result, bridge, server, before, tls="1.3" if tls13 else "1.2")
    assert decision["method"] == "TEAP", decision
    assert decision["tls_version"] == ("TLSv1.3" if tls13 else "TLSv1.2"), decision
    inner = [(i["type"], i["method"], i["success"]) for i in decision["inner"]]
    assert inner == [("user", "eap-mschapv2", True)], decision


# TTLS inner methods serve does not offer: CHAP needs cleartext passwords, which the user
# directory does not keep (catalog._ttls_server), and MS-CHAP (v1) is not implemented.
# name -> (network block, the decision's reason)
REFUSED_ROWS: dict[str, tuple[str, str]] = {
    "ttls-chap": ('eap=TTLS\nphase2="auth=CHAP"\n' + _OUTER + _TLS12, "inner_method_not_allowed"),
    "ttls-mschap": ('eap=TTLS\nphase2="auth=MSCHAP"\n' + _OUTER + _TLS12, "unsupported_avp"),
}


@pytest.mark.parametrize("bridge", ["1.3"], indirect=True)
@pytest.mark.parametrize("row", sorted(REFUSED_ROWS))
def test_ttls_inner_methods_serve_does_not_offer_are_rejected(
    bridge: RadsecProxy, serve: tuple[EapkitServe, int], tmp_path: Path, row: str
) -> None:
    server, _ = serve
    network, reason = REFUSED_ROWS[row]
    before = len(server.decisions)
    result = _eapol(server, bridge.port, tmp_path, network)
    explain = _explain(result, bridge, server)
    assert not result.success and result.access_reject, explain
    [decision] = [d for d in server.decisions[before:] if "result" in d]
    assert (decision["result"], decision["reason"]) == ("reject", reason), decision
    assert decision["transport"] == "radsec" and decision["client"] == "gateway", decision


def test_wrong_password_through_radsecproxy_is_rejected(
    bridge: RadsecProxy, serve: tuple[EapkitServe, int], tmp_path: Path
) -> None:
    server, _ = serve
    result = _eapol(server, bridge.port, tmp_path, "eap=MSCHAPV2\n", password="guess")
    assert not result.success and result.access_reject, result.output[-2000:]
    assert server.decisions[-1]["result"] == "reject"
    assert server.decisions[-1]["transport"] == "radsec"


# radsecproxy 1.9.2 sends a Status-Server when nothing came from the server for
# STATUS_SERVER_PERIOD (25 s, compiled in) plus a random 0-7 s; it cannot be shortened.
WATCHDOG_WAIT = 25 + 7 + 10


def test_serve_answers_radsecproxys_status_server_watchdog(
    hop: HopPki, serve: tuple[EapkitServe, int], tmp_path: Path
) -> None:
    """``StatusServer on`` in radsecproxy's server block: radsecproxy then judges eapkit
    serve alive by Status-Server alone (the watchdog of RFC 5997 §4).  eapkit answers it
    over the TLS hop (radsecproxy logs the response only after checking its Response
    Authenticator and Message-Authenticator against the ``radsec`` secret), the
    watchdog writes no decision line, and logins pass before and after it."""
    server, port = serve
    name = f"watchdog-{tmp_path.name}"
    with _proxy(hop, port, name, status_server="on") as proxy:
        before = _eapol(server, proxy.port, tmp_path / "before", "eap=MSCHAPV2\n")
        decisions = len(server.decisions)
        deadline = time.monotonic() + WATCHDOG_WAIT
        while "replyh: got status server response from home" not in proxy.output():
            assert time.monotonic() < deadline, proxy.output()[-3000:] + serve_output(server)
            time.sleep(0.5)
        watched = len(server.decisions)
        after = _eapol(server, proxy.port, tmp_path / "after", "eap=MSCHAPV2\n")
        log = proxy.output()
    explain = log[-3000:] + "\n--- eapkit serve ---\n" + serve_output(server)[-2000:]
    assert before.success and before.mppe_ok, before.output[-2000:] + explain
    assert "clientwr: sending Status-Server to home" in log, explain
    assert "no status server response" not in log, explain
    assert watched == decisions, server.decisions[decisions:]  # not an Access-Request
    assert after.success and after.mppe_ok, after.output[-2000:] + explain
    assert server.decisions[-1]["result"] == "accept"
    assert server.decisions[-1]["transport"] == "radsec"


@pytest.mark.parametrize(
    ("client", "reason"),
    [("rogue", "certificate_refused"), ("intruder", "unknown_client")],
    ids=["client-cert-from-another-ca", "client-cert-no-entry"],
)
def test_radsecproxy_with_a_foreign_certificate_is_refused(
    hop: HopPki, serve: tuple[EapkitServe, int], tmp_path: Path, client: str, reason: str
) -> None:
    """A NAS certificate from another CA fails the handshake; one from the right CA that
    no ``[[radsec.clients]]`` entry names is closed right after it.  Either way eapkit
    serve logs the refused connection and eapol_test never sees an Accept."""
    server, port = serve
    refused = f"closed: {reason}"
    before = serve_output(server).count(refused)
    decisions = len(server.decisions)
    with _proxy(hop, port, f"{client}-{tmp_path.name}", client=client) as proxy:
        result = _eapol(server, proxy.port, tmp_path, "eap=MSCHAPV2\n", timeout=4)
        explain = result.output[-1500:] + "\n--- radsecproxy ---\n" + proxy.output()[-2000:]
    explain += "\n--- eapkit serve ---\n" + serve_output(server)[-2000:]
    assert not result.success and "Access-Accept" not in result.output, explain
    assert serve_output(server).count(refused) > before, explain
    assert len(server.decisions) == decisions, explain  # nothing got to the RADIUS core
    # and the listener keeps serving the right gateway
    with _proxy(hop, port, f"after-{client}-{tmp_path.name}") as proxy:
        again = _eapol(server, proxy.port, tmp_path / "again", "eap=MSCHAPV2\n")
    assert again.success and again.mppe_ok, again.output[-2000:]


def test_a_tls12_hop_is_refused_by_min_version_13(hop: HopPki, tmp_path: Path) -> None:
    """``min_version = "1.3"``: radsecproxy pinned to TLS 1.2 is refused at the
    handshake, pinned to 1.3 it authenticates (so ``TlsVersion`` really pins the hop)."""
    port = free_tcp_port()
    config = tmp_path / "eapkit.toml"
    config.write_text(serve_config(hop, port).replace('min_version = "1.2"', 'min_version = "1.3"'))
    config.chmod(0o600)
    with EapkitServe(tmp_path / "serve", extra=["--config", str(config)]) as server:
        wait_for_tcp(port, server)
        with _proxy(hop, port, f"pin12-{tmp_path.name}", tls_version="1.2") as old:
            refused = _eapol(server, old.port, tmp_path / "12", "eap=MSCHAPV2\n", timeout=4)
        with _proxy(hop, port, f"pin13-{tmp_path.name}", tls_version="1.3") as new:
            accepted = _eapol(server, new.port, tmp_path / "13", "eap=MSCHAPV2\n")
        log = serve_output(server)
    assert not refused.success and "Access-Accept" not in refused.output, log
    assert "closed: handshake_failed SSLError [SSL: UNSUPPORTED_PROTOCOL]" in log, log
    assert accepted.success and accepted.mppe_ok, accepted.output[-2000:] + log


# -- 2. eapol_test -> FreeRADIUS (UDP, proxy) -> eapkit serve (TLS) ------------------------


@pytest.fixture(scope="module", params=["1.2", "1.3"], ids=["hop-tls12", "hop-tls13"])
def freeradius_proxy(
    request: pytest.FixtureRequest, hop: HopPki, serve: tuple[EapkitServe, int]
) -> Iterator[FreeRadiusRadsecProxy]:
    """FreeRADIUS proxying to eapkit serve, its TLS hop capped at one version."""
    version: str = request.param
    with FreeRadiusRadsecProxy(
        hop.work / f"freeradius-proxy-{version}",
        home_port=serve[1],
        home_cert=hop.path("gateway.pem"),
        home_key=hop.path("gateway.key"),
        home_ca=hop.path("ca.pem"),
        home_tls_max_version=version,
    ) as proxy:
        yield proxy


FREERADIUS_ROWS = [
    "mschapv2",
    "ttls-pap-tls12",
    "ttls-pap-tls13",
    "peap-mschapv2-tls12",
    "tls-tls13",
]


@pytest.mark.parametrize("row", FREERADIUS_ROWS)
def test_eapol_test_through_freeradius_proxy_to_serve(
    freeradius_proxy: FreeRadiusRadsecProxy,
    serve: tuple[EapkitServe, int],
    tmp_path: Path,
    row: str,
) -> None:
    server, _ = serve
    network, no_mppe, tls = ROWS[row]
    before = len(server.decisions)
    result = _eapol(server, freeradius_proxy.port, tmp_path, network, no_mppe=no_mppe)
    explain = (
        result.output[-2500:]
        + "\n--- FreeRADIUS ---\n"
        + freeradius_proxy.output()[-3000:]
        + "\n--- eapkit serve ---\n"
        + serve_output(server)[-2000:]
    )
    assert result.success, explain
    assert result.mppe_ok, explain  # FreeRADIUS re-hid the keys with its UDP secret
    if tls is not None:
        assert f"TLSv{tls}" in result.output, explain
    [decision] = [d for d in server.decisions[before:] if d.get("result") == "accept"]
    assert decision["transport"] == "radsec" and decision["client"] == "gateway", decision
    # FreeRADIUS's trace of its outgoing handshake shows the hop's version: TLS 1.3
    # states are labelled "TLSv1.3"; only TLS 1.2 has a ServerKeyExchange.
    trace = freeradius_proxy.output()
    if freeradius_proxy.home_tls_max_version == "1.3":
        assert "Client TLSv1.3 read encrypted extensions" in trace, explain
    else:
        assert "Client TLSv1.3" not in trace, explain
        assert "Client SSLv3/TLS read server key exchange" in trace, explain
