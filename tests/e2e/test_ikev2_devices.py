"""Device certificates bound to EAP users, in the IKEv2 lab (issue 20).

One lab for the module (:mod:`tests.e2e.lab`): a strongSwan client and gateway, and
``eapkit serve`` in the gateway's namespace with a device registry filled by
``eapkit device add``.  The pattern is "certificate + EAP" (RFC 4739): round 1 is the
device's certificate, which the gateway checks itself against the CA and the device
CRL in its ``x509crl/``; round 2 is EAP-GTC with the user's password and TOTP code,
relayed to eapkit.  A second pattern, "EAP-TLS + EAP", relays both rounds to eapkit,
which binds them (``[devices] bind_clients``, :mod:`eapkit.radius.device_rounds`):

- alice's laptop with bob's login: refused (``device_not_allowed``), though bob's
  password and code are right; alice's laptop with alice's login: a tunnel;
- alice's own laptop with alice's login: CHILD_SA up, a ping through it;
- ``eapkit device revoke --crl`` rewrites the device CRL; after ``swanctl
  --load-creds`` the gateway refuses alice's laptop even with the right password and
  code, before any EAP round reaches eapkit.

TOTP codes come from ``oathtool``.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from eapkit import pki
from tests.conftest import free_udp_port, require_tool
from tests.e2e.lab import (
    CLIENT_PLUGINS,
    GATEWAY_ADDR,
    GATEWAY_ID,
    GATEWAY_PLUGINS,
    PROTECTED_ADDR,
    PROTECTED_NET,
    RADIUS_ID,
    Charon,
    Lab,
    Serve,
)

pytestmark = pytest.mark.interop

LAPTOP_ID = "alice-laptop.eapkit.test"
USER_ROUND_ID = "otp.eapkit.test"  # tells the gateway's two eap-radius rounds apart
USERS = {"alice": ("pencil-alice", "10.99.0.31"), "bob": ("pencil-bob", "10.99.0.32")}


@dataclass
class Site:
    work: Path
    ports: tuple[int, int]
    secret: str
    lab: Lab
    gw: Charon
    cl: Charon
    serve: Serve
    pki: Path
    totp: dict[str, str] = field(default_factory=dict)
    used: set[tuple[str, str]] = field(default_factory=set)  # codes spent (single use)

    def eapkit(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.serve.eapkit(*args, "--config", str(self.serve.workdir / "eapkit.toml"))


def _serve_config(work: Path, ports: tuple[int, int], secret: str, bound: bool = False) -> str:
    if bound:  # EAP-TLS + EAP: both rounds here, the user's bound to the device's
        return (
            _serve_config(work, ports, secret).replace(
                'methods = ["gtc"]', 'methods = ["tls", "gtc"]'
            )
            + f"""
[tls]
cert = "{work / "pki" / "radius.pem"}"
key = "{work / "pki" / "radius.key"}"
ca = "{work / "pki" / "ca.pem"}"

[devices]
bind_clients = ["vpn-gateway"]
"""
        )
    return f"""
listen = ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"]
db = "{work / "serve" / "eapkit.db"}"
log = "{work / "serve" / "decisions.log"}"
methods = ["gtc"]

[[clients]]
address = "127.0.0.1/32"
secret = "{secret}"
name = "vpn-gateway"
"""


def _eap_radius(ports: tuple[int, int], secret: str) -> str:
    return f"""
    plugins {{
        eap-radius {{
            accounting = yes
            servers {{
                eapkit {{
                    address = 127.0.0.1
                    auth_port = {ports[0]}
                    acct_port = {ports[1]}
                    secret = {secret}
                    nas_identifier = vpn-gateway
                }}
            }}
        }}
    }}
"""


def _make_pki(d: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("eapkit device CA", now=now)
    gw = pki.make_server(ca, [GATEWAY_ID], now=now)
    radius = pki.make_server(ca, [RADIUS_ID], now=now)
    laptop = pki.make_client(ca, "alice-laptop", dns_names=[LAPTOP_ID], now=now)
    d.mkdir(parents=True, exist_ok=True)
    for name, data in {
        "ca.pem": ca.cert_pem,
        "ca.key": ca.key_pem,
        "gw.pem": gw.chain_pem,
        "gw.key": gw.key_pem,
        "radius.pem": radius.chain_pem,
        "radius.key": radius.key_pem,
        "laptop.pem": laptop.chain_pem,
        "laptop.key": laptop.key_pem,
    }.items():
        (d / name).write_bytes(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_tool("oathtool", "ping")
    work = tmp_path_factory.mktemp("devices")
    lab = Lab(work)
    try:
        lab.up()
        plugins_gw, plugins_cl = GATEWAY_PLUGINS, CLIENT_PLUGINS
        if lab.kernel_esp() is not None:  # no ESP in this kernel: ESP in user space
            plugins_gw = plugins_gw.replace("kernel-netlink", "kernel-libipsec kernel-netlink")
            plugins_cl = plugins_cl.replace("kernel-netlink", "kernel-libipsec kernel-netlink")
        secret = "radius-" + secrets.token_hex(8)
        ports = (free_udp_port(), free_udp_port())
        _make_pki(work / "pki")
        serve = Serve(lab.gateway_ns, work / "serve", _serve_config(work, ports, secret))
        site = Site(
            work=work,
            ports=ports,
            secret=secret,
            lab=lab,
            gw=Charon(lab.gateway_ns, work / "gw", plugins_gw, _eap_radius(ports, secret)),
            cl=Charon(lab.client_ns, work / "cl", plugins_cl),
            serve=serve,
            pki=work / "pki",
        )
        serve.workdir.mkdir(parents=True, exist_ok=True)
        (serve.workdir / "eapkit.toml").write_text(serve.config)
        for user, (password, vip) in USERS.items():
            site.eapkit("user", "add", user, "--password", password, "--framed-ip", vip)
            out = site.eapkit("enroll", "totp", user, "--no-terminal").stdout
            found = re.search(r"secret=([A-Z2-7]+)", out)
            assert found is not None, out
            site.totp[user] = found.group(1)
        site.eapkit("device", "add", str(site.pki / "laptop.pem"), "--user", "alice", "--by", "ops")
        for charon, kind, name in (
            (site.gw, "x509", "gw.pem"),
            (site.gw, "private", "gw.key"),
            (site.gw, "x509ca", "ca.pem"),
            (site.cl, "x509ca", "ca.pem"),
            (site.cl, "x509", "laptop.pem"),
            (site.cl, "private", "laptop.key"),
        ):
            charon.install(kind, name, (site.pki / name).read_bytes())
        lab.start(serve)
        lab.start(site.gw)
        lab.start(site.cl)
        yield site
    finally:
        lab.close()


@pytest.fixture(autouse=True)
def _no_leftover_sa(site: Site) -> Iterator[None]:
    yield
    site.cl.terminate_all()
    site.gw.terminate_all()


def totp_code(site: Site, user: str) -> str:
    """A code of ``user``'s not used yet in this module: now's, or the next step's
    (the verifier looks one step ahead), or now's after the step changes."""
    exe = require_tool("oathtool")["oathtool"]
    while True:
        for offset in (0, 30):
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + offset))
            argv = [exe, "--totp", "-b", "--now", when, site.totp[user]]
            code = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
            if (user, code) not in site.used:
                site.used.add((user, code))
                return code
        time.sleep(1)


GATEWAY = f"""
connections {{
    rw {{
        version = 2
        local_addrs = {GATEWAY_ADDR}
        pools = radius
        local {{
            auth = pubkey
            certs = gw.pem
            id = {GATEWAY_ID}
        }}
        remote-1 {{
            auth = pubkey
            cacerts = ca.pem
        }}
        remote-2 {{
            auth = eap-radius
            eap_id = %any
        }}
        children {{
            net {{
                local_ts = {PROTECTED_NET}
            }}
        }}
    }}
}}
"""


EAP_TLS_GATEWAY = GATEWAY.replace(
    """        remote-1 {
            auth = pubkey
            cacerts = ca.pem
        }
        remote-2 {
            auth = eap-radius
            eap_id = %any
        }""",
    f"""        remote-1 {{
            auth = eap-radius
            eap_id = %any
        }}
        remote-2 {{
            auth = eap-radius
            eap_id = %any
            aaa_id = {USER_ROUND_ID}
        }}""",
)


def eap_tls_client(user: str, answer: str) -> str:
    """Round 1 the laptop's EAP-TLS (checking eapkit's certificate), round 2 the user's
    EAP-GTC; the second round's secret is picked by its server identity."""
    return f"""
connections {{
    home {{
        version = 2
        remote_addrs = {GATEWAY_ADDR}
        vips = 0.0.0.0
        local-1 {{
            auth = eap-tls
            certs = laptop.pem
            id = {LAPTOP_ID}
            aaa_id = {RADIUS_ID}
        }}
        local-2 {{
            auth = eap-gtc
            id = {LAPTOP_ID}
            eap_id = {user}
            aaa_id = {USER_ROUND_ID}
        }}
        remote {{
            auth = pubkey
            id = {GATEWAY_ID}
        }}
        children {{
            net {{
                remote_ts = {PROTECTED_NET}
            }}
        }}
    }}
}}
secrets {{
    eap-user {{
        id-user = {user}
        id-server = {USER_ROUND_ID}
        secret = "{answer}"
    }}
}}
"""


def client(user: str, answer: str) -> str:
    return f"""
connections {{
    home {{
        version = 2
        remote_addrs = {GATEWAY_ADDR}
        vips = 0.0.0.0
        local-1 {{
            auth = pubkey
            certs = laptop.pem
            id = {LAPTOP_ID}
        }}
        local-2 {{
            auth = eap-gtc
            id = {LAPTOP_ID}
            eap_id = {user}
        }}
        remote {{
            auth = pubkey
            id = {GATEWAY_ID}
        }}
        children {{
            net {{
                remote_ts = {PROTECTED_NET}
            }}
        }}
    }}
}}
secrets {{
    eap-user {{
        id = {user}
        secret = "{answer}"
    }}
}}
"""


@dataclass
class Attempt:
    ok: bool
    output: str
    gw_log: str
    records: list[dict[str, Any]]
    client_sa: dict[str, Any]


def connect(site: Site, user: str, eap_tls: bool = False) -> Attempt:
    site.gw.load(EAP_TLS_GATEWAY if eap_tls else GATEWAY)
    answer = USERS[user][0] + totp_code(site, user)
    site.cl.load((eap_tls_client if eap_tls else client)(user, answer))
    gw_mark, rec_mark = site.gw.mark(), site.serve.mark()
    ok, out = site.cl.initiate("home", "net")
    time.sleep(0.3)
    return Attempt(
        ok,
        out,
        site.gw.since(gw_mark),
        site.serve.since(rec_mark),
        site.cl.sas().get("home", {}),
    )


def refused(site: Site, a: Attempt) -> None:
    assert not a.ok and "initiate failed" in a.output, a.output[-2000:]
    assert a.client_sa.get("state") != "ESTABLISHED"
    assert site.gw.sas().get("rw", {}).get("state", "CONNECTING") != "ESTABLISHED"
    assert not [r for r in a.records if r.get("event") == "accounting"]


def test_1_alices_own_laptop_gets_a_tunnel(site: Site) -> None:
    a = connect(site, "alice")
    assert a.ok, a.output[-3000:] + "\n--- gateway ---\n" + a.gw_log[-3000:]
    assert re.search(rf"authentication of '{LAPTOP_ID}' with ECDSA\S* successful", a.gw_log)
    assert [(d["user"], d["result"]) for d in a.records if "result" in d] == [("alice", "accept")]
    child = next(iter(a.client_sa.get("child-sas", {}).values()), None)
    assert child is not None and child.get("state") == "INSTALLED"
    out = site.lab.ns(site.lab.client_ns, "ping", "-c", "2", "-i", "0.2", "-W", "3", PROTECTED_ADDR)
    assert "2 packets transmitted, 2 received" in out, out


def test_2_alices_laptop_with_bobs_login_is_refused(site: Site) -> None:
    """EAP-TLS + EAP, both rounds relayed to eapkit, which binds the user's round to
    the device round of the same IKE SA (NAS-Port = the IKE SA's unique id)."""
    site.serve.stop()
    site.serve.config = _serve_config(site.work, site.ports, site.secret, bound=True)
    site.serve.start()
    try:
        bob = connect(site, "bob", eap_tls=True)
        refused(site, bob)
        assert [(d["user"], d["result"], d["reason"]) for d in bob.records if "result" in d] == [
            ("alice-laptop", "accept", "ok"),
            ("bob", "reject", "device_not_allowed"),
        ]
        assert bob.records[0]["login_id"] == bob.records[1]["login_id"]
        assert "RADIUS authentication of 'bob' failed" in bob.gw_log
        alice = connect(site, "alice", eap_tls=True)
        assert alice.ok, alice.output[-3000:] + "\n--- gateway ---\n" + alice.gw_log[-3000:]
        decisions = [(d["user"], d["result"]) for d in alice.records if "result" in d]
        assert decisions == [("alice-laptop", "accept"), ("alice", "accept")]
        assert alice.client_sa.get("local-vips") == [USERS["alice"][1]]
    finally:
        site.serve.stop()
        site.serve.config = _serve_config(site.work, site.ports, site.secret)
        site.serve.start()


def test_9_a_revoked_laptop_is_refused_even_with_the_right_password_and_code(site: Site) -> None:
    """Runs last: it revokes alice's laptop for the rest of the module."""
    crl = site.gw.swanctl_dir / "x509crl" / "devices.crl"
    out = site.eapkit(
        *("device", "revoke", "alice-laptop", "--reason", "stolen", "--by", "ops"),
        *("--crl", str(crl), "--ca", str(site.pki / "ca.pem")),
        *("--ca-key", str(site.pki / "ca.key")),
    ).stdout
    assert "swanctl --load-creds" in out
    loaded = site.gw.swanctl(
        "--load-creds", "--noprompt", "--file", str(site.gw.swanctl_dir / "swanctl.conf")
    )
    assert "loaded x509crl" in loaded.lower() or "devices.crl" in loaded, loaded
    a = connect(site, "alice")
    refused(site, a)
    assert re.search(r"certificate was revoked", a.gw_log), a.gw_log[-3000:]
    # the gateway refused in round 1: no EAP conversation reached eapkit
    assert [r for r in a.records if "result" in r] == []
    revoked = [r for r in site.serve.records() if r.get("event") == "device_revoked"]
    assert [(r["device"], r["reason"], r["by"]) for r in revoked] == [
        ("alice-laptop", "stolen", "ops")
    ]
