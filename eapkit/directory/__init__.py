"""Where users live (DESIGN.md, ``eapkit.directory``).

- :mod:`~eapkit.directory.base`: the :class:`Directory` interface and the
  :class:`User` record;
- :mod:`~eapkit.directory.local`: SQLite, the server's database file (the default);
- :mod:`~eapkit.directory.stored`: any :class:`~eapkit.store.base.Store` (Redis for a
  cluster);
- :mod:`~eapkit.directory.ldap`: an LDAP server, read in place (the ``ldap`` extra);
- :mod:`~eapkit.directory.ad`: Active Directory (LDAP plus account state, nested groups,
  objectGUID, MS-CHAPv2 through ntlm_auth);
- :mod:`~eapkit.directory.scope`: one read of a user's record per request.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from eapkit.directory.base import (
    SECOND_FACTORS,
    Directory,
    DirectoryUnavailable,
    User,
    new_user,
)
from eapkit.directory.local import LocalDirectory
from eapkit.directory.scope import RequestScoped, request_scope
from eapkit.directory.stored import StoredDirectory
from eapkit.errors import ConfigError
from eapkit.store import open_store

if TYPE_CHECKING:
    from eapkit.directory.ad import AdSettings, HelperRun
    from eapkit.directory.ldap import LdapSettings

__all__ = [
    "DIRECTORIES",
    "SECOND_FACTORS",
    "Directory",
    "DirectoryUnavailable",
    "LocalDirectory",
    "RequestScoped",
    "StoredDirectory",
    "User",
    "new_user",
    "open_directory",
    "request_scope",
]

DIRECTORIES = ("local", "store", "ldap", "ad")


def open_directory(
    kind: str,
    db: Path,
    store_url: str | None = None,
    *,
    cache_ttl: float = 300.0,
    ldap: LdapSettings | None = None,
    ad: AdSettings | None = None,
    run: HelperRun | None = None,
) -> Directory:
    """``local``: the SQLite file ``db``; ``store``: the store at ``store_url``
    (default: the same file, as the second factors' store); ``ldap``: the server(s) of
    ``ldap``, enrollments in that store.  ``cache_ttl`` 0 turns off the
    verified-password cache, so every password check costs one PBKDF2.  ``ad``: Active
    Directory, MS-CHAPv2 through ``run`` (ntlm_auth; None: MS-CHAPv2 refused)."""
    if kind == "ad":
        if ad is None:
            raise ConfigError('directory "ad" needs a [directory] table (kind = "ad")')
        try:
            from eapkit.directory.ad import AdDirectory
        except ImportError:
            raise ConfigError("the AD directory needs the ldap extra (ldap3)") from None
        return AdDirectory(ad, open_store(store_url or f"sqlite:{db}"), run)
    if kind == "ldap":
        if ldap is None:
            raise ConfigError('directory "ldap" needs a [directory] table (kind = "ldap")')
        try:
            from eapkit.directory.ldap import LdapDirectory
        except ImportError:
            raise ConfigError("the LDAP directory needs the ldap extra (ldap3)") from None
        return LdapDirectory(ldap, open_store(store_url or f"sqlite:{db}"))
    if kind == "local":
        return LocalDirectory(db, cache_ttl=cache_ttl)
    if kind == "store":
        store = open_store(store_url or f"sqlite:{db}")
        return StoredDirectory(store, owns_store=True, cache_ttl=cache_ttl)
    raise ConfigError(f"directory is one of {', '.join(DIRECTORIES)}, not {kind!r}")
