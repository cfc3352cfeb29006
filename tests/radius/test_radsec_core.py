"""``build_radsec_core``: the core behind the RadSec and DTLS listeners shares the UDP
core's conversations and settings.  It once left ``light_methods`` behind, so over TLS
every EAP-MSCHAPv2 and EAP-TLS round went to the check pool while the same rounds over
UDP ran on the event loop (issue 21): this pins each setting, and makes a new
``RadiusCore`` field choose between carried over and different on purpose."""

from __future__ import annotations

import dataclasses
import io

import pytest

from eapkit.radius.clients import ClientTable
from eapkit.radius.core import LIGHT_METHODS, DecisionLog, RadiusCore
from eapkit.radsec_config import build_radsec_core

# What the RadSec core takes from the UDP core as it is ...
CARRIED = {
    "eap",
    "plain",
    "approval",
    "duplicate_ttl",
    "duplicate_cap",
    "cpu_clock",
    "light_methods",
    "unknown_log_interval",
}
# ... and what it has of its own: clients named by certificate ([[radsec.clients]]), a
# decision log stamped with the transport, no Message-Authenticator demanded of PAP
# (TLS protects the hop), no accounting port numbers (one port), its own statistics.
OWN = {"clients", "decisions", "require_message_authenticator", "accounting_ports", "stats"}


def _clock() -> float:
    return 42.0


def test_every_public_core_field_is_carried_or_its_own() -> None:
    public = {f.name for f in dataclasses.fields(RadiusCore) if not f.name.startswith("_")}
    assert public == CARRIED | OWN


@pytest.mark.parametrize("transport", ["radsec", "dtls"])
def test_the_radsec_core_carries_the_udp_cores_settings(transport: str) -> None:
    udp = RadiusCore(
        ClientTable([]),
        None,
        decisions=DecisionLog(io.StringIO()),
        duplicate_ttl=3.5,
        duplicate_cap=77,
        cpu_clock=_clock,
        light_methods=LIGHT_METHODS,
        unknown_log_interval=5.0,
    )
    tls = build_radsec_core(udp, "1.0", transport)
    for name in CARRIED:
        assert getattr(tls, name) == getattr(udp, name), name
    assert tls.light_methods == LIGHT_METHODS
    assert tls.require_message_authenticator is False
    assert tls.decisions.stamp["transport"] == transport
    assert udp.decisions.stamp["transport"] == "udp"
