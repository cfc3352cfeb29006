"""Both roles of a conversation in one process, with nothing in between.

For tests, benchmarks and the README example: it shuttles packets between an
:class:`~eapkit.session.AuthenticatorSession` and a :class:`~eapkit.session.PeerSession`
until both have finished, and keeps the transcript.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eapkit.session import (
    Action,
    AuthenticatorSession,
    Discard,
    Finished,
    PeerSession,
    Result,
    Send,
)

__all__ = ["Conversation", "converse"]


@dataclass
class Conversation:
    authenticator: Result | None = None
    peer: Result | None = None
    transcript: list[tuple[str, bytes]] = field(default_factory=list)


def _packet(action: Action) -> bytes | None:
    if isinstance(action, Send):
        return action.packet
    if isinstance(action, Finished):
        return action.packet
    return None


def converse(
    auth: AuthenticatorSession, peer: PeerSession, *, max_packets: int = 1000
) -> Conversation:
    """Run the conversation to its end; returns both results and every packet sent."""
    conv = Conversation()
    to_peer = _packet(auth.start())
    for _ in range(max_packets):
        if to_peer is None:
            break
        conv.transcript.append(("authenticator", to_peer))
        reply = peer.receive(to_peer)
        if isinstance(reply, Finished):
            break
        if isinstance(reply, Discard):
            break
        conv.transcript.append(("peer", reply.packet))
        action = auth.receive(reply.packet)
        to_peer = _packet(action)
    conv.authenticator = auth.result
    conv.peer = peer.result
    return conv
