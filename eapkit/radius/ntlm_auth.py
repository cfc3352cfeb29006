"""Running Samba's ``ntlm_auth`` for the Active Directory directory's MS-CHAPv2 check.

:mod:`eapkit.directory.ad` builds the command (``ntlm_auth --request-nt-key
--allow-mschapv2 --username=... --domain=... --challenge=... --nt-response=...``, as
FreeRADIUS's rlm_mschap does) and reads its answer; this module only runs it, because
processes belong to the layers that own threads and sockets (docs/architecture.md).

It is called on the blocking-check pool's thread that serves the request
(:mod:`eapkit.radius.fairpool`), never on the event loop.  No shell: the arguments are
an argv list.  Standard input is closed, the output is bounded, and the helper is killed
at ``timeout`` seconds (:class:`TimeoutError`: the check fails closed as
``directory_unavailable``).  Its output holds the NT key: it is returned, never logged.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

__all__ = ["run_helper"]

MAX_OUTPUT = 64 * 1024  # ntlm_auth says one line; more is not read


def run_helper(argv: Sequence[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` (no shell) for at most ``timeout`` seconds: (exit status, stdout
    followed by stderr).  Raises OSError (no such program) or TimeoutError."""
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv from the server's configuration
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{argv[0]} did not answer within {timeout:g} s") from None
    output = (done.stdout[:MAX_OUTPUT] + b"\n" + done.stderr[:MAX_OUTPUT]).decode(
        "utf-8", "replace"
    )
    return done.returncode, output
