"""EAP-GTC, Generic Token Card (RFC 3748 §5.6), both roles.

The Request carries a displayable prompt, the Response the user's answer (a password, a
one-time code, ...) in cleartext: run it only inside a tunnel (TTLS, PEAP) or where the
link is otherwise protected.  GTC derives no keys.

The authenticator checks the answer through an injected :class:`ResponseCheck`; its
success carries the factors the check's :class:`~eapkit.credentials.Verdict` proved.  The
peer asks a callback, so a prompt on a terminal, a script or a token driver can answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from eapkit.credentials import CHALLENGE, ResponseCheck, TwoRoundCheck
from eapkit.methods.base import (
    Authenticator,
    Done,
    Factor,
    MethodContext,
    MethodFactory,
    Outcome,
    Peer,
    Reply,
    Step,
)
from eapkit.packet import EapType, MethodId

__all__ = ["GTC", "GtcAuthenticator", "GtcPeer", "gtc_authenticator", "gtc_peer"]

GTC = MethodId.legacy(EapType.GTC)
MAX_RESPONSE = 1024


class GtcAuthenticator:
    """Sends the prompt and checks the Response.  When the check answers
    :data:`~eapkit.credentials.CHALLENGE` (the password was right and a second factor is
    due), it sends the check's prompt in another GTC Request and checks the next Response
    with ``code_check`` (a :class:`~eapkit.credentials.PasswordThenCode` brings its own)."""

    method = GTC

    def __init__(
        self,
        ctx: MethodContext,
        check: ResponseCheck,
        prompt: str = "Password: ",
        code_check: ResponseCheck | None = None,
    ) -> None:
        self._ctx = ctx
        self._check = check
        self._prompt = prompt
        if code_check is None and isinstance(check, TwoRoundCheck):
            code_check = check.second
        self._code_check = code_check
        self._round = 0
        self._user = ctx.identity_text
        self._proved: frozenset[str] = frozenset()  # by the first round, when it challenged

    def start(self) -> bytes:
        return self._prompt.encode()

    def receive(self, type_data: bytes) -> Step:
        self._round += 1
        if self._round > 2 or (self._round == 2 and self._code_check is None):
            return Done(Outcome.failed("protocol_error", "unexpected GTC Response"))
        if not type_data:
            return Done(Outcome.failed("malformed", "empty GTC Response"))
        if len(type_data) > MAX_RESPONSE:
            return Done(Outcome.failed("malformed", f"GTC Response of {len(type_data)} bytes"))
        try:
            response = type_data.decode("utf-8")
        except UnicodeDecodeError:
            return Done(Outcome.failed("malformed", "GTC Response is not UTF-8"))
        if self._round == 2:
            assert self._code_check is not None
            verdict = self._code_check(self._user, response, self._ctx.now)
        else:
            verdict = self._check(self._user, response, self._ctx.now)
            if verdict.reason == CHALLENGE and self._code_check is not None:
                self._user = verdict.user or self._user
                self._proved = verdict.factors
                return Reply((verdict.detail or "One-time code: ").encode())
        if verdict.ok:
            outcome = Outcome.ok(identity=verdict.user or self._user)
            factors = frozenset(map(Factor, self._proved | verdict.factors))
            return Done(replace(outcome, factors=factors))
        return Done(Outcome.failed(verdict.reason, verdict.detail, identity=self._user))


GtcAnswer = Callable[[str], str | bytes]


class GtcPeer:
    """Answers each prompt through a callback.  The peer cannot verify the authenticator,
    so once it has answered it accepts a Success (RFC 4137 COND_SUCC), and it answers a
    further prompt (a second factor) if one comes (MAY_CONT)."""

    method = GTC

    def __init__(self, ctx: MethodContext, answer: GtcAnswer) -> None:
        self._ctx = ctx
        self._answer = answer

    def receive(self, type_data: bytes) -> Step:
        prompt = type_data.decode("utf-8", "replace")
        response = self._answer(prompt)
        if isinstance(response, str):
            response = response.encode()
        return Done(Outcome.ok(), type_data=response, final=False)


def gtc_authenticator(
    check: ResponseCheck, prompt: str = "Password: ", code_check: ResponseCheck | None = None
) -> MethodFactory[Authenticator]:
    """A factory for :class:`eapkit.session.AuthenticatorSession`."""
    return MethodFactory(
        GTC, lambda ctx: GtcAuthenticator(ctx, check, prompt, code_check), "gtc", True
    )


def gtc_peer(answer: GtcAnswer) -> MethodFactory[Peer]:
    """A factory for :class:`eapkit.session.PeerSession`."""
    return MethodFactory(GTC, lambda ctx: GtcPeer(ctx, answer), "gtc")
