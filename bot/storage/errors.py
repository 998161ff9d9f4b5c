"""The store's errors (all are :class:`bot.errors.TellerError`)::

StoreError              the database cannot be opened, migrated or written
└── DuplicateMessage    this platform message was stored before (a retry, or two replicas racing)
"""

from __future__ import annotations

from bot.errors import TellerError


class StoreError(TellerError):
    """The database cannot be opened, migrated or written."""


class DuplicateMessage(StoreError):
    """This platform message was stored before (a platform retry, or two deliveries racing)."""
