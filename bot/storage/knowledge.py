"""The knowledge base's change log: how a change made on one replica (or the CLI) reaches the others.

Each replica keeps its own index (:class:`retrieval.knowledge_base.KnowledgeBase` under its
``TELLER_HOME``); the log in the database is the source of truth. A change is appended as the new
state of each item it touched; replicas apply the rows after the last ``seq`` they applied
(:mod:`bot.operations.kb_follower`). Rows are never rewritten, so a replica that was down catches
up by reading from where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from bot.storage import schema
from bot.storage.database import Database, inserted_id
from bot.storage.records import KbChange, KbChangeKind

_k = schema.kb_changes


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True)


class KnowledgeLogRepository:
    """Append and read the knowledge base's change log. Thread-safe."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def append(
        self,
        changes: Sequence[tuple[KbChangeKind, str, dict[str, Any] | None]],
        origin: str,
        expected_head: int | None = None,
    ) -> int | None:
        """Append ``(kind, item_id, payload or None for a removal)`` rows in order; returns the last
        ``seq`` (0 if ``changes`` is empty).

        Appends are serialised (a transaction-level advisory lock on PostgreSQL), so that ``seq``
        order is commit order: a reader never sees row N+1 before row N. With ``expected_head``
        nothing is appended, and None returned, if the log has moved past it meanwhile (the
        caller merged against an older log and must merge again).
        """
        last = 0
        if not changes:
            return last
        with self.db.transaction() as connection:
            self.db.serialise(connection, "kb_log")
            if expected_head is not None:
                head = connection.execute(select(func.coalesce(func.max(_k.c.seq), 0))).scalar_one()
                if int(head) != expected_head:
                    return None
            for kind, item_id, payload in changes:
                result = connection.execute(
                    _k.insert().values(
                        kind=KbChangeKind(kind).value,
                        item_id=item_id,
                        payload=None if payload is None else _json(payload),
                        origin=origin,
                        at=self.db.clock.now(),
                    )
                )
                last = inserted_id(result)
        return last

    def since(self, seq: int, limit: int = 10_000) -> list[KbChange]:
        """Changes after ``seq``, oldest first."""
        rows = self.db.rows(select(_k).where(_k.c.seq > seq).order_by(_k.c.seq).limit(limit))
        return [
            KbChange(
                int(r["seq"]),
                KbChangeKind(r["kind"]),
                r["item_id"],
                None if r["payload"] is None else json.loads(r["payload"]),
                r["origin"],
                r["at"],
            )
            for r in rows
        ]

    def head(self) -> int:
        """The newest ``seq`` (0: no change was ever logged)."""
        return int(self.db.rows(select(func.coalesce(func.max(_k.c.seq), 0).label("n")))[0]["n"])
