"""IKEv2 against Active Directory (issue 18): a strongSwan client, a strongSwan gateway
(``eap-radius``) and ``eapkit serve`` with ``[directory] kind = "ad"`` against a Samba
DC (:mod:`tests.interop.samba_dc`), end to end:

- alice (AD password, TOTP enrolled with ``eapkit enroll totp`` under her objectGUID)
  over EAP-TTLS with password + code gets a CHILD_SA and a ping through; her Framed-IP
  and Session-Timeout come from ``[[policy.groups]]`` (vpn-admins, through the nested
  vpn-staff);
- alice in two rounds: EAP-MSCHAPv2 checked by the DC through ``ntlm_auth
  --request-nt-key`` (its NT key gives the MSK, which both charons need for the IKE AUTH
  payload: a tunnel means the MPPE keys are right), then EAP-GTC with the code;
- bob (disabled in AD) with his right password and a code, and alice with a wrong
  code, are refused: no IKE_SA, the reason in eapkit's decision log.

Four network namespaces, on addresses that cannot meet: the lab's client and gateway
(192.0.2.0/24, 198.51.100.1, virtual IPs 10.99.0.0/24, :mod:`tests.e2e.lab`), the DC's
(10.233.X.Y/30 to the host, picked by samba_dc), and one more veth pair, gateway <-> DC,
on 10.98.0.0/30 (inside those two namespaces only), with a host route in the gateway to
the DC's address (its LDAPS certificate names that address).  ``ntlm_auth`` reaches
winbind through ``/run/samba/winbindd/pipe``, a file: namespaces do not stand in the way.

One DC for the module (it provisions in 17-60 s); the scenarios take a few seconds each.
Needs root, strongSwan, Samba (``samba``, ``winbind``) and oathtool.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_udp_port, require_tool
from tests.e2e.lab import (
    CLIENT_PLUGINS,
    GATEWAY_ID,
    GATEWAY_PLUGINS,
    RADIUS_ID,
    Charon,
    Lab,
    Serve,
    run,
)
from tests.e2e.test_ikev2 import (
    EAP_RADIUS_ROUND,
    OTP_AAA_ID,
    TWO_EAP_RADIUS_ROUNDS,
    Attempt,
    Env,
    User,
    _eap_radius_settings,
    _make_pki,
    check_established,
    check_refused,
    client_conf,
    connect,
    eap_secret,
    gateway_conf,
    totp_code,
    wrong_code,
)
from tests.interop.samba_dc import BASE, BIND_DN, BIND_PASSWORD, DOMAIN, PASSWORDS, running_dc

pytestmark = pytest.mark.interop

# gateway <-> DC link: only inside the gateway's and the DC's namespaces
LINK_GW, LINK_DC = "10.98.0.1", "10.98.0.2"
ALICE = User("alice", PASSWORDS["alice"], "totp", "10.99.0.31", 3600)
BOB = User("bob", PASSWORDS["bob"], "none")


def _serve_config(
    work: Path, ports: tuple[int, int], secret: str, dc_url: str, ca: Path, smb: Path
) -> str:
    return f"""
listen = ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"]
db = "{work / "serve" / "eapkit.db"}"
log = "{work / "serve" / "decisions.log"}"
methods = ["ttls", "mschapv2", "gtc"]
gtc = "code"  # bare GTC is the second round's code; TTLS's inner GTC is password + code

[tls]
cert = "{work / "pki" / "radius.pem"}"
key = "{work / "pki" / "radius.key"}"
ca = "{work / "pki" / "ca.pem"}"

[directory]
kind = "ad"
servers = ["{dc_url}"]
base = "{BASE}"
bind_dn = "{BIND_DN}"
bind_password_file = "{work / "serve" / "bind.pw"}"
ca = "{ca}"
timeout = 3
domain = "{DOMAIN}"
ntlm_auth = ["ntlm_auth", "--configfile={smb}"]

[[policy.groups]]
group = "vpn-admins"      # alice is in it through vpn-staff
framed_ip = "{ALICE.framed_ip}"
session_timeout = {ALICE.session_timeout}

[[clients]]
address = "127.0.0.1/32"
secret = "{secret}"
name = "vpn-gateway"
second_factor = "nas"     # the two-round scenario asks for the code in a round of its own
bind_rounds = false
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_tool("oathtool", "ping", "ntlm_auth")
    work = tmp_path_factory.mktemp("ikev2-ad")
    lab = Lab(work)  # root and strongSwan are checked first: no DC for nothing
    with running_dc(work / "dc") as dc:
        try:
            lab.up()
            # the gateway (where eapkit serve runs) reaches the DC over a link of its own
            run(
                [
                    *("ip", "link", "add", "adl-gw", "netns", lab.gateway_ns, "type", "veth"),
                    *("peer", "name", "adl-dc", "netns", dc.netns),
                ]
            )
            lab.ns(lab.gateway_ns, "ip", "addr", "add", f"{LINK_GW}/30", "dev", "adl-gw")
            lab.ns(lab.gateway_ns, "ip", "link", "set", "adl-gw", "up")
            lab.ns(dc.netns, "ip", "addr", "add", f"{LINK_DC}/30", "dev", "adl-dc")
            lab.ns(dc.netns, "ip", "link", "set", "adl-dc", "up")
            lab.ns(lab.gateway_ns, "ip", "route", "add", f"{dc.address}/32", "via", LINK_DC)
            esp_refused = lab.kernel_esp()
            plugins_gw, plugins_cl = GATEWAY_PLUGINS, CLIENT_PLUGINS
            if esp_refused is not None:
                libipsec = "kernel-libipsec kernel-netlink"
                plugins_gw = plugins_gw.replace("kernel-netlink", libipsec)
                plugins_cl = plugins_cl.replace("kernel-netlink", libipsec)
            secret = "radius-" + secrets.token_hex(8)
            ports = (free_udp_port(), free_udp_port())
            _make_pki(work / "pki")
            (work / "serve").mkdir()
            (work / "serve" / "bind.pw").write_text(BIND_PASSWORD + "\n")
            config = _serve_config(work, ports, secret, dc.ldaps_url, dc.ca, dc.smb_conf)
            serve = Serve(lab.gateway_ns, work / "serve", config)
            env = Env(
                lab=lab,
                gw=Charon(
                    lab.gateway_ns, work / "gw", plugins_gw, _eap_radius_settings(ports, secret)
                ),
                cl=Charon(lab.client_ns, work / "cl", plugins_cl),
                serve=serve,
                work=work,
                secret=secret,
                radius_ports=ports,
                esp_refused=esp_refused,
            )
            env.gw.install("x509", "gw.pem", (work / "pki" / "gw.pem").read_bytes())
            env.gw.install("private", "gw.key", (work / "pki" / "gw.key").read_bytes())
            env.cl.install("x509ca", "ca.pem", (work / "pki" / "ca.pem").read_bytes())
            # the administrator's enrollment, from the host (which reaches the DC too)
            (serve.workdir / "eapkit.toml").write_text(config)
            out = serve.eapkit(
                "enroll", "totp", ALICE.name, "--no-terminal", "--config", "eapkit.toml"
            )
            found = re.search(r"secret=([A-Z2-7]+)", out.stdout)
            assert found is not None, out.stdout
            env.totp[ALICE.name] = found.group(1)
            lab.start(serve)
            lab.start(env.gw)
            lab.start(env.cl)
            yield env
        finally:
            lab.close()


@pytest.fixture(autouse=True)
def _no_leftover_sa(env: Env) -> Iterator[None]:
    yield
    env.cl.terminate_all()
    env.gw.terminate_all()


def _ttls(env: Env, user: User, answer: str) -> Attempt:
    """EAP-TTLS to eapkit (the client checks eapkit's certificate), whose inner EAP-GTC
    answer is the password followed by the code (strongSwan's TTLS peer has no PAP)."""
    local = f"""
        local {{
            auth = eap-ttls
            eap_id = {user.name}
            aaa_id = {RADIUS_ID}
        }}
"""
    gw = gateway_conf(EAP_RADIUS_ROUND.format(suffix=""))
    return connect(env, gw, client_conf(local, eap_secret("ad", user.name, answer)))


def test_ad_password_and_totp_over_ttls(env: Env) -> None:
    a = _ttls(env, ALICE, ALICE.password + totp_code(env, ALICE.name))
    check_established(env, a, ALICE, ["TTLS"])  # tunnel, virtual IP, lifetime, ping
    assert [d["inner_method"] for d in a.decisions] == ["eap-gtc"]


def test_ad_mschapv2_by_the_dc_then_code(env: Env) -> None:
    """Round 1's MSK comes from the NT key ``ntlm_auth`` returned: wrong keys would fail
    the IKE AUTH payload, so an established IKE_SA is the MPPE keys' check."""
    local = f"""
        local-1 {{
            auth = eap-mschapv2
            eap_id = {ALICE.name}
        }}
        local-2 {{
            auth = eap-gtc
            eap_id = {ALICE.name}
            aaa_id = {OTP_AAA_ID}
        }}
"""
    creds = eap_secret("pw", ALICE.name, ALICE.password, GATEWAY_ID)
    creds += eap_secret("otp", ALICE.name, totp_code(env, ALICE.name, 1), OTP_AAA_ID)
    a = connect(env, gateway_conf(TWO_EAP_RADIUS_ROUNDS), client_conf(local, creds))
    check_established(env, a, ALICE, ["MSCHAPV2", "GTC"])


def test_ad_disabled_account_refused(env: Env) -> None:
    a = _ttls(env, BOB, BOB.password + "123456")
    check_refused(env, a)
    assert [(d["user"], d["reason"]) for d in a.decisions] == [("bob", "account_disabled")]


def test_ad_wrong_code_refused(env: Env) -> None:
    a = _ttls(env, ALICE, ALICE.password + wrong_code(env, ALICE.name))
    check_refused(env, a)
    assert [(d["user"], d["reason"]) for d in a.decisions] == [("alice", "bad_code")]
