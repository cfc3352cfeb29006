"""PEAPv0 crypto-binding ([MS-PEAP] §3.1.5.5, §3.1.5.7): binding the inner method's keys
to the tunnel, and the keys the conversation then exports.

Crypto-binding ([MS-PEAP] §3.1.5.5, as hostapd implements it): with TLS 1.2 the tunnel key
TK is the first 60 bytes of ``TLS-PRF(master, "client EAP encryption", randoms)``; with TLS
1.3 the first 60 bytes of ``TLS-Exporter("EXPORTER_EAP_TLS_Key_Material", 0x19, 128)``
(RFC 9427 keeps PEAP's derivation and takes TK from its TLS 1.3 Key_Material).  ISK is
the inner method's MSK, first 32 bytes (zeros for EAP-GTC)::

    IPMK | CMK = PRF+(TK[0:40], "Inner Methods Compound Keys" | ISK, 60)   (40 + 20 bytes)
    Compound_MAC = HMAC-SHA1(CMK, Crypto-Binding TLV with a zero MAC | 0x19)
    CSK = PRF+(IPMK, "Session Key Generating Function" | 0x00, 128)
    PRF+(K, S, n) = T1 | T2 | ..., Ti = HMAC-SHA1(K, T(i-1) | S | i | 0x00 0x00)

The server sends a Crypto-Binding Request with a Result Success (policy ``optional``, as
hostapd); a peer that answers it proves it holds the same TK and ISK, and then both use
MSK = CSK[0:64] and no EMSK (hostapd: "[MS-PEAP] does not define EMSK derivation").
Without crypto-binding, MSK/EMSK come from the tunnel as EAP-TLS's do (RFC 5216 §2.3 with
``client EAP encryption``; for TLS 1.3 RFC 9427's exporters with type code 0x19).  The
Session-Id is always the tunnel's (0x19 | randoms, or 0x19 | Method-Id).

hostapd 2.10 as a TLS 1.3 *server* derives its TK from a 64-byte export instead of the
128-byte Key_Material (a TLS 1.3 export depends on its length); the peer therefore checks
a TLS 1.3 Crypto-Binding Request against both and answers with the one that verified.
"""

from __future__ import annotations

import hmac
from dataclasses import replace

from eapkit.eap_tlv import CryptoBinding, Tlv, TlvType
from eapkit.methods.base import KeyMaterial
from eapkit.packet import EapType
from eapkit.session import Result as SessionResult
from eapkit.tlsio import TlsEapEngine
from eapkit.tlsio.keys import EAP_TLS_LABEL, TLS13_KEY_LABEL

__all__ = [
    "bound_keys",
    "compound_keys",
    "compound_mac",
    "compound_session_key",
    "inner_session_key",
    "peap_prf_plus",
    "tunnel_key",
]

_TYPE_CODE = bytes([EapType.PEAP])
_IPMK_LABEL = b"Inner Methods Compound Keys"
_CSK_LABEL = b"Session Key Generating Function\x00"  # [MS-PEAP] §3.1.5.7: NUL included
_TK_SIZE = 60
_ISK_SIZE = 32


def peap_prf_plus(key: bytes, seed: bytes, length: int) -> bytes:
    """PEAPv0's PRF+ ([MS-PEAP] §3.1.5.5.2.2): Ti = HMAC-SHA1(K, T(i-1) | S | i | 00 00)."""
    out = bytearray()
    previous = b""
    counter = 0
    while len(out) < length:
        counter += 1
        previous = hmac.digest(key, previous + seed + bytes((counter, 0, 0)), "sha1")
        out += previous
    return bytes(out[:length])


def tunnel_key(engine: TlsEapEngine, tls13_export_size: int = 128) -> bytes:
    """TK: the first 60 bytes of the tunnel's Key_Material (see the module docstring)."""
    if engine.is_tls13:
        material = engine.export_keying_material(TLS13_KEY_LABEL, tls13_export_size, _TYPE_CODE)
    else:
        material = engine.export_keying_material(EAP_TLS_LABEL, 128, None)
    return material[:_TK_SIZE]


def compound_keys(tk: bytes, isk: bytes) -> tuple[bytes, bytes]:
    """IPMK (40 bytes) and CMK (20 bytes) from TK and the inner method's ISK."""
    isk = (isk[:_ISK_SIZE]).ljust(_ISK_SIZE, b"\x00")
    imck = peap_prf_plus(tk[:40], _IPMK_LABEL + isk, 60)
    return imck[:40], imck[40:60]


def compound_mac(cmk: bytes, binding: CryptoBinding, mandatory: bool = False) -> bytes:
    """HMAC-SHA1-160 over the Crypto-Binding TLV with its MAC zeroed, then the EAP type."""
    blank = replace(binding, compound_mac=bytes(20))
    tlv = Tlv(TlvType.CRYPTO_BINDING, blank.encode(), mandatory)
    return hmac.digest(cmk, tlv.encode() + _TYPE_CODE, "sha1")


def compound_session_key(ipmk: bytes) -> bytes:
    """CSK = PRF+(IPMK, "Session Key Generating Function\\0", 128)."""
    return peap_prf_plus(ipmk, _CSK_LABEL, 128)


def inner_session_key(result: SessionResult | None) -> bytes:
    """ISK: the inner method's MSK, first 32 bytes (zeros without one, as EAP-GTC)."""
    keys = result.keys if result is not None else None
    return keys.msk[:_ISK_SIZE] if keys is not None else bytes(_ISK_SIZE)


def bound_keys(tunnel: KeyMaterial, ipmk: bytes) -> KeyMaterial:
    """The keys once crypto-binding is used: MSK = CSK[0:64], no EMSK, the tunnel's
    Session-Id."""
    csk = compound_session_key(ipmk)
    return KeyMaterial(msk=csk[:64], emsk=b"", session_id=tunnel.session_id)
