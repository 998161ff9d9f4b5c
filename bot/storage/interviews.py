"""Positioning interviews, one row each, rewritten after every answer.

Implements the port :class:`positioning.store.InterviewStore`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, func, select, text

from bot.storage import schema
from bot.storage.database import Database, inserted_id
from positioning.brief import erase_from_score, erase_quotes
from positioning.engine import ACTIVE, InterviewState
from positioning.errors import InterviewNotFound

_i = schema.interviews
_b = schema.briefs
_t = schema.interview_turns
_m = schema.messages
#: The name writers of ``briefs`` that must not interleave take turns on (:func:`serialise_briefs`).
BRIEFS_LOCK = "briefs"


def serialise_briefs(connection: Connection) -> None:
    """Make this transaction and every other one that calls it (recording a brief, erasing quotes
    from briefs) run one after the other: PostgreSQL, a transaction-level advisory lock; SQLite's
    write transactions are serial already (``BEGIN IMMEDIATE``)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": BRIEFS_LOCK})


@dataclass(frozen=True)
class StoredBrief:
    """A brief as it was written: its Markdown, its score (``PositioningScore.to_dict()``), when."""

    id: int
    interview_id: str
    user_id: str | None
    days: int | None
    markdown: str
    score: dict[str, Any]
    written_at: str


class InterviewRepository:
    """Interviews of every product manager. Thread-safe."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def save(self, state: InterviewState) -> None:
        row = {
            "user_id": state.user_id,
            "script_id": state.script_id,
            "status": state.status,
            "state": json.dumps(state.to_dict()),
            "created_at": state.created_at,
            "updated_at": state.updated_at,
        }
        insert = self.db.insert(_i).values(id=state.id, **row)
        with self.db.transaction() as connection:
            connection.execute(insert.on_conflict_do_update(index_elements=[_i.c.id], set_=row))

    def remember_turn(
        self, channel: str, platform_id: str, user_id: str, reply: dict[str, Any]
    ) -> dict[str, Any]:
        """Keep the reply a platform message of an interview got; if that message was answered
        before (another replica got it too), the reply kept first is returned instead."""
        with self.db.transaction() as connection:
            connection.execute(
                self.db.insert(_t)
                .values(
                    channel=channel,
                    platform_id=platform_id,
                    user_id=user_id,
                    reply=json.dumps(reply),
                    created_at=self.db.clock.now(),
                )
                .on_conflict_do_nothing(index_elements=[_t.c.channel, _t.c.platform_id])
            )
            kept = connection.execute(
                select(_t.c.reply).where(_t.c.channel == channel, _t.c.platform_id == platform_id)
            ).scalar_one()
        return dict(json.loads(kept))

    def turn(self, channel: str, platform_id: str) -> dict[str, Any] | None:
        """The reply a platform message of an interview got, if it was answered."""
        rows = self.db.rows(
            select(_t.c.reply).where(_t.c.channel == channel, _t.c.platform_id == platform_id)
        )
        return dict(json.loads(rows[0]["reply"])) if rows else None

    def get(self, interview_id: str, user_id: str | None = None) -> InterviewState:
        """Raises :class:`InterviewNotFound` (no such interview, or not ``user_id``'s)."""
        rows = self.db.rows(select(_i.c.state, _i.c.user_id).where(_i.c.id == interview_id))
        if not rows or (user_id is not None and rows[0]["user_id"] != user_id):
            raise InterviewNotFound(f"no interview {interview_id!r}" + (f" for {user_id}" if user_id else ""))
        return InterviewState.from_dict(json.loads(rows[0]["state"]))

    def for_user(self, user_id: str) -> list[InterviewState]:
        """The user's interviews, most recently touched first."""
        rows = self.db.rows(
            select(_i.c.state).where(_i.c.user_id == user_id).order_by(_i.c.updated_at.desc(), _i.c.id.desc())
        )
        return [InterviewState.from_dict(json.loads(r["state"])) for r in rows]

    def active_for(self, user_id: str) -> InterviewState | None:
        return next((s for s in self.for_user(user_id) if s.status == ACTIVE), None)

    def count(self) -> int:
        return int(self.db.rows(select(func.count().label("n")).select_from(_i))[0]["n"])

    def record_brief(
        self,
        interview_id: str,
        user_id: str | None,
        days: int,
        markdown: str,
        score: dict[str, Any],
        quoted: Mapping[str, str] | None = None,
    ) -> StoredBrief:
        """Keep a brief just written (every one is kept: how positioning moved over time).

        ``quoted``: the customers' messages (id -> text) the brief may quote. Those gone by now
        (erased or past retention while the brief was being written) have their quotes replaced by
        "[erased]" before the row is stored (:func:`positioning.brief.erase_quotes`, and in the score
        :func:`positioning.brief.erase_from_score`), in the same
        transaction as the insert, serialised with erasure's (:func:`serialise_briefs`): an erasure
        either sees this row or removed its messages before it was checked. The returned brief holds
        the Markdown as stored."""
        with self.db.transaction() as connection:
            serialise_briefs(connection)
            gone: set[str] = set()
            if quoted:
                ids = list(quoted)
                kept: set[str] = set()
                for start in range(0, len(ids), 400):
                    chunk = ids[start : start + 400]
                    kept.update(
                        str(i)
                        for i in connection.execute(select(_m.c.id).where(_m.c.id.in_(chunk))).scalars()
                    )
                gone = {words for message_id, words in quoted.items() if message_id not in kept}
            scored = json.dumps(score, sort_keys=True)
            if gone:
                markdown, _ = erase_quotes(markdown, gone)
                scored, _ = erase_from_score(scored, gone)
            row = {
                "interview_id": interview_id,
                "user_id": user_id,
                "days": days,
                "markdown": markdown,
                "score": scored,
                "written_at": self.db.clock.now(),
            }
            brief_id = inserted_id(connection.execute(_b.insert().values(**row)))
        return _brief({**row, "id": brief_id})

    def briefs(self, interview_id: str) -> list[StoredBrief]:
        """The briefs written for an interview, oldest first."""
        rows = self.db.rows(select(_b).where(_b.c.interview_id == interview_id).order_by(_b.c.id))
        return [_brief(r) for r in rows]

    def import_file(self, path: Path) -> int:
        """Copy the interviews of a ``positioning.db`` from before they moved into this store (those
        not here yet); returns how many. A missing file imports nothing."""
        if not path.is_file():
            return 0
        engine = sqlalchemy.create_engine(f"sqlite:///{path}")
        try:
            with engine.connect() as connection:
                if not sqlalchemy.inspect(connection).has_table("interviews"):
                    return 0
                rows = [
                    dict(r)
                    for r in connection.execute(sqlalchemy.text("SELECT * FROM interviews")).mappings()
                ]
        finally:
            engine.dispose()
        columns = {c.name for c in _i.columns}
        with self.db.transaction() as connection:
            added = 0
            for row in rows:
                result = connection.execute(
                    self.db.insert(_i)
                    .values(**{k: v for k, v in row.items() if k in columns})
                    .on_conflict_do_nothing()
                )
                added += max(result.rowcount, 0)
        return added


def _brief(row: dict[str, Any]) -> StoredBrief:
    return StoredBrief(
        int(row["id"]),
        row["interview_id"],
        row["user_id"],
        row["days"],
        row["markdown"],
        json.loads(row["score"]),
        row["written_at"],
    )
