"""Handoffs nobody picks up close themselves, so a customer is never left talking to no one; and what
the ops channel refused is posted again.

A handoff with no message either way for ``TELLER_HANDOFF_IDLE_MINUTES`` (default 30) is closed by
:meth:`bot.ops_desk.OpsDesk.expire_idle`: the customer is told Teller answers again (pushed on
Telegram and Slack; the web chat's next poll says so), and the operators read in the handoff's
thread that it expired. Every replica runs :class:`HandoffExpiry`; a conditional update lets exactly
one of them close each handoff, and a message that arrives meanwhile keeps it open.
"""

from __future__ import annotations

from bot.service import TellerService
from bot.sweeps import PeriodicSweep

#: Seconds between sweeps.
INTERVAL = 60.0


class HandoffExpiry(PeriodicSweep):
    """A background sweep (a daemon thread) over idle handoffs. A server service: ``start``/``stop``
    with the application; does nothing without an operators' desk."""

    name = "handoff-expiry"

    def __init__(self, service: TellerService, interval: float = INTERVAL) -> None:
        super().__init__(interval)
        self.service = service

    def sweep(self) -> int:
        """Close the idle handoffs; returns how many this replica closed. Also posts again what the
        ops channel refused: handoffs left without a thread and customer messages not relayed
        (:meth:`~bot.ops_desk.OpsDesk.open_missing_threads`, :meth:`~bot.ops_desk.OpsDesk.retry_relays`)."""
        ops = self.service.ops
        if ops is None:
            return 0
        ops.open_missing_threads()
        ops.retry_relays()
        return len(ops.expire_idle())
