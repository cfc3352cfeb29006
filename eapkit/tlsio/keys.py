"""Keys of the TLS-based EAP methods, from the TLS exporter.

- TLS 1.2, RFC 5216 §2.3: ``Key_Material = TLS-PRF-128(master_secret, "client EAP
  encryption", client.random || server.random)``, which is the RFC 5705 exporter with
  that label and *no* context; MSK = Key_Material[0:64], EMSK = Key_Material[64:128];
  ``Session-Id = Type-Code || client.random || server.random``.  EAP-TTLS uses the
  label ``"ttls keying material"`` (RFC 5281 §8).
- TLS 1.3, RFC 9190 §2.3 (and RFC 9427 §3 for TTLS/PEAP)::

      Type-Code    = one octet, the EAP type (0x0D for EAP-TLS)
      Key_Material = TLS-Exporter("EXPORTER_EAP_TLS_Key_Material", Type-Code, 128)
      Method-Id    = TLS-Exporter("EXPORTER_EAP_TLS_Method-Id", Type-Code, 64)
      Session-Id   = Type-Code || Method-Id
      MSK = Key_Material[0:64], EMSK = Key_Material[64:128]

  hostapd 2.10 and FreeRADIUS 3.2 pass the type octet as the exporter context for
  both labels, as the RFC says.

The exporter is asked once for 128 bytes and the result split: asking it twice for 64
would give the same 64 bytes (the output does not depend on where it is cut).
"""

from __future__ import annotations

from eapkit.methods.base import KeyMaterial
from eapkit.tlsio.engine import TlsEapEngine

__all__ = [
    "EAP_TLS_LABEL",
    "TLS13_KEY_LABEL",
    "TLS13_METHOD_ID_LABEL",
    "derive_keys",
]

EAP_TLS_LABEL = b"client EAP encryption"
TLS13_KEY_LABEL = b"EXPORTER_EAP_TLS_Key_Material"
TLS13_METHOD_ID_LABEL = b"EXPORTER_EAP_TLS_Method-Id"


def derive_keys(engine: TlsEapEngine, tls12_label: bytes = EAP_TLS_LABEL) -> KeyMaterial:
    """MSK, EMSK and Session-Id of a finished handshake, for the engine's EAP type."""
    type_code = bytes([engine.eap_type])
    if engine.is_tls13:
        material = engine.export_keying_material(TLS13_KEY_LABEL, 128, type_code)
        method_id = engine.export_keying_material(TLS13_METHOD_ID_LABEL, 64, type_code)
        session_id = type_code + method_id
    else:
        material = engine.export_keying_material(tls12_label, 128, None)
        session_id = type_code + engine.client_random + engine.server_random
    return KeyMaterial(msk=material[:64], emsk=material[64:128], session_id=session_id)
