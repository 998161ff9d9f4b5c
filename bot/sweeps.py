"""Periodic background work of a server: one daemon thread per sweep, started and stopped with the
application like a channel (``start``/``stop``).

:class:`PeriodicSweep` calls :meth:`~PeriodicSweep.sweep` every ``interval`` seconds (the first time
after ``first_after``). A sweep that fails with a :class:`~bot.errors.TellerError` (the database
blinked) is logged as ``<name>_failed`` and tried again at the next tick; anything else is a bug and
ends the thread with its traceback in the log. Subclasses: :class:`bot.recovery.DeliveryRecovery`,
:class:`bot.handoff_expiry.HandoffExpiry`, :class:`bot.privacy.retention.RetentionService`.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from bot.errors import TellerError

log = logging.getLogger(__name__)


class PeriodicSweep:
    """Calls :meth:`sweep` every ``interval`` seconds on a daemon thread, from ``start`` to ``stop``."""

    #: The service's name (logs, the thread's name).
    name = "sweep"

    def __init__(self, interval: float, first_after: float | None = None) -> None:
        self.interval = interval
        self.first_after = interval if first_after is None else first_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> object:
        """One round of the work; what it returns is for callers and tests."""
        raise NotImplementedError

    def _run(self) -> None:
        delay = self.first_after
        while not self._stop.wait(delay):
            delay = self.interval
            try:
                self.sweep()
            except TellerError as exc:
                log.error(
                    f"{self.name.replace('-', '_')}_failed", extra={"fields": {"error": str(exc)[:300]}}
                )

    async def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"teller-{self.name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 60)
            self._thread = None
