"""TEAP's key derivations (RFC 9930 §6), both roles, in two compatibility modes.

::

    session_key_seed = TLS-Exporter("EXPORTER: teap session key seed", no context, 40)
    S-IMCK[0]        = session_key_seed                              (§6.1)
    IMSK[j]          = first 32 of TLS-PRF(EMSK[j], "TEAPbindkey@ietf.org", 0x00|0x00|0x40, 64)
                       or MSK[j] cut or zero-padded to 32, or 32 zeros  (§6.2)
    IMCK[j]          = TLS-PRF(S-IMCK[j-1], "Inner Methods Compound Keys", IMSK[j], 60)
    S-IMCK[j]        = IMCK[j][0:40],  CMK[j] = IMCK[j][40:60]
    Compound-MAC     = first 20 of MAC(CMK[n], Crypto-Binding TLV with both MACs zeroed
                       | 0x37 | server's Outer TLVs | peer's Outer TLVs)   (§6.3)
    MSK  = TLS-PRF(S-IMCK[n], "Session Key Generating Function", "", 64)     (§6.4)
    EMSK = TLS-PRF(S-IMCK[n], "Extended Session Key Generating Function", "", 64)
    Session-Id = 0x37 | tls-unique                                   (TLS 1.2, §3.8)
    Session-Id = 0x37 | TLS-Exporter("EXPORTER_EAP_TLS_Method-Id", 0x37, 64)
                                                       (TLS 1.3, RFC 9427 §2.1)

Section numbers are RFC 9930's (draft-ietf-emu-rfc7170bis numbers the calculations §5).

TLS-PRF is TLS 1.2's ``P_<hash>(secret, label | seed)`` with the cipher suite's hash
(SHA-384 for the ``*_SHA384`` suites, SHA-256 otherwise, also under TLS 1.3); MAC is the
suite's HMAC (SHA-1 for the CBC ``*-SHA`` suites), as hostap's ``eap_teap_common.c``.
Two chains are kept, one fed by the inner MSKs and one by the inner EMSKs (§6.2).

**RFC 9930 (``"rfc9930"``, the default) versus RFC 7170 as hostap 2.10 implements it
(``"rfc7170"``)** — each difference has a test in ``tests/methods/test_teap_keys.py``:

1. Inner EAP-MSCHAPv2: RFC 9930 §3.6.3 uses the EAP-FAST-MSCHAPv2 key (RFC 5422
   §3.2.3): the first and second 16 octets of the MSK swapped before it becomes the
   IMSK; hostap 2.10 uses the MSK as EAP-MSCHAPv2 exports it.
2. Basic-Password-Auth (no inner key): RFC 9930 §6.2 feeds an all-zero IMSK into the
   chain (S-IMCK advances); hostap 2.10 derives the CMK from a zero IMSK but leaves
   S-IMCK where it was (``eap_teap_derive_cmk_basic_pw_auth``).
3. The final MSK/EMSK: RFC 9930 §6.4 takes S-IMCK_EMSK[n] when the last Crypto-Binding
   carried an EMSK Compound MAC, else S-IMCK_MSK[n]; hostap 2.10 always S-IMCK_MSK[n].
4. The EMSK Compound MAC after an inner method without EMSK: RFC 9930 §6.2 sends only
   the MSK MAC (the EMSK is "not available"); hostap 2.10 keeps using the CMK_EMSK of
   the last inner method that had one, with Flags = both.
5. Session-Id under TLS 1.3: RFC 9930 §3.8 points to RFC 9427 §2.1 (the Method-Id
   exporter); hostap 2.10 uses ``0x37 | tls-unique`` (OpenSSL's Finished) there too.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Literal

from eapkit.methods.base import KeyMaterial
from eapkit.teap_tlv import CryptoBinding
from eapkit.tlsio.engine import TlsEapEngine
from eapkit.tlsio.keys import TLS13_METHOD_ID_LABEL

__all__ = [
    "COMPAT_MODES",
    "SESSION_KEY_SEED_LABEL",
    "TEAP_TYPE",
    "Compat",
    "KeyChain",
    "SuiteHashes",
    "compound_mac",
    "imsk",
    "mschapv2_fast_msk",
    "session_id",
    "session_key_seed",
    "suite_hashes",
    "tls_prf",
]

Compat = Literal["rfc9930", "rfc7170"]
COMPAT_MODES: tuple[Compat, ...] = ("rfc9930", "rfc7170")
TEAP_TYPE = 55
SESSION_KEY_SEED_LABEL = b"EXPORTER: teap session key seed"
_BIND_LABEL = b"TEAPbindkey@ietf.org"
_IMCK_LABEL = b"Inner Methods Compound Keys"
_MSK_LABEL = b"Session Key Generating Function"
_EMSK_LABEL = b"Extended Session Key Generating Function"


@dataclass(frozen=True, slots=True)
class SuiteHashes:
    """The negotiated cipher suite's PRF hash and MAC hash (hashlib names)."""

    prf: str = "sha256"
    mac: str = "sha256"


def suite_hashes(cipher_name: str | None) -> SuiteHashes:
    """From OpenSSL's cipher name: ``*SHA384`` -> SHA-384; a CBC ``*-SHA`` suite ->
    HMAC-SHA1 with the SHA-256 PRF; everything else SHA-256 (hostap's tables)."""
    name = (cipher_name or "").upper()
    if name.endswith("SHA384"):
        return SuiteHashes("sha384", "sha384")
    if name.endswith("-SHA") or name.endswith("_SHA"):
        return SuiteHashes("sha256", "sha1")
    return SuiteHashes()


def tls_prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """TLS 1.2's PRF, ``P_<hash>(secret, label | seed)`` (RFC 5246 §5)."""
    seed = label + seed
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.new(secret, a, hash_name).digest()
        out += hmac.new(secret, a + seed, hash_name).digest()
    return bytes(out[:length])


def session_key_seed(engine: TlsEapEngine) -> bytes:
    """S-IMCK[0] (RFC 9930 §6.1): 40 octets of the exporter, no context."""
    return engine.export_keying_material(SESSION_KEY_SEED_LABEL, 40, None)


def session_id(engine: TlsEapEngine, compat: Compat) -> bytes:
    """Session-Id (see the module docstring, difference 5)."""
    type_code = bytes([TEAP_TYPE])
    if engine.is_tls13 and compat == "rfc9930":
        return type_code + engine.export_keying_material(TLS13_METHOD_ID_LABEL, 64, type_code)
    conn = engine.conn
    first_finished_is_peers = engine.is_server != engine.resumed
    finished = conn.get_peer_finished() if first_finished_is_peers else conn.get_finished()
    return type_code + (finished or b"")


def mschapv2_fast_msk(msk: bytes) -> bytes:
    """The EAP-FAST-MSCHAPv2 MSK (RFC 5422 §3.2.3): the two 16-octet halves of the
    first 32 octets swapped."""
    return msk[16:32] + msk[:16] + msk[32:]


def imsk(prf: str, msk: bytes | None, emsk: bytes | None) -> tuple[bytes, bytes | None]:
    """(IMSK from the MSK, IMSK from the EMSK or None) (RFC 9930 §6.2)."""
    from_msk = (msk or b"")[:32].ljust(32, b"\0")
    if not emsk:
        return from_msk, None
    return from_msk, tls_prf(prf, emsk, _BIND_LABEL, b"\x00\x00\x40", 64)[:32]


def compound_mac(
    mac_hash: str, cmk: bytes, binding: CryptoBinding, server_outer: bytes, peer_outer: bytes
) -> bytes:
    """RFC 9930 §6.3: the first 20 octets of MAC(CMK, BUFFER)."""
    buffer = binding.zeroed() + bytes([TEAP_TYPE]) + server_outer + peer_outer
    return hmac.new(cmk, buffer, mac_hash).digest()[:20]


@dataclass(slots=True)
class KeyChain:
    """The two S-IMCK chains of one conversation (RFC 9930 §6.2), the same on both
    sides.  ``repr`` shows no key."""

    hashes: SuiteHashes
    compat: Compat
    s_imck_msk: bytes = field(repr=False)
    s_imck_emsk: bytes = field(repr=False)
    cmk_msk: bytes = field(default=b"", repr=False)
    cmk_emsk: bytes | None = field(default=None, repr=False)
    bound_with_emsk: bool = False  # the last Crypto-Binding carried an EMSK MAC
    inner_methods: int = 0

    @classmethod
    def start(cls, engine: TlsEapEngine, compat: Compat) -> KeyChain:
        seed = session_key_seed(engine)
        return cls(suite_hashes(engine.cipher), compat, seed, seed)

    def _imck(self, s_imck: bytes, imsk_j: bytes) -> tuple[bytes, bytes]:
        imck = tls_prf(self.hashes.prf, s_imck, _IMCK_LABEL, imsk_j, 60)
        return imck[:40], imck[40:]

    def add_inner(self, keys: KeyMaterial | None, *, mschapv2: bool = False) -> None:
        """One successful inner method: advance the chains and set CMK[j]."""
        msk = keys.msk if keys is not None else None
        emsk = keys.emsk if keys is not None and keys.emsk else None
        if msk is not None and mschapv2 and self.compat == "rfc9930":
            msk = mschapv2_fast_msk(msk)
        if keys is None and self.compat == "rfc7170":
            # hostap 2.10 (Basic-Password-Auth): CMK from a zero IMSK, S-IMCK unchanged
            _, self.cmk_msk = self._imck(self.s_imck_msk, bytes(32))
            self.inner_methods += 1
            return
        from_msk, from_emsk = imsk(self.hashes.prf, msk, emsk)
        self.s_imck_msk, self.cmk_msk = self._imck(self.s_imck_msk, from_msk)
        if from_emsk is not None:
            self.s_imck_emsk, self.cmk_emsk = self._imck(self.s_imck_emsk, from_emsk)
        elif self.compat == "rfc9930":
            self.cmk_emsk = None  # no EMSK of this method: an MSK MAC only
        self.inner_methods += 1

    def binding(
        self, template: CryptoBinding, server_outer: bytes, peer_outer: bytes
    ) -> CryptoBinding:
        """``template`` with its Flags and both Compound MACs filled in (what we send)."""
        flags = CryptoBinding.BOTH if self.cmk_emsk is not None else CryptoBinding.MSK
        base = CryptoBinding(
            template.version, template.received_version, flags, template.subtype, template.nonce
        )
        mac = self.hashes.mac
        msk_mac = compound_mac(mac, self.cmk_msk, base, server_outer, peer_outer)
        emsk_mac = bytes(20)
        if self.cmk_emsk is not None:
            emsk_mac = compound_mac(mac, self.cmk_emsk, base, server_outer, peer_outer)
        return CryptoBinding(
            base.version, base.received_version, flags, base.subtype, base.nonce, emsk_mac, msk_mac
        )

    def verify(self, got: CryptoBinding, server_outer: bytes, peer_outer: bytes) -> str | None:
        """None if ``got``'s Compound MACs verify (RFC 9930 §6.2 receiver rules), else
        why not.  Remembers whether an EMSK MAC was used, for the final keys."""
        mac = self.hashes.mac
        checked = False
        if got.has_msk:
            want = compound_mac(mac, self.cmk_msk, got, server_outer, peer_outer)
            if not hmac.compare_digest(want, got.msk_mac):
                return "MSK Compound MAC does not verify"
            checked = True
        emsk_used = False
        if got.has_emsk and self.cmk_emsk is not None:
            want = compound_mac(mac, self.cmk_emsk, got, server_outer, peer_outer)
            if not hmac.compare_digest(want, got.emsk_mac):
                return "EMSK Compound MAC does not verify"
            checked = emsk_used = True
        if not checked:
            return "no Compound MAC this side can verify"
        self.bound_with_emsk = emsk_used
        return None

    def master_keys(self) -> tuple[bytes, bytes]:
        """(MSK, EMSK) of RFC 9930 §6.4 from S-IMCK[n] (see difference 3)."""
        use_emsk = self.compat == "rfc9930" and self.bound_with_emsk
        s_imck = self.s_imck_emsk if use_emsk else self.s_imck_msk
        prf = self.hashes.prf
        return tls_prf(prf, s_imck, _MSK_LABEL, b"", 64), tls_prf(prf, s_imck, _EMSK_LABEL, b"", 64)

    def final_keys(self, engine: TlsEapEngine) -> KeyMaterial:
        """MSK, EMSK and Session-Id (RFC 9930 §6.4, §3.8; see differences 3 and 5)."""
        msk, emsk = self.master_keys()
        return KeyMaterial(msk=msk, emsk=emsk, session_id=session_id(engine, self.compat))
