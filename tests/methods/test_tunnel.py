"""The tunnel base shared by EAP-TTLS and PEAP: naming and the inner method's factors."""

from __future__ import annotations

from eapkit.methods.base import Factor, Outcome
from eapkit.methods.mschapv2 import MSCHAPV2, mschapv2_authenticator
from eapkit.methods.tunnel import inner_eap_name, inner_factors
from eapkit.packet import MethodId
from eapkit.session import Result
from eapkit.testing import StaticNtHashes


def test_inner_eap_name() -> None:
    factories = [mschapv2_authenticator(StaticNtHashes())]
    assert inner_eap_name(MSCHAPV2, factories) == "eap-mschapv2"
    assert inner_eap_name(MethodId(0, 250), factories) == "eap-0:250"  # no factory offers it
    assert inner_eap_name(MethodId(311, 33), factories) == "eap-311:33"


def test_inner_factors_come_from_the_inner_outcome() -> None:
    proved = frozenset({Factor.PASSWORD, Factor.OTP_DEVICE})
    outcome = Outcome(True, "ok", factors=proved)
    assert inner_factors(Result(True, "ok", outcome=outcome)) == proved
    assert inner_factors(Result(True, "ok")) == frozenset()
    assert inner_factors(None) == frozenset()
