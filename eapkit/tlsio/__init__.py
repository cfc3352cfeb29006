"""TLS carried in EAP, shared by EAP-TLS, EAP-TTLS and PEAP.

- :mod:`eapkit.tlsio.framing`: the flags octet, fragmentation, reassembly (RFC 5216 §3).
- :mod:`eapkit.tlsio.config`: :class:`TlsConfig` and the ``SSL.Context`` built from it.
- :mod:`eapkit.tlsio.engine`: :class:`TlsEapEngine`, one TLS connection over EAP.
- :mod:`eapkit.tlsio.keys`: MSK/EMSK/Session-Id from the TLS exporter (RFC 5216, 9190).
- :mod:`eapkit.tlsio.method`: both roles' handling of the engine's events, the base of
  the EAP-TLS, EAP-TTLS and PEAP method classes.
- :mod:`eapkit.tlsio.certinfo`: the peer certificate as a policy sees it, name matching.
- :mod:`eapkit.tlsio.alerts`: TLS alert names, the reasons failures report.
- :mod:`eapkit.tlsio.records`: the record headers in the clear: whether a peer's message
  may carry application data (a tunnel's light rounds, issue 21).
"""

from __future__ import annotations

from eapkit.tlsio.alerts import alert_name
from eapkit.tlsio.certinfo import PeerCertificate, matches_domain
from eapkit.tlsio.config import TlsConfig, TlsContext, TlsRole, TlsVersion
from eapkit.tlsio.engine import Continue, Failed, LeafCheck, Message, SessionCache, TlsEapEngine
from eapkit.tlsio.framing import (
    EapTlsFlags,
    Fragment,
    Fragmenter,
    FramingConfig,
    Reassembler,
)
from eapkit.tlsio.keys import derive_keys

__all__ = [
    "Continue",
    "EapTlsFlags",
    "Failed",
    "Fragment",
    "Fragmenter",
    "FramingConfig",
    "LeafCheck",
    "Message",
    "PeerCertificate",
    "Reassembler",
    "SessionCache",
    "TlsConfig",
    "TlsContext",
    "TlsEapEngine",
    "TlsRole",
    "TlsVersion",
    "alert_name",
    "derive_keys",
    "matches_domain",
]
