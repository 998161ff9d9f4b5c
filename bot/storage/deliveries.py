"""Deliveries: each message Teller pushes to a platform, and how that went.

A sender takes a message with :meth:`DeliveryRepository.take` before the first platform call
(``pending``; only one sender at a time, across replicas), records each part the platform accepts
(:meth:`~DeliveryRepository.progress`, so a later send resumes after them), and ends with
``delivered`` (the ids of every part) or ``failed`` (the platform's reason). A redelivered customer
message whose reply is not ``delivered`` is sent again, from the first part not yet accepted; one
that is, is not. Failed replies join the review queue (:class:`bot.storage.ReviewReason`
``undelivered``). Once a message is ``delivered``, its text as written leaves the outbox
(:mod:`bot.storage.outbox`) in the same transaction; a failed one's stays (a redelivery may send it
again) until the retention sweep.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from bot.storage import schema
from bot.storage.database import Database
from bot.storage.outbox import OutboxRepository
from bot.storage.records import Delivery, DeliveryKind, DeliveryState

_d = schema.deliveries
#: The platform's reason is kept this long at most (characters).
MAX_REASON = 500


class DeliveryRepository:
    """Delivery states of outgoing messages. Thread-safe."""

    def __init__(self, database: Database, outbox: OutboxRepository | None = None) -> None:
        self.db = database
        self.outbox = outbox or OutboxRepository(database)

    def take(
        self, message_id: str, kind: DeliveryKind, channel: str, address: str, lease: float
    ) -> Delivery | None:
        """Become the one sender of ``message_id``: recorded ``pending`` if it is new; taken over if
        it failed before, or if it is pending but nobody touched it for ``lease`` seconds (its
        sender died). Returns the row (its ``platform_ids``: the parts already accepted), or None
        when it is delivered already or another sender has it now."""
        now = self.db.clock.now()
        with self.db.transaction() as connection:
            inserted = connection.execute(self._new_pending(message_id, kind, channel, address, now))
            row = dict(connection.execute(select(_d).where(_d.c.message_id == message_id)).mappings().one())
            if inserted.rowcount == 1:
                return _delivery(row)
            state = DeliveryState(row["state"])
            if state == DeliveryState.DELIVERED:
                return None
            if state == DeliveryState.PENDING and row["updated_at"] >= self.db.clock.ago(lease):
                return None  # in flight elsewhere
            taken = connection.execute(
                _d.update()
                .where(
                    _d.c.message_id == message_id,
                    _d.c.state == row["state"],
                    _d.c.updated_at == row["updated_at"],
                )
                .values(state=DeliveryState.PENDING.value, updated_at=now, reason=None)
            )
            if taken.rowcount != 1:
                return None
            row.update(state=DeliveryState.PENDING.value, updated_at=now, reason=None)
        return _delivery(row)

    def progress(self, message_id: str, platform_ids: list[str]) -> None:
        """The platform accepted these parts so far (a later send resumes after them)."""
        with self.db.transaction() as connection:
            connection.execute(
                _d.update()
                .where(_d.c.message_id == message_id)
                .values(
                    platform_ids=json.dumps(platform_ids),
                    parts=len(platform_ids),
                    updated_at=self.db.clock.now(),
                )
            )

    def begin(self, message_id: str, kind: DeliveryKind, channel: str, address: str) -> Delivery:
        """Record ``message_id`` as pending unless it is on record already; returns the row as it
        stands (a delivered message stays delivered). For senders, :meth:`take` decides who sends."""
        now = self.db.clock.now()
        with self.db.transaction() as connection:
            connection.execute(self._new_pending(message_id, kind, channel, address, now))
            row = connection.execute(select(_d).where(_d.c.message_id == message_id)).mappings().one()
        return _delivery(dict(row))

    def delivered(self, message_id: str, platform_ids: list[str], attempts: int) -> Delivery:
        """Every part was accepted by the platform."""
        return self._finish(
            message_id,
            state=DeliveryState.DELIVERED.value,
            platform_ids=json.dumps(platform_ids),
            parts=len(platform_ids),
            attempts=attempts,
            reason=None,
        )

    def failed(self, message_id: str, reason: str, attempts: int, platform_ids: list[str]) -> Delivery:
        """The platform refused (or never answered) after ``attempts`` tries; ``platform_ids``: the
        parts that did get through before the failure."""
        return self._finish(
            message_id,
            state=DeliveryState.FAILED.value,
            platform_ids=json.dumps(platform_ids),
            parts=len(platform_ids),
            attempts=attempts,
            reason=reason[:MAX_REASON],
        )

    def _finish(self, message_id: str, **values: Any) -> Delivery:
        with self.db.transaction() as connection:
            if values.get("state") == DeliveryState.DELIVERED.value:
                self.outbox.discard_in(connection, message_id)
            connection.execute(
                _d.update()
                .where(_d.c.message_id == message_id)
                .values(
                    attempts=_d.c.attempts + values.pop("attempts"), updated_at=self.db.clock.now(), **values
                )
            )
            row = connection.execute(select(_d).where(_d.c.message_id == message_id)).mappings().one()
        return _delivery(dict(row))

    def touch(self, message_id: str) -> None:
        """The message is being sent right now (one attempt starts): a pending row touched within
        the last minutes belongs to a live sender, not to one that died."""
        with self.db.transaction() as connection:
            connection.execute(
                _d.update()
                .where(_d.c.message_id == message_id, _d.c.state == DeliveryState.PENDING.value)
                .values(updated_at=self.db.clock.now())
            )

    def stale(self, before: str, channels: Sequence[str], limit: int = 100) -> list[Delivery]:
        """Pending deliveries of ``channels`` not touched since ``before`` (ISO time): their sender
        stopped mid-way (a crash, a restart). Oldest first."""
        query = (
            select(_d)
            .where(
                _d.c.state == DeliveryState.PENDING.value,
                _d.c.updated_at < before,
                _d.c.channel.in_(list(channels)),
            )
            .order_by(_d.c.updated_at)
            .limit(limit)
        )
        return [_delivery(r) for r in self.db.rows(query)]

    def claim(self, delivery: Delivery) -> bool:
        """Take over a stale pending delivery as it was read; False when another replica took it
        (or its sender woke up) first."""
        with self.db.transaction() as connection:
            result = connection.execute(
                _d.update()
                .where(
                    _d.c.message_id == delivery.message_id,
                    _d.c.state == DeliveryState.PENDING.value,
                    _d.c.updated_at == delivery.updated_at,
                )
                .values(updated_at=self.db.clock.now())
            )
            return result.rowcount == 1

    def _new_pending(self, message_id: str, kind: DeliveryKind, channel: str, address: str, now: str) -> Any:
        """INSERT of a pending row that does nothing if the message is on record already."""
        return (
            self.db.insert(_d)
            .values(
                message_id=message_id,
                kind=kind.value,
                channel=channel,
                address=address,
                state=DeliveryState.PENDING.value,
                attempts=0,
                parts=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[_d.c.message_id])
        )

    def get(self, message_id: str) -> Delivery | None:
        rows = self.db.rows(select(_d).where(_d.c.message_id == message_id))
        return _delivery(rows[0]) if rows else None

    def recent(self, state: DeliveryState | None = None, limit: int = 50) -> list[Delivery]:
        """The newest deliveries (of one state), newest first."""
        query = select(_d).order_by(_d.c.updated_at.desc()).limit(limit)
        if state is not None:
            query = query.where(_d.c.state == state.value)
        return [_delivery(r) for r in self.db.rows(query)]

    def states(self) -> dict[DeliveryState, int]:
        """How many deliveries are in each state."""
        rows = self.db.rows(select(_d.c.state, func.count().label("n")).group_by(_d.c.state))
        counted = {DeliveryState(r["state"]): int(r["n"]) for r in rows}
        return {state: counted.get(state, 0) for state in DeliveryState}


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(
        message_id=row["message_id"],
        kind=DeliveryKind(row["kind"]),
        channel=row["channel"],
        address=row["address"],
        state=DeliveryState(row["state"]),
        attempts=int(row["attempts"]),
        parts=int(row["parts"]),
        platform_ids=tuple(json.loads(row["platform_ids"] or "[]")),
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
