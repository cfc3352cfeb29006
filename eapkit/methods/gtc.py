"""EAP-GTC, Generic Token Card (RFC 3748 §5.6), both roles.

The Request carries a displayable prompt, the Response the user's answer (a password, a
one-time code, ...) in cleartext: run it only inside a tunnel (TTLS, PEAP) or where the
link is otherwise protected.  GTC derives no keys.

The authenticator checks the answer through an injected :class:`ResponseCheck`; the peer
asks a callback, so a prompt on a terminal, a script or a token driver can answer.
"""

from __future__ import annotations

from collections.abc import Callable

from eapkit.credentials import ResponseCheck
from eapkit.methods.base import (
    Authenticator,
    Done,
    MethodContext,
    MethodFactory,
    Outcome,
    Peer,
    Step,
)
from eapkit.packet import EapType, MethodId

__all__ = ["GTC", "GtcAuthenticator", "GtcPeer", "gtc_authenticator", "gtc_peer"]

GTC = MethodId.legacy(EapType.GTC)
MAX_RESPONSE = 1024


class GtcAuthenticator:
    """Sends the prompt, checks the one Response it gets."""

    method = GTC

    def __init__(
        self, ctx: MethodContext, check: ResponseCheck, prompt: str = "Password: "
    ) -> None:
        self._ctx = ctx
        self._check = check
        self._prompt = prompt
        self._done = False

    def start(self) -> bytes:
        return self._prompt.encode()

    def receive(self, type_data: bytes) -> Step:
        if self._done:
            return Done(Outcome.failed("protocol_error", "GTC has a single round"))
        self._done = True
        if not type_data:
            return Done(Outcome.failed("malformed", "empty GTC Response"))
        if len(type_data) > MAX_RESPONSE:
            return Done(Outcome.failed("malformed", f"GTC Response of {len(type_data)} bytes"))
        try:
            response = type_data.decode("utf-8")
        except UnicodeDecodeError:
            return Done(Outcome.failed("malformed", "GTC Response is not UTF-8"))
        user = self._ctx.identity_text
        verdict = self._check(user, response, self._ctx.now)
        if verdict.ok:
            return Done(Outcome.ok(identity=verdict.user or user))
        return Done(Outcome.failed(verdict.reason, verdict.detail, identity=user))


GtcAnswer = Callable[[str], str | bytes]


class GtcPeer:
    """Answers the prompt through a callback; the peer cannot verify the authenticator,
    so once it has answered it accepts the authenticator's Success (RFC 4137 COND_SUCC)."""

    method = GTC

    def __init__(self, ctx: MethodContext, answer: GtcAnswer) -> None:
        self._ctx = ctx
        self._answer = answer

    def receive(self, type_data: bytes) -> Step:
        prompt = type_data.decode("utf-8", "replace")
        response = self._answer(prompt)
        if isinstance(response, str):
            response = response.encode()
        return Done(Outcome.ok(), type_data=response)


def gtc_authenticator(
    check: ResponseCheck, prompt: str = "Password: "
) -> MethodFactory[Authenticator]:
    """A factory for :class:`eapkit.session.AuthenticatorSession`."""
    return MethodFactory(GTC, lambda ctx: GtcAuthenticator(ctx, check, prompt), "gtc")


def gtc_peer(answer: GtcAnswer) -> MethodFactory[Peer]:
    """A factory for :class:`eapkit.session.PeerSession`."""
    return MethodFactory(GTC, lambda ctx: GtcPeer(ctx, answer), "gtc")
