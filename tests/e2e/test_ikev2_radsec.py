"""IKEv2 end to end over RadSec (issue 17): strongSwan's ``eap-radius`` speaks UDP only,
so radsecproxy runs beside it in the gateway's namespace and carries every request over
TLS (RFC 6614) to ``eapkit serve``'s RadSec listener, the "sandwich" of docs/radsec.md::

    client charon --IKEv2--> gateway charon --UDP--> radsecproxy --TLS--> eapkit serve
                              (netns gw, all on that namespace's 127.0.0.1)

The user proves password + TOTP (EAP-TTLS, inner EAP-GTC answered with password and
code, as scenario 1 of test_ikev2.py); eapkit's ``[[radsec.clients]]`` entry for the
gateway enforces the second factor, so a password alone is refused.  Success means the
IKE_SA and CHILD_SA are up and a ping goes through, and eapkit's decision says it came
over RadSec from the gateway's certificate.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from eapkit import pki
from tests.conftest import free_tcp_port, free_udp_port, require_tool
from tests.e2e.lab import (
    CLIENT_PLUGINS,
    GATEWAY_ID,
    GATEWAY_PLUGINS,
    RADIUS_ID,
    Charon,
    Lab,
    Serve,
)
from tests.e2e.test_ikev2 import (
    EAP_RADIUS_ROUND,
    Env,
    check_child_sa,
    client_conf,
    connect,
    eap_secret,
    gateway_conf,
    totp_code,
)
from tests.interop.radsec_tools import RadsecProxy

pytestmark = pytest.mark.interop

USER, PASSWORD = "tess", "pencil-tess"
FRAMED_IP = "10.99.0.31"  # in the lab's VIP_NET: the client's virtual IP
NAS_NAME = "vpn-gateway-radsec"  # the gateway's RadSec certificate (CN) and client name


def _serve_config(work: Path, udp_port: int, radsec_port: int) -> str:
    pki_dir = work / "pki"
    return f"""
listen = ["127.0.0.1:{udp_port}"]
db = "{work / "serve" / "eapkit.db"}"
log = "{work / "serve" / "decisions.log"}"
methods = ["ttls", "gtc"]

[tls]
cert = "{pki_dir / "radius.pem"}"
key = "{pki_dir / "radius.key"}"
ca = "{pki_dir / "ca.pem"}"

[radsec]
listen = ["127.0.0.1:{radsec_port}"]
cert = "{pki_dir / "radius.pem"}"
key = "{pki_dir / "radius.key"}"

[[radsec.clients]]
name = "{NAS_NAME}"
ca = "{pki_dir / "ca.pem"}"
subject = "{NAS_NAME}"
second_factor = "enforce"
"""


def _eap_radius(port: int, secret: str) -> str:
    return f"""
    plugins {{
        eap-radius {{
            accounting = no
            retransmit_tries = 2
            retransmit_timeout = 2.0
            servers {{
                radsecproxy {{
                    address = 127.0.0.1
                    auth_port = {port}
                    secret = {secret}
                    nas_identifier = vpn-gateway
                }}
            }}
        }}
    }}
"""


def _make_pki(d: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("eapkit e2e RadSec CA", now=now)
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.pem").write_bytes(ca.cert_pem)
    for name, issued in (
        ("gw", pki.make_server(ca, [GATEWAY_ID], now=now)),
        ("radius", pki.make_server(ca, [RADIUS_ID], now=now)),
        ("nas", pki.make_client(ca, NAS_NAME, now=now)),
    ):
        (d / f"{name}.pem").write_bytes(issued.chain_pem)
        (d / f"{name}.key").write_bytes(issued.key_pem)
        (d / f"{name}.key").chmod(0o600)


@pytest.fixture(scope="module")
def radsec_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, RadsecProxy]]:
    require_tool("oathtool", "ping", "radsecproxy")
    work = tmp_path_factory.mktemp("ikev2-radsec")
    lab = Lab(work)
    with ExitStack() as stack:
        stack.callback(lab.close)
        lab.up()
        esp_refused = lab.kernel_esp()
        plugins_gw, plugins_cl = GATEWAY_PLUGINS, CLIENT_PLUGINS
        if esp_refused is not None:
            plugins_gw = plugins_gw.replace("kernel-netlink", "kernel-libipsec kernel-netlink")
            plugins_cl = plugins_cl.replace("kernel-netlink", "kernel-libipsec kernel-netlink")
        _make_pki(work / "pki")
        udp_port, radsec_port, proxy_port = free_udp_port(), free_tcp_port(), free_udp_port()
        secret = "radius-" + secrets.token_hex(8)  # strongSwan -> radsecproxy (UDP)
        serve = Serve(lab.gateway_ns, work / "serve", _serve_config(work, udp_port, radsec_port))
        env = Env(
            lab=lab,
            gw=Charon(lab.gateway_ns, work / "gw", plugins_gw, _eap_radius(proxy_port, secret)),
            cl=Charon(lab.client_ns, work / "cl", plugins_cl),
            serve=serve,
            work=work,
            secret=secret,
            radius_ports=(proxy_port, 0),
            esp_refused=esp_refused,
        )
        env.gw.install("x509", "gw.pem", (work / "pki" / "gw.pem").read_bytes())
        env.gw.install("private", "gw.key", (work / "pki" / "gw.key").read_bytes())
        env.cl.install("x509ca", "ca.pem", (work / "pki" / "ca.pem").read_bytes())
        db = str(serve.db)
        serve.workdir.mkdir(parents=True, exist_ok=True)
        serve.eapkit(
            "user", "add", USER, "--password", PASSWORD, "--framed-ip", FRAMED_IP, "--db", db
        )
        out = serve.eapkit("enroll", "totp", USER, "--no-terminal", "--db", db)
        found = re.search(r"secret=([A-Z2-7]+)", out.stdout)
        assert found is not None, out.stdout
        env.totp[USER] = found.group(1)
        lab.start(serve)
        proxy = RadsecProxy(
            work / "radsecproxy",
            radsec_port,
            ca=work / "pki" / "ca.pem",
            cert=work / "pki" / "nas.pem",
            key=work / "pki" / "nas.key",
            server_name=RADIUS_ID,
            secret=secret,
            port=proxy_port,
            netns=lab.gateway_ns,
        )
        stack.enter_context(proxy)  # stopped (by pid) before the namespaces go
        lab.start(env.gw)
        lab.start(env.cl)
        yield env, proxy
        env.cl.terminate_all()
        env.gw.terminate_all()


def _client(password: str) -> str:
    local = f"""
        local {{
            auth = eap-ttls
            eap_id = {USER}
            aaa_id = {RADIUS_ID}
        }}
"""
    return client_conf(local, eap_secret("tess", USER, password))


GATEWAY = gateway_conf(EAP_RADIUS_ROUND.format(suffix=""))


def test_strongswan_radsecproxy_eapkit_password_and_totp(
    radsec_env: tuple[Env, RadsecProxy],
) -> None:
    env, proxy = radsec_env
    a = connect(env, GATEWAY, _client(PASSWORD + totp_code(env, USER)))
    explain = (
        a.output[-2000:]
        + "\n--- gateway ---\n"
        + a.gw_log[-3000:]
        + "\n--- radsecproxy ---\n"
        + proxy.output()[-2000:]
    )
    assert a.ok, explain
    assert a.client_sa.get("state") == "ESTABLISHED", explain
    assert a.gateway_sa.get("state") == "ESTABLISHED", explain
    assert f"RADIUS authentication of '{USER}' successful" in a.gw_log, explain
    [decision] = [d for d in a.decisions if d["result"] == "accept"]
    assert (decision["user"], decision["method"], decision["inner_method"]) == (
        USER,
        "TTLS",
        "eap-gtc",
    ), decision
    assert decision["transport"] == "radsec" and decision["client"] == NAS_NAME, decision
    # Framed-IP-Address came back through radsecproxy: the client's virtual IP
    assert a.client_sa.get("local-vips") == [FRAMED_IP], a.client_sa
    # radsecproxy relayed the Accept from eapkit over TLS
    assert "from home to nas" in proxy.output(), explain
    check_child_sa(env, a)
    env.cl.swanctl("--terminate", "--ike", "home", "--timeout", "10")


def test_password_without_code_is_refused_over_radsec(
    radsec_env: tuple[Env, RadsecProxy],
) -> None:
    env, _ = radsec_env
    a = connect(env, GATEWAY, _client(PASSWORD))
    assert not a.ok and a.client_sa.get("state") != "ESTABLISHED", a.output[-2000:]
    [decision] = [d for d in a.decisions if "result" in d]
    assert decision["result"] == "reject" and decision["transport"] == "radsec", decision
