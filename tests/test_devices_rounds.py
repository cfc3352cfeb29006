"""A user's round bound to the device round of the same IKE SA (issue 20,
eapkit.radius.device_rounds): round 1 the device's EAP-TLS, round 2 the user's EAP-GTC
(password and code), both relayed by a strongSwan-like gateway to eapkit."""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit import pki
from eapkit.audit import SkippedLines, build_report
from eapkit.devices import Device, DeviceRegistry
from eapkit.directory import LocalDirectory
from eapkit.errors import ConfigError
from eapkit.methods.base import CertificateNames, Factor, MethodFactory, Outcome, Peer
from eapkit.methods.gtc import gtc_peer
from eapkit.methods.tls import tls_peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius.clients import Client
from eapkit.radius.core import RadiusCore
from eapkit.radius.device_rounds import DeviceBinding
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import Code, Packet, decode
from eapkit.serve import ServeConfig, TlsFiles, build_core, open_second_factors
from eapkit.session import PeerSession, Result, Send
from eapkit.store.memory import MemoryStore
from eapkit.verify.otp import OtpCredential, totp
from tests import certs
from tests.radius.helpers import datagram
from tests.radius.test_rounds import SECRET, Gateway, _packet

ALICE, BOB = bytes(range(20)), bytes(range(1, 21))


class Nas(Gateway):
    """The gateway's relay, ending at eapkit's last reply whatever the peer made of
    it (a GTC peer keeps the method open for another prompt: RFC 4137 MAY_CONT)."""

    def round(self, user: str, method: MethodFactory[Peer], now: float) -> Packet:
        peer = PeerSession([method], user)
        action = peer.receive(Identity(EapCode.REQUEST, 0).encode())
        state = None
        for _ in range(20):
            assert isinstance(action, Send), action
            raw = datagram(
                self.core, self._request(user, action.packet, state), ("127.0.0.1", 1), now
            )
            assert raw is not None
            reply = decode(raw)
            if reply.code != Code.ACCESS_CHALLENGE:
                return reply
            eap = reply.eap_message()
            assert eap is not None
            action = peer.receive(eap)
            state = reply.get(Attr.STATE)
        raise AssertionError("conversation did not end")


class Site:
    def __init__(self, core: RadiusCore, log: io.StringIO, registry: DeviceRegistry) -> None:
        self.core, self.log, self.registry = core, log, registry
        self.lab = certs.lab("ec")
        now = self.lab.now
        self.laptop = pki.make_client(self.lab.ca, "alice-laptop", dns_names=["l.test"], now=now)
        self.sas: dict[int, Nas] = {}

    def sa(self, ike_sa: int) -> Nas:
        """One IKE SA's relay: its rounds share NAS-Port and identifiers go on."""
        return self.sas.setdefault(ike_sa, Nas(self.core, ike_sa))

    def device(self, ike_sa: int, issued: pki.Issued | None = None) -> int:
        tls = tls_peer(certs.peer_config(self.lab, issued or self.laptop))
        return self.sa(ike_sa).round("alice-laptop", tls, time.time()).code

    def user(self, ike_sa: int, user: str, password: str, secret: bytes) -> int:
        now = time.time()
        gtc: MethodFactory[Peer] = gtc_peer(lambda _p: password + totp(secret, now))
        return self.sa(ike_sa).round(user, gtc, now).code

    def refused(self) -> list[tuple[str | None, str | None, str]]:
        """The device_refused event lines: (user, device, reason)."""
        lines = [json.loads(x) for x in self.log.getvalue().splitlines()]
        events = [e for e in lines if e.get("event") == "device_refused"]
        return [(e["user"], e.get("device"), e["reason"]) for e in events]

    def decisions(self) -> list[tuple[str, str, str]]:
        lines = [json.loads(x) for x in self.log.getvalue().splitlines()]
        return [(d["user"], d["result"], d["reason"]) for d in lines if "result" in d]


def _site(tmp_path: Path, bind: list[str]) -> Site:
    lab = certs.lab("ec")
    files = {"ca.pem": lab.ca.cert_pem, "server.pem": lab.server.chain_pem}
    files["server.key"] = lab.server.key_pem
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    cfg = ServeConfig(
        db=tmp_path / "eapkit.db",
        methods=["tls", "gtc"],
        clients=[
            Client.of("127.0.0.0/8", SECRET, "vpn-gateway"),
            Client.of("192.0.2.99/32", SECRET, "another-gateway"),
        ],
        tls=TlsFiles(
            cert=tmp_path / "server.pem", key=tmp_path / "server.key", ca=tmp_path / "ca.pem"
        ),
        device_clients=bind,
    )
    users = LocalDirectory(cfg.db)
    users.add("alice", "pencil-a", second_factor="totp", iterations=1000)
    users.add("bob", "pencil-b", second_factor="totp", iterations=1000)
    second = open_second_factors(cfg, users)
    second.totp.enroll("alice", OtpCredential(ALICE), time.time() - 90)
    second.totp.enroll("bob", OtpCredential(BOB), time.time() - 90)
    log = io.StringIO()
    site = Site(build_core(cfg, users, log_stream=log), log, DeviceRegistry(second.store))
    device = Device.from_certificate(
        site.laptop.certificate, name=None, owners=["alice"], added_by="t", now=time.time()
    )
    site.registry.add(device)
    return site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return _site(tmp_path, ["vpn-gateway"])


def test_alices_laptop_then_alice(site: Site) -> None:
    assert site.device(1) == Code.ACCESS_ACCEPT
    assert site.user(1, "alice", "pencil-a", ALICE) == Code.ACCESS_ACCEPT
    assert site.decisions() == [("alice-laptop", "accept", "ok"), ("alice", "accept", "ok")]
    lines = [json.loads(x) for x in site.log.getvalue().splitlines()]
    device, user = [d for d in lines if "result" in d]
    assert "device_fingerprint" not in device  # the device's own round names no device
    laptop = site.registry.get("alice-laptop")
    assert laptop is not None
    assert (user["device"], user["device_fingerprint"]) == ("alice-laptop", laptop.fingerprint)
    # what eapkit audit makes of these lines: alice's laptop is a new device of hers
    report = build_report(lines, time.time() - 3600, time.time() + 1, SkippedLines())
    assert [(e["user"], e["fingerprint"]) for e in report.new_devices] == [
        ("alice", laptop.fingerprint)
    ]


def test_alices_laptop_then_bob_is_refused(site: Site) -> None:
    assert site.device(2) == Code.ACCESS_ACCEPT
    assert site.user(2, "bob", "pencil-b", BOB) == Code.ACCESS_REJECT
    assert site.decisions()[-1] == ("bob", "reject", "device_not_allowed")
    assert site.refused() == [("bob", "alice-laptop", "device_not_allowed")]


def test_a_user_round_without_a_device_round_is_refused(site: Site) -> None:
    assert site.device(3) == Code.ACCESS_ACCEPT
    assert site.user(4, "alice", "pencil-a", ALICE) == Code.ACCESS_REJECT  # another IKE SA
    assert site.decisions()[-1] == ("alice", "reject", "device_required")
    assert site.refused() == [("alice", None, "device_required")]


def test_a_revoked_device_is_refused_in_its_own_round_and_after(site: Site) -> None:
    assert site.device(5) == Code.ACCESS_ACCEPT
    site.registry.revoke("alice-laptop", by="t", reason="stolen", now=time.time())
    assert site.user(5, "alice", "pencil-a", ALICE) == Code.ACCESS_REJECT
    assert site.device(6) == Code.ACCESS_REJECT
    assert site.decisions()[-2:] == [
        ("alice", "reject", "device_revoked"),
        ("alice-laptop", "reject", "device_revoked"),
    ]
    assert site.refused() == [
        ("alice", "alice-laptop", "device_revoked"),
        (None, "alice-laptop", "device_revoked"),
    ]


def test_an_unregistered_certificate_is_no_device(site: Site) -> None:
    # alice's own user certificate (e-mail SAN) is not registered: it names a user,
    # who does not exist here, and leaves no device for the next round
    assert site.device(7, site.lab.client) == Code.ACCESS_REJECT
    assert site.user(7, "alice", "pencil-a", ALICE) == Code.ACCESS_REJECT
    assert [d[2] for d in site.decisions()] == ["unknown_user", "device_required"]


def test_clients_not_bound_log_in_without_a_device(tmp_path: Path) -> None:
    site = _site(tmp_path, ["another-gateway"])
    assert site.user(8, "bob", "pencil-b", BOB) == Code.ACCESS_ACCEPT
    # ... and a device certificate alone opens nothing there: it names no user
    assert site.device(9) == Code.ACCESS_REJECT
    assert site.decisions()[-1] == ("alice-laptop", "reject", "unknown_user")


def test_bind_clients_must_name_clients() -> None:
    base: dict[str, Any] = {"clients": [{"address": "127.0.0.1", "secret": "s", "name": "gw"}]}
    with pytest.raises(ConfigError, match='needs "tls" in methods'):
        ServeConfig.from_dict({**base, "methods": ["gtc"], "devices": {"bind_clients": ["gw"]}})
    assert ServeConfig.from_dict({**base, "devices": {"bind_clients": ["gw"]}}).device_clients == [
        "gw"
    ]
    with pytest.raises(ConfigError, match="names no client: gwy"):
        ServeConfig.from_dict({**base, "devices": {"bind_clients": ["gwy"]}})
    with pytest.raises(ConfigError, match="bind_clients"):
        ServeConfig.from_dict({**base, "devices": {"bind_clients": "gw"}})


# -- the binding as a state machine (hypothesis) -----------------------------------------

_FP = {"laptop": "aa" * 32, "phone": "bb" * 32}
_step = st.tuples(
    st.sampled_from(["laptop", "phone", "alice", "bob", "revoke-laptop"]),
    st.sampled_from([1, 2]),  # IKE SA
    st.floats(min_value=0, max_value=100),  # seconds since the previous step
)


def _device_result(name: str) -> Result:
    names = CertificateNames(fingerprint=_FP[name])
    outcome = Outcome(True, "ok", identity=name, factors=_CERT, certificate=names)
    return Result(success=True, reason="ok", user=name, outcome=outcome)


def _user_result(user: str) -> Result:
    outcome = Outcome(True, "ok", identity=user, factors=_PASSWORD_AND_CODE)
    return Result(success=True, reason="ok", user=user, outcome=outcome)


_CERT = frozenset({Factor.CERTIFICATE})
_PASSWORD_AND_CODE = frozenset({Factor.PASSWORD, Factor.OTP_DEVICE})
_template = Device("x", "", 1, "CN=CA", "CN=x", ("x",), ("alice",), 4e9, "t", 0.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, max_size=14))
def test_a_user_round_needs_a_live_device_round_that_allows_the_user(steps: list[Any]) -> None:
    registry = DeviceRegistry(MemoryStore())
    owners = {"laptop": ("alice",), "phone": ("alice", "bob")}
    for name, fp in _FP.items():
        registry.add(
            replace(_template, name=name, fingerprint=fp, serial=len(name), owners=owners[name])
        )
    lines: list[dict[str, Any]] = []
    binding = DeviceBinding(registry, frozenset({"gw"}), window=120.0, log=lines.append)
    model: dict[int, tuple[str, float]] = {}  # IKE SA -> (device, its round's time)
    revoked: set[str] = set()
    now = 1000.0
    for who, ike_sa, gap in steps:
        now += gap
        if who == "revoke-laptop":
            if "laptop" not in revoked:
                registry.revoke("laptop", by="t", reason="stolen", now=now)
                revoked.add("laptop")
            continue
        if who in _FP:  # authz names only active devices: a revoked one never gets here
            if who in revoked:
                continue
            settled = binding.settle(_device_result(who), who, "gw", _packet(ike_sa), now)
            assert settled == (None, None)
            model[ike_sa] = (who, now)
            continue
        refusal, device = binding.settle(_user_result(who), who, "gw", _packet(ike_sa), now)
        bound = model.get(ike_sa)
        if bound is None or now - bound[1] >= 120.0:
            expected = "device_required"
        elif bound[0] in revoked:
            expected = "device_revoked"
        elif who not in owners[bound[0]]:
            expected = "device_not_allowed"
        else:
            expected = None
        assert refusal == expected, (who, ike_sa, bound, now)
        if expected is None:
            assert bound is not None and device is not None and device.name == bound[0]
        if expected is not None:
            assert lines[-1]["event"] == "device_refused" and lines[-1]["reason"] == expected
