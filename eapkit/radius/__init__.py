"""The RADIUS side of EAP: a transport-free server core, its fronts, and the codecs.

The server, top to bottom (a new transport, e.g. RadSec, is one more front module
that feeds :class:`~eapkit.radius.front.Front`):

- :mod:`eapkit.radius.udp`: the UDP front (:func:`~eapkit.radius.udp.serve`);
  :mod:`eapkit.radius.workers`: the multi-process UDP front (``--workers N``);
- :mod:`eapkit.radius.front`: what every front shares: call the core, send, settle
  held Accepts, count;
- :mod:`eapkit.radius.core`: :class:`~eapkit.radius.core.RadiusCore`,
  ``handle(request, client, now) -> Reply | Hold | Drop``; clients in
  :mod:`eapkit.radius.clients`;
- :mod:`eapkit.radius.access` (EAP) and :mod:`eapkit.radius.pap` (PAP): Access-Requests
  to replies; :mod:`eapkit.radius.reply`: the reply, its decision, Accept attributes;
- :mod:`eapkit.radius.nas`: the client (NAS) side, for ``eapkit probe`` and tests;
  :mod:`eapkit.radius.address`: ``HOST:PORT`` parsing.

The codecs, re-exported here:

- :mod:`eapkit.radius.packet`: RADIUS packets (RFC 2865 §3), Message-Authenticator
  (RFC 3579 §3.2), Request/Response Authenticators (RFC 2865 §3, RFC 2866 §3),
  EAP-Message splitting (RFC 3579 §3.1).
- :mod:`eapkit.radius.dictionary`: attribute numbers, names and value types
  (RFC 2865 §5, 2866, 2869, 3579, 4072; Microsoft vendor 311 from RFC 2548).
- :mod:`eapkit.radius.hiding`: User-Password (RFC 2865 §5.2) and salt encryption
  (RFC 2548 §2.4.2).
- :mod:`eapkit.radius.mppe`: the MSK as MS-MPPE-Send-Key / MS-MPPE-Recv-Key.
"""

from __future__ import annotations

from eapkit.radius.dictionary import (
    VENDOR_MICROSOFT,
    AcctStatusType,
    Attr,
    MsAttr,
    NasPortType,
    ServiceType,
    decode_vsa,
    encode_vsa,
    vsa,
)
from eapkit.radius.hiding import hide_password, salt_decrypt, salt_encrypt, unhide_password
from eapkit.radius.mppe import (
    MppeKeys,
    mppe_key_attributes,
    mppe_keys_from_msk,
    recover_mppe_keys,
)
from eapkit.radius.packet import (
    Attribute,
    Code,
    Packet,
    check_request,
    decode,
    eap_message_attributes,
    encode,
    encode_reply,
    encode_request,
    new_request_authenticator,
    verify_reply,
)

__all__ = [
    "VENDOR_MICROSOFT",
    "AcctStatusType",
    "Attr",
    "Attribute",
    "Code",
    "MppeKeys",
    "MsAttr",
    "NasPortType",
    "Packet",
    "ServiceType",
    "check_request",
    "decode",
    "decode_vsa",
    "eap_message_attributes",
    "encode",
    "encode_reply",
    "encode_request",
    "encode_vsa",
    "hide_password",
    "mppe_key_attributes",
    "mppe_keys_from_msk",
    "new_request_authenticator",
    "recover_mppe_keys",
    "salt_decrypt",
    "salt_encrypt",
    "unhide_password",
    "verify_reply",
    "vsa",
]
