"""Files that hold secrets: created 0600, in directories created 0700.

The user database holds NT hashes (password-equivalent for MS-CHAPv2), the store holds
sealed OTP seeds and their keys file the keys, the demo PKI holds private keys, a TOTP
QR code *is* the seed.  Whoever can read one of them can log in as someone, so each is
created by :func:`create_private` with mode 0600 *before* SQLite or a writer opens it
(SQLite gives a database's ``-wal`` and ``-shm`` the database file's own mode, so they
follow), and :func:`private_dir` creates the directories eapkit needs 0700, parents
included.  An existing file keeps its mode: :func:`loose` says which ones group or
others can read, and ``eapkit serve`` warns about each at start.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = ["create_private", "loose", "private_dir", "write_private"]


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) mode 0700; an existing one is left alone."""
    if path == Path() or path.is_dir():
        return
    missing = []
    walk = path
    while not walk.exists() and walk != walk.parent:
        missing.append(walk)
        walk = walk.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            directory.mkdir(mode=0o700)


def create_private(path: str | os.PathLike[str]) -> None:
    """Make ``path`` an empty 0600 file if it does not exist and its directory does (a
    library does not make directories: the commands do, with :func:`private_dir`)."""
    target = Path(path)
    if str(path) == ":memory:" or target.exists() or not target.parent.is_dir():
        return
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path``, mode 0600 whether the file is new or not."""
    target = Path(path)
    private_dir(target.parent)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)


def loose(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """One warning per existing file of ``paths`` that group or others can read."""
    warnings = []
    for path in paths:
        target = Path(path)
        try:
            mode = target.stat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & 0o077:
            warnings.append(
                f"{target} holds secrets and is readable by others "
                f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {target}"
            )
    return warnings
