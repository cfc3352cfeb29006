"""The one exception tree of eapkit (see DESIGN.md, "Errors").

Decoders of untrusted bytes raise :class:`DecodeError` and nothing else.  Protocol
violations inside a conversation do not raise: they end it with an EAP Failure and a
reason.  Everything else that raises is a programming or configuration error.
"""

from __future__ import annotations


class EapkitError(Exception):
    """Root of every exception eapkit raises on purpose."""


class DecodeError(EapkitError, ValueError):
    """Untrusted bytes did not parse.

    ``offset`` is where in the buffer the problem was found and ``expected`` says
    what should have been there.  The text never contains secret material.
    """

    def __init__(self, message: str, *, offset: int = 0, expected: str | None = None) -> None:
        self.offset = offset
        self.expected = expected
        text = f"{message} (at offset {offset}"
        text += f"; expected {expected})" if expected else ")"
        super().__init__(text)
        self.reason = message


class ConfigError(EapkitError, ValueError):
    """A setting that cannot work (bad path, impossible combination, ...)."""


class Unavailable(EapkitError):
    """Something a login depends on did not answer (a directory server): the
    conversation fails closed with :attr:`refusal` as its reason, not as the method's
    own error."""

    refusal = "unavailable"


def need(data: bytes, offset: int, count: int, what: str) -> None:
    """Raise :class:`DecodeError` unless ``count`` bytes of ``what`` start at ``offset``."""
    if offset + count > len(data):
        raise DecodeError(
            f"truncated {what}: {len(data) - offset} bytes left",
            offset=offset,
            expected=f"{count} bytes",
        )
