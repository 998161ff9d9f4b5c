"""The outbox: the exact text of a message on its way to a customer, while the stored copy is redacted.

Everything Teller keeps is redacted (:mod:`bot.privacy.redaction`), but a customer must read what
the bank or an operator wrote: "call 0800 123 4567", not "call [PHONE]". When redaction changes a
reply or an operator's relay, the text as written waits here, beside the message, until it is
delivered (or fails), and is then removed in the same transaction as the delivery's state
(:class:`~bot.storage.deliveries.DeliveryRepository`). A reply answered over HTTP (the web chat, the
REST API) has no delivery record: its row lets a retry with the same ``client_message_id`` get the
same text, and is removed by the retention sweep after :data:`OUTBOX_HOURS`, by erasure, or with its
message. Nothing else reads it: the review queue, logs, briefs and exports see the redacted copy.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from bot.storage import schema
from bot.storage.database import Database

_o = schema.outbox
_INSERT = _o.insert()

#: Hours an undelivered text may wait before the retention sweep removes it.
OUTBOX_HOURS = 24


class OutboxRepository:
    """Texts as written, for messages whose stored copy redaction changed. Thread-safe."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def keep(self, connection: Connection, message_id: str, written: str, stored: str, now: str) -> None:
        """Inside the transaction that stores ``message_id``: keep ``written`` when it differs from
        the ``stored`` (redacted) copy; nothing otherwise."""
        if written != stored:
            connection.execute(_INSERT, {"message_id": message_id, "text": written, "created_at": now})

    def text(self, message_id: str) -> str | None:
        """The text as written of a message still on its way, or None (never redacted, or gone)."""
        rows = self.db.rows(select(_o.c.text).where(_o.c.message_id == message_id))
        return str(rows[0]["text"]) if rows else None

    def texts(self, message_ids: list[str]) -> dict[str, str]:
        """:meth:`text` for several messages at once (ids without a row are left out)."""
        if not message_ids:
            return {}
        rows = self.db.rows(select(_o.c.message_id, _o.c.text).where(_o.c.message_id.in_(message_ids)))
        return {str(r["message_id"]): str(r["text"]) for r in rows}

    def discard_in(self, connection: Connection, message_id: str) -> None:
        """Remove a message's text as written (it was delivered, failed or erased)."""
        connection.execute(delete(_o).where(_o.c.message_id == message_id))

    def discard(self, message_id: str) -> None:
        with self.db.transaction() as connection:
            self.discard_in(connection, message_id)

    def sweep(self, before: str) -> int:
        """Remove every text written before ``before`` (an ISO time); returns how many."""
        with self.db.transaction() as connection:
            return int(connection.execute(delete(_o).where(_o.c.created_at < before)).rowcount or 0)
