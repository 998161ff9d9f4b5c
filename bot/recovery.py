"""Deliveries a stopped replica left unfinished, finished by the replicas that are running.

The courier (:mod:`bot.delivery`) takes a message ``pending`` before its first platform call and
touches it before each further attempt. A pending delivery nobody touched for the courier's
``lease`` (300 s) belongs to a sender that died (a crash, a kill, a redeploy mid-send): the
customer may not have the reply. Every replica runs :class:`DeliveryRecovery`; each stale
delivery is taken over by exactly one of them (a conditional update) through
:meth:`bot.service.TellerService.resume`: a reply is sent again from its first part the platform
had not accepted; an operator's relay is reported to the operators instead.
"""

from __future__ import annotations

import logging

from bot.errors import TellerError
from bot.service import TellerService
from bot.sweeps import PeriodicSweep

log = logging.getLogger(__name__)

#: Seconds between sweeps.
INTERVAL = 15.0


class DeliveryRecovery(PeriodicSweep):
    """A background sweep (a daemon thread) over stale pending deliveries. A server service:
    ``start``/``stop`` with the application."""

    name = "delivery-recovery"

    def __init__(self, service: TellerService, interval: float = INTERVAL) -> None:
        super().__init__(interval)
        self.service = service

    def sweep(self) -> int:
        """Resume the stale deliveries of the channels this replica can reach; returns how many
        this replica took over."""
        ops = self.service.ops
        transports = ops.transports if ops is not None else {}
        if not transports:
            return 0
        store = self.service.core.store
        cutoff = store.database.clock.ago(self.service.courier.lease)
        taken = 0
        for delivery in store.deliveries.stale(cutoff, list(transports)):
            try:
                if self.service.resume(delivery, transports[delivery.channel]):
                    taken += 1
                    log.warning(
                        "delivery_resumed",
                        extra={"fields": {"message_id": delivery.message_id, "channel": delivery.channel}},
                    )
            except TellerError as exc:  # the database blinked: the next sweep finds it again
                log.error("delivery_resume_failed", extra={"fields": {"error": str(exc)[:300]}})
        return taken
