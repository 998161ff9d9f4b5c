"""Which part of Teller a message is for.

A product manager's direct messages go to their positioning interview while one is in progress;
everything else is a customer's message for the answer policy. Channel adapters hand every message
here and render whatever comes back, so the routing is the same on every platform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.core import Incoming, Outgoing, TellerCore

if TYPE_CHECKING:
    from bot.positioning_desk import PositioningDesk


class Dispatcher:
    """Routes an :class:`Incoming` to the interview desk or to customer service."""

    def __init__(self, core: TellerCore, desk: PositioningDesk | None = None) -> None:
        self.core = core
        self.desk = desk

    def handle(self, incoming: Incoming, private: bool = False) -> Outgoing:
        """``private``: the message came in a one-to-one conversation with Teller (a DM)."""
        if private and self.desk is not None and self.desk.wants(incoming):
            return self.desk.converse(incoming)
        return self.core.handle(incoming)

    def close(self) -> None:
        if self.desk is not None:
            self.desk.close()
