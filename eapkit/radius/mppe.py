"""Carrying the EAP MSK to the NAS: MS-MPPE-Send-Key and MS-MPPE-Recv-Key (RFC 2548).

An EAP method that derives keys ends with a 64-octet MSK (RFC 3748 §7.10).  The
RADIUS server hands it to the NAS in the Access-Accept as two Microsoft
vendor-specific attributes (vendor 311), each salt-encrypted with the shared secret
and the Request Authenticator of the Access-Request being answered (RFC 2548 §2.4.2,
§2.4.3; see :mod:`eapkit.radius.hiding`).

Which half goes where.  RFC 2548 names the keys from the NAS's side: the Send-Key
encrypts what the NAS sends to the peer, the Recv-Key what it receives.  For EAP the
split is the one hostapd's RADIUS server uses (``radius_server.c`` passes
``eapKeyData + 32`` as the send key and ``eapKeyData`` as the receive key to
``radius_msg_add_mppe_keys``) and that ``eapol_test`` checks ("MPPE keys OK"), and
that IEEE 802.11 relies on (the PMK is the first 32 octets of the MSK, i.e. the
Recv-Key)::

    MS-MPPE-Recv-Key = MSK[0:32]
    MS-MPPE-Send-Key = MSK[32:64]

(hostapd uses halves of a shorter MSK; eapkit does the same.)  EAP-MSCHAPv2 is the
exception: its keys are 16 octets (RFC 3079 §3) and its MSK is MasterReceiveKey |
MasterSendKey | 32 zero octets ([MS-CHAP] §3.1.5.1), so it asks for 16-octet keys
(``KeyMaterial.mppe_key_length``) and the NAS gets MS-MPPE-Recv-Key = MasterReceiveKey,
MS-MPPE-Send-Key = MasterSendKey, as FreeRADIUS's rlm_mschap and hostapd send them.
A RADIUS client (the NAS, or ``eapkit probe``) gets the MSK's first
64 octets (32 for MS-CHAPv2) back as ``Recv + Send``.
"""

from __future__ import annotations

from typing import NamedTuple

from eapkit.radius.dictionary import VENDOR_MICROSOFT, MsAttr, vsa
from eapkit.radius.hiding import salt_decrypt, salt_encrypt
from eapkit.radius.packet import Attribute, Packet
from eapkit.rand import SYSTEM_RANDOM, RandomSource

__all__ = [
    "MppeKeys",
    "mppe_key_attributes",
    "mppe_keys_from_msk",
    "recover_mppe_keys",
]


class MppeKeys(NamedTuple):
    """The two keys as the NAS names them (RFC 2548 §2.4.2, §2.4.3)."""

    send: bytes
    recv: bytes

    def msk(self) -> bytes:
        """The MSK octets these keys came from: Recv-Key then Send-Key."""
        return self.recv + self.send


def mppe_keys_from_msk(msk: bytes, key_length: int = 32) -> MppeKeys:
    """Split an MSK: Recv-Key = MSK[0:n], Send-Key = MSK[n:2n] with n = ``key_length``
    (32 as hostapd does; 16 for MS-CHAPv2), n halved for a shorter MSK."""
    if len(msk) < 2:
        raise ValueError("an MSK of fewer than 2 octets cannot be split")
    half = key_length if len(msk) >= 2 * key_length else len(msk) // 2
    return MppeKeys(send=msk[half : 2 * half], recv=msk[:half])


def _salts(rng: RandomSource) -> tuple[bytes, bytes]:
    # RFC 2548 §2.4.2: high bit set, and unique among the salts of one packet.
    while True:
        r = rng.random_bytes(4)
        first = bytes((r[0] | 0x80, r[1]))
        second = bytes((r[2] | 0x80, r[3]))
        if second != first:
            return first, second


def mppe_key_attributes(
    msk: bytes,
    secret: bytes,
    request_authenticator: bytes,
    rng: RandomSource = SYSTEM_RANDOM,
    key_length: int = 32,
) -> list[Attribute]:
    """MS-MPPE-Send-Key and MS-MPPE-Recv-Key attributes for an Access-Accept.

    ``request_authenticator`` is that of the Access-Request the Accept answers;
    ``key_length`` octets of the MSK go into each key.
    """
    keys = mppe_keys_from_msk(msk, key_length)
    send_salt, recv_salt = _salts(rng)
    return [
        vsa(
            VENDOR_MICROSOFT,
            MsAttr.MS_MPPE_SEND_KEY,
            salt_encrypt(keys.send, secret, request_authenticator, send_salt),
        ),
        vsa(
            VENDOR_MICROSOFT,
            MsAttr.MS_MPPE_RECV_KEY,
            salt_encrypt(keys.recv, secret, request_authenticator, recv_salt),
        ),
    ]


def recover_mppe_keys(
    reply: Packet, secret: bytes, request_authenticator: bytes
) -> MppeKeys | None:
    """The keys in a received Access-Accept (the NAS's side), or None if it has none.

    A key the reply lacks is ``b""``.  Malformed or undecryptable key attributes
    raise :class:`~eapkit.errors.DecodeError`.
    """
    send = recv = None
    for vtype, value in reply.vendor_attributes(VENDOR_MICROSOFT):
        if vtype == MsAttr.MS_MPPE_SEND_KEY and send is None:
            send = salt_decrypt(value, secret, request_authenticator)
        elif vtype == MsAttr.MS_MPPE_RECV_KEY and recv is None:
            recv = salt_decrypt(value, secret, request_authenticator)
    if send is None and recv is None:
        return None
    return MppeKeys(send=send or b"", recv=recv or b"")
