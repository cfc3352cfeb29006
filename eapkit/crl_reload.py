"""CRL files that ``eapkit serve`` reloads while it runs (issue 22: a revoked laptop
was accepted over EAP-TLS until a restart).

:class:`CrlFiles` is the :class:`~eapkit.tlsio.config.CrlSource` of the ``[tls] crl``
files: a new TLS conversation asks it to :meth:`~CrlFiles.poll`, which looks at the
files' mtime, size and inode at most once per ``interval`` seconds (``SIGHUP`` asks
for a look at the next conversation through :meth:`~CrlFiles.force`).  When one
changed, all are read again and ``generation`` moves on; the TLS context then
rebuilds its OpenSSL context with the new CRLs (RFC 5280 §5, RFC 9190 §5.6).

A file that cannot be read or parsed keeps the CRLs in force (write new CRLs to a
temporary name and rename them into place) and is reported once to ``warn``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from eapkit.pki import load_crl

__all__ = ["CrlFiles"]

Signature = tuple[tuple[int, int, int], ...]


class CrlFiles:
    def __init__(
        self,
        paths: Sequence[Path],
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        warn: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.paths = list(paths)
        self.interval = interval
        self.clock = clock
        self.warn = warn
        self.generation = 0
        self.crls: tuple[bytes, ...] = tuple(p.read_bytes() for p in self.paths)
        self._signature = self._stat()
        self._next = clock() + interval
        self._reported: Signature | None = None

    def _stat(self) -> Signature:
        stats = []
        for path in self.paths:
            try:
                st = os.stat(path)
            except OSError:
                stats.append((0, 0, 0))
            else:
                stats.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stats)

    def force(self) -> None:
        """Look at the files on the next poll (``SIGHUP``)."""
        self._next = 0.0

    def poll(self) -> None:
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.interval
        signature = self._stat()
        if signature == self._signature:
            return
        try:
            crls = tuple(p.read_bytes() for p in self.paths)
            for data in crls:
                load_crl(data)
        except (OSError, ValueError) as exc:
            if self._reported != signature:
                self._reported = signature
                self.warn(f"CRL not reloaded, the previous one stays in force: {exc}")
            return
        self._signature = signature
        self.crls = crls
        self.generation += 1
