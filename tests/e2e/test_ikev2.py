"""IKEv2 end to end (issue 10): a strongSwan client and a strongSwan gateway whose
``eap-radius`` plugin sends every EAP conversation to ``eapkit serve``.

The lab (:mod:`tests.e2e.lab`): two network namespaces made for this module, a veth pair
between them, charon in each with a private strongswan.conf, ``eapkit serve`` on the
gateway namespace's own loopback.  The configurations written here are the ones
``docs/ikev2.md`` explains.

Every scenario checks, when the IKE_SA is ESTABLISHED: the identities each charon reports
against eapkit's decision log, the virtual IP against the user's Framed-IP-Address, the
IKE_SA lifetime against the user's Session-Timeout, accounting Start and Stop in
eapkit's log, and a ping through the CHILD_SA.  A refused attempt must leave no IKE_SA on
either side and no accounting record.

TOTP codes come from ``oathtool`` (not eapkit's own generator); YubiKey OTPs from
:func:`eapkit.verify.yubico.encode_otp`, as a key programmed with that AES key types them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from eapkit import pki
from eapkit.verify.yubico import YubikeyCredential, YubikeyToken, encode_otp
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

OVER_TIME = 300  # the gateway's over_time: reauthentication is due this long before the end
OTP_AAA_ID = "otp.eapkit.test"  # names the client's second-round secret (see scenario 2)


@dataclass(frozen=True)
class User:
    name: str
    password: str
    second_factor: str  # none | totp | yubikey
    framed_ip: str | None = None
    session_timeout: int | None = None


USERS = {
    u.name: u
    for u in (
        User("tom", "pencil-tom", "totp", "10.99.0.11", 3600),  # 1: TTLS
        User("ann", "pencil-ann", "totp", "10.99.0.12", 1800),  # 2: MSCHAPv2 + GTC
        User("yuri", "pencil-yuri", "yubikey", "10.99.0.13", 7200),  # 3: cert + GTC
        User("alice@eapkit.test", "unused-alice", "none", "10.99.0.14", 5400),  # 4: EAP-TLS
        User("will", "pencil-will", "totp", "10.99.0.21", 3600),  # 5: wrong code
        User("rita", "pencil-rita", "totp", "10.99.0.22", 3600),  # 5: replay
        User("lou", "pencil-lou", "totp", "10.99.0.23", 3600),  # 5: lockout
    )
}


@dataclass
class Env:
    lab: Lab
    gw: Charon
    cl: Charon
    serve: Serve
    work: Path
    secret: str  # RADIUS shared secret
    radius_ports: tuple[int, int]
    totp: dict[str, str] = field(default_factory=dict)  # user -> base32 secret
    yubikey: YubikeyCredential | None = None
    yubikey_uses: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    esp_refused: str | None = None  # the kernel's answer when it has no ESP


def _serve_config(env_work: Path, ports: tuple[int, int], secret: str) -> str:
    return f"""
listen = ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"]
db = "{env_work / "serve" / "eapkit.db"}"
log = "{env_work / "serve" / "decisions.log"}"
methods = ["tls", "ttls", "mschapv2", "gtc"]
# Bare EAP-GTC carries the code alone: every gateway connection that relays it runs an
# earlier round (a password or a device certificate) first.
gtc = "code"

[tls]
cert = "{env_work / "pki" / "radius.pem"}"
key = "{env_work / "pki" / "radius.key"}"
ca = "{env_work / "pki" / "ca.pem"}"
crl = ["{env_work / "pki" / "ca.crl"}"]

[[clients]]
address = "127.0.0.1/32"
secret = "{secret}"
name = "vpn-gateway"
# This gateway asks for the second factor in a round of its own (remote-2, RFC 4739),
# so an EAP-MSCHAPv2 password round may pass for a user who has a second factor.
second_factor = "nas"
# One gateway here mixes the patterns, the certificate-then-code one included, whose
# first round eapkit never sees: no round binding (test_ikev2_doc.py runs the bound
# two-round example on a gateway of its own).
bind_rounds = false
"""


def _eap_radius_settings(ports: tuple[int, int], secret: str) -> str:
    return f"""
    plugins {{
        eap-radius {{
            accounting = yes
            # fail fast when eapkit does not answer (scenario 5)
            retransmit_tries = 2
            retransmit_timeout = 1.0
            retransmit_base = 1.4
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


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_tool("oathtool", "ping")
    work = tmp_path_factory.mktemp("ikev2")
    lab = Lab(work)
    try:
        lab.up()
        esp_refused = lab.kernel_esp()
        plugins_gw, plugins_cl = GATEWAY_PLUGINS, CLIENT_PLUGINS
        if esp_refused is not None:
            plugins_gw = plugins_gw.replace("kernel-netlink", "kernel-libipsec kernel-netlink")
            plugins_cl = plugins_cl.replace("kernel-netlink", "kernel-libipsec kernel-netlink")
        secret = "radius-" + secrets.token_hex(8)
        ports = (free_udp_port(), free_udp_port())
        _make_pki(work / "pki")
        serve = Serve(lab.gateway_ns, work / "serve", _serve_config(work, ports, secret))
        env = Env(
            lab=lab,
            gw=Charon(lab.gateway_ns, work / "gw", plugins_gw, _eap_radius_settings(ports, secret)),
            cl=Charon(lab.client_ns, work / "cl", plugins_cl),
            serve=serve,
            work=work,
            secret=secret,
            radius_ports=ports,
            esp_refused=esp_refused,
        )
        env.gw.install("x509", "gw.pem", (work / "pki" / "gw.pem").read_bytes())
        env.gw.install("private", "gw.key", (work / "pki" / "gw.key").read_bytes())
        # the client trusts the CA of the gateway's and eapkit's certificates
        env.cl.install("x509ca", "ca.pem", (work / "pki" / "ca.pem").read_bytes())
        _enroll(env)
        lab.start(serve)
        lab.start(env.gw)
        lab.start(env.cl)
        yield env
    finally:
        lab.close()


def _make_pki(d: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("eapkit e2e CA", now=now)
    files: dict[str, bytes] = {"ca.pem": ca.cert_pem}
    gw = pki.make_server(ca, [GATEWAY_ID], now=now)
    radius = pki.make_server(ca, [RADIUS_ID], now=now)
    alice = pki.make_client(ca, "alice", email="alice@eapkit.test", now=now)
    mallory = pki.make_client(ca, "mallory", email="mallory@eapkit.test", now=now)
    laptop = pki.make_client(
        ca, "yuri-laptop.eapkit.test", dns_names=["yuri-laptop.eapkit.test"], now=now
    )
    for name, issued in (
        ("gw", gw),
        ("radius", radius),
        ("alice", alice),
        ("mallory", mallory),
        ("laptop", laptop),
    ):
        files[f"{name}.pem"] = issued.chain_pem
        files[f"{name}.key"] = issued.key_pem
    files["ca.crl"] = pki.crl_pem(pki.make_crl(ca, [mallory.serial], now=now))
    d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (d / name).write_bytes(data)


def _enroll(env: Env) -> None:
    """Users and second factors through the ``eapkit`` command, as an admin would."""
    env.serve.workdir.mkdir(parents=True, exist_ok=True)
    db = str(env.serve.db)
    for user in USERS.values():
        args = ["user", "add", user.name, "--password", user.password, "--db", db]
        if user.framed_ip:
            args += ["--framed-ip", user.framed_ip]
        if user.session_timeout:
            args += ["--session-timeout", str(user.session_timeout)]
        env.serve.eapkit(*args)
        if user.second_factor == "totp":
            out = env.serve.eapkit("enroll", "totp", user.name, "--no-terminal", "--db", db)
            found = re.search(r"secret=([A-Z2-7]+)", out.stdout)
            assert found is not None, out.stdout
            env.totp[user.name] = found.group(1)
    # A YubiKey slot programmed with this AES key; its first OTP enrolls it.
    aes = secrets.token_bytes(16)
    cred = YubikeyCredential("vvccccdeffgh", secrets.token_bytes(6), aes)
    first = encode_otp(YubikeyToken(cred.private_id, 1, 0, 0), aes, cred.public_id)
    env.serve.eapkit(
        "enroll", "yubikey", "yuri", "--otp", first, "--aes-key", aes.hex(), "--db", db
    )
    env.yubikey = cred


def totp_code(env: Env, user: str, offset_steps: int = 0) -> str:
    """The user's TOTP code from ``oathtool`` (an independent implementation)."""
    exe = require_tool("oathtool")["oathtool"]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + 30 * offset_steps))
    out = subprocess.run(
        [exe, "--totp", "-b", "--now", when, env.totp[user]],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def wrong_code(env: Env, user: str) -> str:
    """Six digits that are none of the codes the verifier's window accepts now."""
    valid = {totp_code(env, user, k) for k in (-2, -1, 0, 1, 2)}
    code = int(totp_code(env, user))
    while f"{code:06d}" in valid:
        code = (code + 1) % 1_000_000
    return f"{code:06d}"


def yubikey_otp(env: Env) -> str:
    assert env.yubikey is not None
    cred = env.yubikey
    # A new power-up each time: the usage counter only grows, so each OTP is fresh.
    token = YubikeyToken(cred.private_id, 1 + next(env.yubikey_uses), 0x1234, 0)
    return encode_otp(token, cred.aes_key, cred.public_id)


# -- configurations ---------------------------------------------------------------------


def gateway_conf(remote: str) -> str:
    """The gateway: its certificate in IKE_AUTH, the client's rounds in ``remote``,
    virtual IPs from RADIUS (``pools = radius``: Framed-IP-Address)."""
    return f"""
connections {{
    rw {{
        version = 2
        local_addrs = {GATEWAY_ADDR}
        pools = radius
        over_time = {OVER_TIME}s
        local {{
            auth = pubkey
            certs = gw.pem
            id = {GATEWAY_ID}
        }}
{remote}
        children {{
            net {{
                local_ts = {PROTECTED_NET}
            }}
        }}
    }}
}}
"""


def client_conf(local: str, secrets_: str = "") -> str:
    return f"""
connections {{
    home {{
        version = 2
        remote_addrs = {GATEWAY_ADDR}
        vips = 0.0.0.0
{local}
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
{secrets_}
}}
"""


def eap_secret(name: str, user: str, secret: str, server: str | None = None) -> str:
    owners = f"id-user = {user}\n" + (f"        id-server = {server}\n" if server else "")
    return f'    eap-{name} {{\n        {owners}        secret = "{secret}"\n    }}\n'


EAP_RADIUS_ROUND = """
        remote{suffix} {{
            auth = eap-radius
            eap_id = %any
        }}
"""
# A second eap-radius round must differ from the first in some constraint, or charon
# counts the first round as both (ike_auth.c get_auth_cfg: "a config not already done")
# and refuses the second ("peer requested EAP, config unacceptable").  An AAA identity
# is copied into the round's record, so it tells the two apart.
EAP_RADIUS_SECOND_ROUND = f"""
        remote-2 {{
            auth = eap-radius
            eap_id = %any
            aaa_id = {OTP_AAA_ID}
        }}
"""
TWO_EAP_RADIUS_ROUNDS = EAP_RADIUS_ROUND.format(suffix="-1") + EAP_RADIUS_SECOND_ROUND


# -- one attempt ------------------------------------------------------------------------


@dataclass
class Attempt:
    ok: bool
    output: str  # swanctl --initiate
    gw_log: str
    cl_log: str
    records: list[dict[str, Any]]  # eapkit's decision log lines of this attempt
    records_mark: int  # where they start in the log
    client_sa: dict[str, Any]
    gateway_sa: dict[str, Any]

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return [r for r in self.records if "result" in r]


def connect(env: Env, gw: str, cl: str, settle: float = 0.3) -> Attempt:
    env.gw.load(gw)
    env.cl.load(cl)
    gw_mark, cl_mark, rec_mark = env.gw.mark(), env.cl.mark(), env.serve.mark()
    ok, out = env.cl.initiate("home", "net")
    time.sleep(settle)  # the gateway's last log lines and accounting Start
    return Attempt(
        ok,
        out,
        env.gw.since(gw_mark),
        env.cl.since(cl_mark),
        env.serve.since(rec_mark),
        rec_mark,
        env.cl.sas().get("home", {}),
        env.gw.sas().get("rw", {}),
    )


@pytest.fixture(autouse=True)
def _no_leftover_sa(env: Env) -> Iterator[None]:
    yield
    env.cl.terminate_all()
    env.gw.terminate_all()


def check_established(env: Env, a: Attempt, user: User, methods: list[str]) -> None:
    """What every successful scenario must show; ends the session (accounting Stop)."""
    assert a.ok, a.output[-3000:] + "\n--- gateway ---\n" + a.gw_log[-4000:]
    assert a.client_sa.get("state") == "ESTABLISHED"
    assert a.gateway_sa.get("state") == "ESTABLISHED"
    # eapkit accepted exactly the conversations the gateway relayed, for this user
    accepts = [d for d in a.decisions if d["result"] == "accept"]
    assert [d["method"] for d in accepts] == methods, a.decisions
    assert {d["user"] for d in accepts} == {user.name}
    assert {d["client"] for d in accepts} == {"vpn-gateway"}
    # the EAP identity strongSwan reports on both sides is the user eapkit logged
    # (charon reports no separate EAP identity when it equals the IKE identity)
    assert a.gateway_sa.get("remote-eap-id", a.gateway_sa.get("remote-id")) == user.name
    assert f"RADIUS authentication of '{user.name}' successful" in a.gw_log
    # Framed-IP-Address -> the client's virtual IP, on both sides
    assert a.gateway_sa.get("remote-vips") == [user.framed_ip]
    assert a.client_sa.get("local-vips") == [user.framed_ip]
    assert f"installing new virtual IP {user.framed_ip}" in a.cl_log
    # Session-Timeout -> the gateway's hard IKE_SA lifetime, announced to the client
    # (RFC 4478 AUTH_LIFETIME = Session-Timeout - over_time, when it must reauthenticate)
    assert user.session_timeout is not None
    lifetime = re.findall(r"maximum IKE_SA lifetime (\d+)s", a.gw_log)
    assert lifetime and abs(int(lifetime[-1]) - user.session_timeout) <= 2, a.gw_log[-3000:]
    reauth = int(a.gateway_sa["reauth-time"])
    assert 0 <= user.session_timeout - OVER_TIME - reauth <= 3
    notified = re.findall(r"received AUTH_LIFETIME of (\d+)s", a.cl_log)
    assert notified and abs(int(notified[-1]) - (user.session_timeout - OVER_TIME)) <= 2
    # accounting Start from the gateway, with the user and the address
    start = env.serve.wait_for(
        a.records_mark,
        lambda r: r.get("event") == "accounting" and r.get("status") == "Start",
        what="accounting Start",
    )
    assert start["user"] == user.name and start["framed_ip"] == user.framed_ip
    assert start["client"] == "vpn-gateway"
    check_child_sa(env, a)
    # hang up: accounting Stop for the same session
    mark = env.serve.mark()
    env.cl.swanctl("--terminate", "--ike", "home", "--timeout", "10")
    stop = env.serve.wait_for(
        mark,
        lambda r: r.get("event") == "accounting" and r.get("status") == "Stop",
        what="accounting Stop",
    )
    assert stop["session_id"] == start["session_id"] and stop["user"] == user.name
    assert stop["session_time"] is not None
    assert "rw" not in env.gw.sas()


def check_child_sa(env: Env, a: Attempt) -> None:
    """The CHILD_SA is installed and carries a ping from the virtual IP to the network
    behind the gateway (kernel XFRM, or kernel-libipsec when the kernel has no ESP)."""
    child = next(iter(a.client_sa.get("child-sas", {}).values()), None)
    assert child is not None and child.get("state") == "INSTALLED", a.output[-2000:]
    out = env.lab.ns(env.lab.client_ns, "ping", "-c", "2", "-i", "0.2", "-W", "3", PROTECTED_ADDR)
    assert re.search(r"2 packets transmitted, 2 received", out), out
    sa = env.gw.sas()["rw"]
    gw_child = next(iter(sa["child-sas"].values()))
    assert int(gw_child["packets-in"]) >= 2 and int(gw_child["packets-out"]) >= 2


def check_refused(env: Env, a: Attempt) -> None:
    """Nothing is let in: no IKE_SA on either side, no accounting Start."""
    assert not a.ok, a.output[-2000:]
    assert a.client_sa.get("state") != "ESTABLISHED"
    assert a.gateway_sa.get("state") != "ESTABLISHED"
    deadline = time.monotonic() + 3
    while "rw" in env.gw.sas() and time.monotonic() < deadline:
        time.sleep(0.1)
    # A client that gives up with an INFORMATIONAL AUTH_FAILED (strongSwan does so after
    # a TLS alert) leaves the gateway's IKE_SA half open until charon's
    # half_open_timeout; never established, and torn down after the test.
    assert env.gw.sas().get("rw", {}).get("state", "CONNECTING") == "CONNECTING"
    assert not [r for r in a.records if r.get("event") == "accounting"]
    assert "initiate failed" in a.output


# -- the scenarios ----------------------------------------------------------------------


def test_1_ttls_password_and_totp(env: Env) -> None:
    """The gateway proves itself with its certificate; the user runs EAP-TTLS to eapkit
    (the client checks eapkit's certificate: ``aaa_id``) with password + TOTP.

    strongSwan's TTLS peer tunnels EAP only (``eap_ttls_peer.c`` has no PAP), so the
    inner method is EAP-GTC whose one answer is the password followed by the code: the
    same check TTLS/PAP gets.  TTLS/PAP itself (Windows, Android, Apple clients offer it)
    is driven through the same server by ``eapol_test`` below."""
    tom = USERS["tom"]
    gw = gateway_conf(EAP_RADIUS_ROUND.format(suffix=""))
    local = f"""
        local {{
            auth = eap-ttls
            eap_id = {tom.name}
            aaa_id = {RADIUS_ID}
        }}
"""
    code = totp_code(env, tom.name)
    a = connect(env, gw, client_conf(local, eap_secret("tom", tom.name, tom.password + code)))
    check_established(env, a, tom, ["TTLS"])
    assert [d["inner_method"] for d in a.decisions] == ["eap-gtc"]
    # TTLS/PAP, as Windows, Android and Apple clients send it, through the same eapkit:
    # wpa_supplicant's eapol_test in the gateway's namespace plays the gateway's part.
    eapol = require_tool("eapol_test")["eapol_test"]
    conf = env.work / "eapol_ttls_pap.conf"
    conf.write_text(
        "network={\n key_mgmt=IEEE8021X\n eap=TTLS\n"
        f' identity="{tom.name}"\n anonymous_identity="anonymous"\n'
        f' password="{tom.password}{totp_code(env, tom.name, 1)}"\n'
        f' phase2="auth=PAP"\n ca_cert="{env.work / "pki" / "ca.pem"}"\n'
        f' domain_match="{RADIUS_ID}"\n}}\n'
    )
    mark = env.serve.mark()
    out = env.lab.ns(
        env.lab.gateway_ns,
        eapol,
        *("-c", str(conf), "-a", "127.0.0.1", "-p", str(env.radius_ports[0])),
        *("-s", env.secret, "-t", "15"),
        check=False,
    )
    assert out.rstrip().endswith("SUCCESS"), out[-3000:]
    pap = [r for r in env.serve.since(mark) if "result" in r]
    assert [(r["method"], r["inner_method"], r["user"], r["outer_identity"]) for r in pap] == [
        ("TTLS", "pap", tom.name, "anonymous")
    ]


def test_2_mschapv2_then_gtc_totp_two_rounds(env: Env) -> None:
    """RFC 4739 multiple authentication: round 1 EAP-MSCHAPv2 with the password, round 2
    EAP-GTC with the TOTP code alone, both relayed to eapkit (``remote-1``/``remote-2``).

    The client keeps two EAP secrets for the same user; strongSwan picks a secret by
    (EAP identity, server identity), so round 2 names another server identity
    (``aaa_id``, which GTC does not otherwise use)."""
    ann = USERS["ann"]
    gw = gateway_conf(TWO_EAP_RADIUS_ROUNDS)
    local = f"""
        local-1 {{
            auth = eap-mschapv2
            eap_id = {ann.name}
        }}
        local-2 {{
            auth = eap-gtc
            eap_id = {ann.name}
            aaa_id = {OTP_AAA_ID}
        }}
"""
    creds = eap_secret("pw", ann.name, ann.password, GATEWAY_ID) + eap_secret(
        "otp", ann.name, totp_code(env, ann.name), OTP_AAA_ID
    )
    a = connect(env, gw, client_conf(local, creds))
    check_established(env, a, ann, ["MSCHAPV2", "GTC"])


def test_3_device_certificate_then_yubikey_otp(env: Env) -> None:
    """The seed's dual-factor model: the device proves its certificate in IKE_AUTH
    (round 1, checked by the gateway against the CA), then the user runs EAP-GTC with a
    YubiKey OTP through eapkit (round 2)."""
    yuri = USERS["yuri"]
    pkid = env.work / "pki"
    env.gw.install("x509ca", "ca.pem", (pkid / "ca.pem").read_bytes())
    env.cl.install("x509", "laptop.pem", (pkid / "laptop.pem").read_bytes())
    env.cl.install("private", "laptop.key", (pkid / "laptop.key").read_bytes())
    gw = gateway_conf(
        """
        remote-1 {
            auth = pubkey
            cacerts = ca.pem
        }
"""
        + EAP_RADIUS_ROUND.format(suffix="-2")
    )
    local = f"""
        local-1 {{
            auth = pubkey
            certs = laptop.pem
            id = yuri-laptop.eapkit.test
        }}
        local-2 {{
            auth = eap-gtc
            id = yuri-laptop.eapkit.test
            eap_id = {yuri.name}
        }}
"""
    a = connect(env, gw, client_conf(local, eap_secret("otp", yuri.name, yubikey_otp(env))))
    # round 1: the device, by its certificate, checked by the gateway itself
    assert re.search(
        r"authentication of 'yuri-laptop.eapkit.test' with ECDSA\S* successful", a.gw_log
    ), a.gw_log[-3000:]
    assert a.gateway_sa.get("remote-id") == "yuri-laptop.eapkit.test"
    check_established(env, a, yuri, ["GTC"])
    # the OTP is single use: the same one again is refused by eapkit, so by the gateway
    used = re.search(r'secret = "([a-z]+)"', (env.cl.swanctl_dir / "swanctl.conf").read_text())
    assert used is not None
    again = connect(env, gw, client_conf(local, eap_secret("otp", yuri.name, used.group(1))))
    check_refused(env, again)
    assert [d["reason"] for d in again.decisions] == ["replayed"]
    env.cl.uninstall("x509", "laptop.pem")
    env.cl.uninstall("private", "laptop.key")
    env.gw.uninstall("x509ca", "ca.pem")


def _eap_tls_client(env: Env, who: str, identity: str) -> str:
    pkid = env.work / "pki"
    env.cl.install("x509", f"{who}.pem", (pkid / f"{who}.pem").read_bytes())
    env.cl.install("private", f"{who}.key", (pkid / f"{who}.key").read_bytes())
    return client_conf(
        f"""
        local {{
            auth = eap-tls
            certs = {who}.pem
            id = {identity}
            aaa_id = {RADIUS_ID}
        }}
"""
    )


def test_4_eap_tls_device_certificate_and_revocation(env: Env) -> None:
    """EAP-TLS with the device certificate, verified by eapkit (relayed by eap-radius);
    a certificate on eapkit's CRL is refused."""
    alice = USERS["alice@eapkit.test"]
    gw = gateway_conf(EAP_RADIUS_ROUND.format(suffix=""))
    a = connect(env, gw, _eap_tls_client(env, "alice", alice.name))
    check_established(env, a, alice, ["TLS"])
    env.cl.uninstall("x509", "alice.pem")
    env.cl.uninstall("private", "alice.key")
    revoked = connect(env, gw, _eap_tls_client(env, "mallory", "mallory@eapkit.test"))
    check_refused(env, revoked)
    # eapkit ends the TLS handshake with a certificate_revoked alert (RFC 5216 §2.1.3:
    # in an EAP-Request, to be acknowledged before the EAP-Failure); strongSwan's peer
    # does not acknowledge it but abandons the IKE_SA, so eapkit writes the decision
    # line with the alert.
    assert "received fatal TLS alert 'certificate revoked'" in revoked.output
    assert [(d["result"], d["reason"]) for d in revoked.decisions] == [
        ("reject", "certificate_revoked")
    ]
    assert "RADIUS authentication of 'mallory@eapkit.test' successful" not in revoked.gw_log
    env.cl.uninstall("x509", "mallory.pem")
    env.cl.uninstall("private", "mallory.key")


def _two_rounds(env: Env, user: User, code: str) -> Attempt:
    gw = gateway_conf(TWO_EAP_RADIUS_ROUNDS)
    local = f"""
        local-1 {{
            auth = eap-mschapv2
            eap_id = {user.name}
        }}
        local-2 {{
            auth = eap-gtc
            eap_id = {user.name}
            aaa_id = {OTP_AAA_ID}
        }}
"""
    creds = eap_secret("pw", user.name, user.password, GATEWAY_ID)
    creds += eap_secret("otp", user.name, code, OTP_AAA_ID)
    return connect(env, gw, client_conf(local, creds))


def test_5a_wrong_code(env: Env) -> None:
    will = USERS["will"]
    a = _two_rounds(env, will, wrong_code(env, will.name))
    check_refused(env, a)
    # the password round passed, the code round did not: the gateway let nothing in
    assert [(d["method"], d["result"]) for d in a.decisions] == [
        ("MSCHAPV2", "accept"),
        ("GTC", "reject"),
    ]
    assert a.decisions[-1]["reason"] == "bad_code" and a.decisions[-1]["user"] == will.name
    assert "RADIUS authentication of 'will' failed" in a.gw_log


def test_5b_replayed_code(env: Env) -> None:
    rita = USERS["rita"]
    code = totp_code(env, rita.name, 1)  # the next step's code, valid now (look-ahead 1)
    first = _two_rounds(env, rita, code)
    check_established(env, first, rita, ["MSCHAPV2", "GTC"])
    again = _two_rounds(env, rita, code)
    check_refused(env, again)
    assert again.decisions[-1]["reason"] == "replayed"


def test_5c_locked_out_user(env: Env) -> None:
    """Five wrong codes lock the user out (RFC 4226 §7.3, eapkit's OtpPolicy): then even
    the right code is refused, and the gateway lets nothing in."""
    lou = USERS["lou"]
    for _ in range(5):
        a = _two_rounds(env, lou, wrong_code(env, lou.name))
        check_refused(env, a)
        assert a.decisions[-1]["reason"] == "bad_code"
    a = _two_rounds(env, lou, totp_code(env, lou.name))
    check_refused(env, a)
    assert a.decisions[-1]["reason"] == "locked_out"


def test_5d_eapkit_down(env: Env) -> None:
    """eapkit stopped (its port closed) or hung (SIGSTOP: requests go unanswered): the
    gateway refuses the client either way (fail closed), after its retransmits when
    nothing answers."""
    will = USERS["will"]
    env.serve.stop()
    try:
        a = _two_rounds(env, will, totp_code(env, will.name))
        check_refused(env, a)
        assert a.records == []
        assert "receiving RADIUS message failed: Connection refused" in a.gw_log
    finally:
        env.serve.start()
    assert env.serve.daemon is not None
    env.serve.daemon.proc.send_signal(signal.SIGSTOP)
    try:
        b = _two_rounds(env, will, totp_code(env, will.name))
        check_refused(env, b)
        assert "RADIUS Access-Request timed out after 2 attempts" in b.gw_log, b.gw_log[-3000:]
    finally:
        env.serve.daemon.proc.send_signal(signal.SIGCONT)
    # and back: the same client gets in once eapkit answers again
    c = _two_rounds(env, will, totp_code(env, will.name))
    check_established(env, c, will, ["MSCHAPV2", "GTC"])
