"""What an access handler (EAP or PAP) answers: the reply, its decision-log line, and
the attributes of an Access-Accept.

Both handlers end a login the same way, so the Accept is built in one place
(:func:`accept_attributes`):

- User-Name: the authenticated (inner) identity (RFC 2865 §5.1, RFC 3579 §2.6.2);
- MS-MPPE-Recv-Key / MS-MPPE-Send-Key from the MSK (RFC 2548 §2.4, RFC 3580 §3.16)
  and EAP-Key-Name from the Session-Id (RFC 4072 §2.4), when a method derived keys;
- Class (RFC 2865 §5.25): the user's, else a random one the NAS echoes in accounting;
- the user's policy: Session-Timeout (RFC 2865 §5.27), Framed-IP-Address (§5.8),
  Framed-Pool (RFC 2869 §5.18), Filter-Id (RFC 2865 §5.11) and Vendor-Specific
  attributes (§5.26, e.g. Cisco-AVPair).

A Reject says only :data:`REJECT_MESSAGE`: the reason goes to the decision log, never
on the wire, so unknown users and wrong passwords look the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from eapkit.methods.base import KeyMaterial
from eapkit.policy import UserPolicy
from eapkit.radius.dictionary import Attr, encode_integer, encode_ipv4, encode_text, vsa
from eapkit.radius.mppe import mppe_key_attributes
from eapkit.radius.packet import Attribute, Code
from eapkit.rand import RandomSource

__all__ = [
    "REJECT_MESSAGE",
    "AccessReply",
    "Decision",
    "PolicyLookup",
    "accept_attributes",
    "policy_attributes",
]

REJECT_MESSAGE = b"Authentication failed"

PolicyLookup = Callable[[str], UserPolicy | None]


@dataclass(slots=True)
class Decision:
    """One line of the decision log (a SIEM reads these): never a secret in it."""

    time: float
    client: str
    user: str
    outer_identity: str
    method: str
    inner_method: str
    result: str
    reason: str
    rounds: int
    duration: float
    session_id: str
    detail: str = ""
    tls: dict[str, str] | None = None
    """A TLS-based login's negotiated version and cipher and the TLS alert that ended a
    failed handshake (``tls_version``, ``tls_cipher``, ``tls_alert_sent``,
    ``tls_alert_received``), added to the line as they are."""
    login_id: str = ""  # the same on every round of one login (eapkit.radius.rounds)
    machine: str = ""  # a chaining tunnel's machine account (TEAP, eapkit.authz)
    inner: list[dict[str, object]] = field(default_factory=list)
    """A chaining tunnel's inner authentications (RFC 9930 §3.6): ``type`` (machine or
    user), ``identity``, ``method``, ``success`` and the ``factors`` each proved."""
    policy: str = ""
    """The ``[[policy.groups]]`` entry that matched the user (its name, else its group:
    :attr:`eapkit.authz.Authorization.policy_name`); on the line only when one did."""
    device: str = ""  # the registered device an accepted round is bound to (issue 20)
    device_fingerprint: str = ""  # its certificate's SHA-256 fingerprint, hex

    def as_dict(self) -> dict[str, object]:
        line: dict[str, object] = {
            "time": round(self.time, 3),
            "client": self.client,
            "user": self.user,
            "outer_identity": self.outer_identity,
            "method": self.method,
            "inner_method": self.inner_method,
            "result": self.result,
            "reason": self.reason,
            "rounds": self.rounds,
            "duration_ms": round(self.duration * 1000, 3),
            "session_id": self.session_id,
            "detail": self.detail,
            "login_id": self.login_id,
        }
        if self.tls:
            line.update(self.tls)
        if self.policy:
            line["policy"] = self.policy
        if self.inner:
            line["machine"] = self.machine
            line["inner"] = self.inner
        if self.device_fingerprint:
            line["device"] = self.device
            line["device_fingerprint"] = self.device_fingerprint
        return line


@dataclass(slots=True)
class AccessReply:
    """The reply to send: its Code and attributes (the server adds Message-Authenticator
    and the Response Authenticator).  ``decision`` is set when the conversation ended;
    ``eap_identifier`` is the Identifier of the EAP Success or Failure it carries, so a
    Reject can replace an Accept without parsing it (RFC 3748 §4.2)."""

    code: Code
    attributes: list[Attribute]
    decision: Decision | None = None
    eap_identifier: int | None = None


def policy_attributes(policy: UserPolicy) -> list[Attribute]:
    """Session-Timeout (RFC 2865 §5.27), Framed-IP-Address (§5.8), Framed-Pool (RFC 2869
    §5.18), Filter-Id (RFC 2865 §5.11) and each Vendor-Specific attribute (§5.26, one
    sub-attribute per attribute) from the user's policy."""
    out: list[Attribute] = []
    if policy.session_timeout is not None:
        out.append((Attr.SESSION_TIMEOUT, encode_integer(policy.session_timeout)))
    if policy.framed_ip is not None:
        out.append((Attr.FRAMED_IP_ADDRESS, encode_ipv4(IPv4Address(policy.framed_ip))))
    if policy.framed_pool is not None:
        out.append((Attr.FRAMED_POOL, policy.framed_pool.encode()))
    if policy.filter_id is not None:
        out.append((Attr.FILTER_ID, encode_text(policy.filter_id)))
    out += [vsa(v.vendor, v.type, v.value) for v in policy.vendor]
    return out


def accept_attributes(
    user: str,
    policy: UserPolicy | None,
    random: RandomSource,
    *,
    keys: KeyMaterial | None = None,
    secret: bytes = b"",
    request_authenticator: bytes = b"",
) -> list[Attribute]:
    """The attributes of an Access-Accept for ``user`` (the module docstring lists them);
    ``keys`` are salt-encrypted with ``secret`` and the Request Authenticator
    (RFC 2548 §2.4.2)."""
    attrs: list[Attribute] = [(Attr.USER_NAME, user.encode()[:253])]
    if keys is not None:
        attrs += mppe_key_attributes(
            keys.msk, secret, request_authenticator, random, keys.mppe_key_length
        )
        if keys.session_id:
            attrs.append((Attr.EAP_KEY_NAME, keys.session_id[:253]))
    klass = (
        policy.klass
        if policy and policy.klass
        else b"eapkit:" + random.random_bytes(8).hex().encode()
    )
    attrs.append((Attr.CLASS, klass))
    if policy is not None:
        attrs += policy_attributes(policy)
    return attrs
