"""What keeps the approval page's unauthenticated sign-in start cheap and uninformative.

``POST /api/signin/begin`` needs no session (it is how a session starts), and each one
stores a WebAuthn challenge.  So that nobody can fill the store or learn who is enrolled:

- :class:`BeginLimiter`: token buckets per source address and for everyone together;
  past either, the answer is ``429`` and nothing is stored.  The global rate times the
  challenge lifetime bounds how many challenges can be live at once; expired ones are
  purged (:meth:`BeginLimiter.purge_due`, the store's ``purge``) at most every
  ``purge_every`` seconds.
- :class:`DecoyCredentials`: for a user without credentials (unknown, or not enrolled)
  the ``allowCredentials`` list is made up, deterministically, from an HMAC of the name
  under a server key kept in the store: the same name always gets the same list, shaped
  like a real one (WebAuthn §5.5 ``allowCredentials``; §14.6.2 "Username Enumeration"
  recommends exactly this).

Time is an argument (sans-I/O, DESIGN.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.store.base import Store
from eapkit.verify.webauthn import b64url_encode
from eapkit.verify.webauthn.records import StoredCredential

__all__ = ["BeginLimiter", "DecoyCredentials", "TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class BeginLimiter:
    """Per-address and global buckets; at most ``max_addresses`` addresses remembered
    (the least recently seen is forgotten first, so the table stays bounded too)."""

    def __init__(
        self,
        *,
        per_address: float = 2.0,
        address_burst: float = 10.0,
        overall: float = 50.0,
        overall_burst: float = 200.0,
        max_addresses: int = 10_000,
        purge_every: float = 30.0,
    ) -> None:
        self.per_address = per_address
        self.address_burst = address_burst
        self.overall = TokenBucket(overall, overall_burst, overall_burst, 0.0)
        self.max_addresses = max_addresses
        self.purge_every = purge_every
        self._addresses: OrderedDict[str, TokenBucket] = OrderedDict()
        self._next_purge = 0.0

    def allow(self, address: str, now: float) -> bool:
        bucket = self._addresses.pop(address, None)
        if bucket is None:
            bucket = TokenBucket(self.per_address, self.address_burst, self.address_burst, now)
            while len(self._addresses) >= self.max_addresses:
                self._addresses.popitem(last=False)
        self._addresses[address] = bucket
        # the address pays first: one noisy address does not drain the global bucket
        return bucket.take(now) and self.overall.take(now)

    def purge_due(self, now: float) -> bool:
        if now < self._next_purge:
            return False
        self._next_purge = now + self.purge_every
        return True


class DecoyCredentials:
    """A made-up, stable ``allowCredentials`` list for a name with no credentials."""

    KEY = "bridge:decoy-key"

    def __init__(self, store: Store, *, rand: RandomSource = SYSTEM_RANDOM) -> None:
        self.store = store
        self.rand = rand
        self._key: bytes | None = None

    def _server_key(self) -> bytes:
        if self._key is None:
            key = self.store.get(self.KEY)
            if key is None:
                self.store.put(self.KEY, self.rand.random_bytes(32))
                key = self.store.get(self.KEY)  # another process may have won: use theirs
            self._key = key or b""
        return self._key

    def for_user(self, user: str) -> list[dict[str, Any]]:
        digest = hmac.digest(self._server_key(), user.encode("utf-8", "surrogatepass"), "sha512")
        # one or two keys, 64-byte ids like a security key's, usb/nfc like a YubiKey's
        count = 1 + digest[0] % 2
        out: list[dict[str, Any]] = []
        for i in range(count):
            cid = hashlib.sha512(digest + bytes([i])).digest()
            self._as_if_loaded(cid)
            out.append(
                {"type": "public-key", "id": b64url_encode(cid), "transports": ["nfc", "usb"]}
            )
        return out

    def _as_if_loaded(self, cid: bytes) -> None:
        """The work listing a real credential costs (two store reads, one record parsed),
        so a name with keys and one without take about as long."""
        tag = b64url_encode(hashlib.sha256(cid).digest())
        self.store.get(f"bridge:decoy:{tag}")
        self.store.counter(f"bridge:decoy:{tag}")
        StoredCredential.from_record(self._sample(cid))

    @staticmethod
    def _sample(cid: bytes) -> bytes:
        return StoredCredential(
            cid,
            "decoy",
            cid[:32],
            cid + cid[:13],
            -7,
            bytes(16),
            ("nfc", "usb"),
            False,
            False,
            True,
            "none",
            "none",
            0.0,
        ).to_record()
