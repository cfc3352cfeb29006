"""Test doubles: stand-ins for credentials and authenticators, so tests, benchmarks and
examples need no user database and no hardware.

Nothing in the rest of ``eapkit`` imports this package (DESIGN.md, "Layers").

- :class:`InMemoryPasswords`: user -> password, a ``ResponseCheck``;
- :class:`StaticNtHashes`: user -> NT hash, an ``NtHashLookup`` with password change;
- :class:`~eapkit.testing.soft_authenticator.SoftAuthenticator`: a FIDO2 authenticator
  and browser in software (import it from its module: it needs the ``fido`` extra).
"""

from __future__ import annotations

from eapkit.testing.nt_hashes import StaticNtHashes
from eapkit.testing.passwords import InMemoryPasswords

__all__ = ["InMemoryPasswords", "StaticNtHashes"]
