"""Which part of Teller a message is for.

A product manager's direct messages go to their positioning interview while one is in progress; a
customer in a handoff talks to a person through the ops channel; everything else is a customer's
message for the answer policy. Channel adapters hand every message here and render whatever comes
back, so the routing is the same on every platform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.core import Incoming, Outgoing, TellerCore
from bot.storage import Feedback

if TYPE_CHECKING:
    from bot.ops_desk import OpsDesk
    from bot.positioning_desk import PositioningDesk


class Dispatcher:
    """Routes an :class:`Incoming` to the interview desk, a human handoff or customer service."""

    def __init__(
        self, core: TellerCore, desk: PositioningDesk | None = None, ops: OpsDesk | None = None
    ) -> None:
        self.core = core
        self.desk = desk
        self.ops = ops

    def handle(self, incoming: Incoming, private: bool = False) -> Outgoing:
        """``private``: the message came in a one-to-one conversation with Teller (a DM)."""
        if private and self.desk is not None and self.desk.wants(incoming):
            return self.desk.converse(incoming)
        # A redelivery (or a retry that reached another replica) gets what was answered the first
        # time, whatever has happened since (a handoff opened meanwhile, say).
        replayed = self.core.replay(incoming)
        if replayed is not None:
            if self.ops is not None and not replayed.silent:
                self.ops.after_reply(incoming, replayed)  # finishes what a crash may have cut short
            return replayed
        if self.ops is not None and (relayed := self.ops.relay_in(incoming)) is not None:
            return relayed
        reply = self.core.handle(incoming, replayed=False)
        if self.ops is not None:
            self.ops.after_reply(incoming, reply)
        return reply

    def feedback(
        self, message_id: str, helpful: bool, comment: str | None = None, user_id: str | None = None
    ) -> Feedback:
        entry = self.core.feedback(message_id, helpful, comment, user_id)
        if self.ops is not None:
            self.ops.after_feedback(message_id, helpful)
        return entry

    def delivered(self, reply: Outgoing, platform_id: str) -> None:
        """The platform's id of a posted reply (so a reaction on it can find it again)."""
        if self.ops is not None and reply.route not in ("interview", "human") and not reply.silent:
            self.core.store.conversations.set_platform_id(reply.message_id, platform_id)

    def close(self) -> None:
        if self.desk is not None:
            self.desk.close()
        if self.ops is not None:
            self.ops.close()
