"""The review queue: replies operators should look at, near-identical texts merged into one item.

Which replies qualify is decided here in SQL (:meth:`ReviewRepository.candidates`); how texts are
merged and what is suggested is :mod:`bot.review`'s business. Settling an item and storing the
correction it teaches is one transaction; two operators settling the same item on two replicas get
one success and one :class:`InputError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, func, select, text

from bot.errors import InputError
from bot.privacy.redaction import redact
from bot.storage import schema
from bot.storage.audit import AuditRepository
from bot.storage.database import Database, inserted_id
from bot.storage.feedback import FeedbackRepository
from bot.storage.records import (
    AuditAction,
    Correction,
    NewCorrection,
    ProposalStatus,
    ReviewCandidate,
    ReviewItem,
    ReviewKey,
    ReviewReason,
    ReviewSource,
    ReviewStatus,
    Suggestion,
    SuggestionKind,
)
from bot.text import storable

_r = schema.review_items
_s = schema.review_sources
_k = schema.corrections
_p = schema.correction_proposals


class ReviewRepository:
    """Review items, the replies filed under them, and the corrections they settle into. Thread-safe."""

    def __init__(self, database: Database, feedback: FeedbackRepository) -> None:
        self.db = database
        self.feedback = feedback

    def candidates(
        self, low_confidence: float, since: str | None = None, reply_id: str | None = None
    ) -> list[ReviewCandidate]:
        """Replies that belong in the review queue and are not filed there yet for that reason: marked
        not helpful, flagged, undelivered (the platform refused them), handoffs, clarify turns,
        intent answers below ``low_confidence`` (a probability in [0, 1]). Oldest first.

        ``since`` (ISO time) is compared with the reply's time, or the feedback's or flag's.
        """
        since_reply = " AND o.created_at >= :since" if since else ""
        feedback = "FROM feedback f WHERE f.message_id = o.id AND f.helpful = 0" + (
            " AND f.created_at >= :since" if since else ""
        )
        flags = "FROM flags g WHERE g.message_id = o.id" + (" AND g.created_at >= :since" if since else "")
        undelivered = "FROM deliveries d WHERE d.message_id = o.id AND d.state = 'failed'" + (
            " AND d.updated_at >= :since" if since else ""
        )
        reasons = [
            (ReviewReason.HANDOFF, "o.route = 'handoff'" + since_reply, "o.created_at"),
            (ReviewReason.CLARIFY, "o.route = 'clarify'" + since_reply, "o.created_at"),
            (
                ReviewReason.LOW_CONFIDENCE,
                "o.route = 'intent' AND o.confidence < :low" + since_reply,
                "o.created_at",
            ),
            (
                ReviewReason.NOT_HELPFUL,
                f"EXISTS (SELECT 1 {feedback})",
                f"(SELECT min(f.created_at) {feedback})",
            ),
            (ReviewReason.FLAGGED, f"EXISTS (SELECT 1 {flags})", f"(SELECT min(g.created_at) {flags})"),
            (
                ReviewReason.UNDELIVERED,
                f"EXISTS (SELECT 1 {undelivered})",
                f"(SELECT min(d.updated_at) {undelivered})",
            ),
        ]
        parts = [
            "SELECT o.id AS reply_id, i.id AS message_id, o.conversation_id AS conversation_id, "
            "i.text AS text, o.route AS route, o.intent AS intent, o.confidence AS confidence, "
            f"o.kb_id AS kb_id, {when} AS created_at, CAST('{reason.value}' AS TEXT) AS reason "
            "FROM messages o JOIN messages i ON i.id = o.reply_to "
            f"WHERE o.direction = 'out' AND ({condition})"
            + (" AND o.id = :reply" if reply_id else "")
            + " AND NOT EXISTS (SELECT 1 FROM review_sources s WHERE s.reply_id = o.id "
            f"AND s.reason = '{reason.value}')"
            for reason, condition, when in reasons
        ]
        params: dict[str, Any] = {"low": low_confidence}
        if since:
            params["since"] = since
        if reply_id:
            params["reply"] = reply_id
        rows = self.db.rows(text(" UNION ALL ".join(parts) + " ORDER BY created_at, reply_id"), params)
        return [ReviewCandidate(**{**r, "reason": ReviewReason(r["reason"])}) for r in rows]

    def create(
        self,
        key: str,
        text_: str,
        route: str | None,
        suggestion: Suggestion | None,
        sources: list[ReviewSource],
    ) -> int:
        """A new open item holding ``sources``; if an open item with the same key appeared meanwhile
        (another process), the sources join that one. Returns the item's id."""
        now = self.db.clock.now()
        with self.db.transaction() as connection:
            self.db.serialise(connection, f"review:{key}")
            existing = connection.execute(
                select(_r.c.id)
                .where(_r.c.key == key, _r.c.status == ReviewStatus.OPEN.value)
                .order_by(_r.c.id)
                .limit(1)
            ).scalar()
            if existing is not None:
                item_id = int(existing)
            else:
                result = connection.execute(
                    _r.insert().values(
                        key=key,
                        text=text_,
                        status=ReviewStatus.OPEN.value,
                        route=route,
                        created_at=now,
                        updated_at=now,
                    )
                )
                item_id = inserted_id(result)
                self._set_suggestion(connection, item_id, suggestion)
            self._file(connection, item_id, sources)
        return item_id

    def add_sources(self, item_id: int, sources: list[ReviewSource]) -> None:
        """File more replies under an item (a reply already filed for a reason is skipped)."""
        with self.db.transaction() as connection:
            self._file(connection, item_id, sources)

    def claim_post(self, item_id: int) -> bool:
        """Claim open item ``item_id`` for posting to the ops channel, once: True for the one caller
        (on any replica) whose conditional update took it, False when it was claimed before (posted
        already, or being posted elsewhere), is settled, or does not exist. A claim whose post does
        not happen is given back with :meth:`release_post`."""
        with self.db.transaction() as connection:
            claimed = connection.execute(
                _r.update()
                .where(
                    _r.c.id == item_id,
                    _r.c.status == ReviewStatus.OPEN.value,
                    _r.c.posted_at.is_(None),
                )
                .values(posted_at=self.db.clock.now())
            )
        return claimed.rowcount == 1

    def release_post(self, item_id: int) -> None:
        """Give back a claim of :meth:`claim_post` whose post did not happen (the ops channel
        failed, or the post limit deferred it): the item may be posted when it is next filed."""
        with self.db.transaction() as connection:
            connection.execute(_r.update().where(_r.c.id == item_id).values(posted_at=None))

    def set_suggestion(self, item_id: int, suggestion: Suggestion | None) -> None:
        with self.db.transaction() as connection:
            self._set_suggestion(connection, item_id, suggestion)

    def _set_suggestion(self, connection: Connection, item_id: int, s: Suggestion | None) -> None:
        connection.execute(
            _r.update()
            .where(_r.c.id == item_id)
            .values(
                suggestion_kind=s.kind.value if s else None,
                suggested_intent=s.intent if s else None,
                suggested_kb_id=s.kb_id if s else None,
                suggested_confidence=s.confidence if s else None,
                suggestion_model=s.model_version if s else None,
            )
        )

    def _file(self, connection: Connection, item_id: int, sources: list[ReviewSource]) -> None:
        for source in sources:
            connection.execute(
                self.db.insert(_s)
                .values(
                    item_id=item_id,
                    reply_id=source.reply_id,
                    message_id=source.message_id,
                    text=source.text,
                    reason=source.reason.value,
                    created_at=self.db.clock.now(),
                )
                .on_conflict_do_nothing()
            )
        connection.execute(_r.update().where(_r.c.id == item_id).values(updated_at=self.db.clock.now()))

    def items(
        self,
        status: ReviewStatus | None = ReviewStatus.OPEN,
        item_id: int | None = None,
        reply_id: str | None = None,
    ) -> list[ReviewItem]:
        """Review items (only ``status`` ones; None for all), oldest first, with their sources."""
        conditions: list[str] = ["1 = 1"]
        params: dict[str, Any] = {}
        if status is not None:
            conditions.append("r.status = :status")
            params["status"] = ReviewStatus(status).value
        if item_id is not None:
            conditions.append("r.id = :item")
            params["item"] = item_id
        if reply_id is not None:
            conditions.append("r.id IN (SELECT item_id FROM review_sources WHERE reply_id = :reply)")
            params["reply"] = reply_id
        where = "WHERE " + " AND ".join(conditions)
        joined = "FROM review_sources s JOIN review_items r ON r.id = s.item_id"
        with self.db.reading() as connection:

            def rows(sql: str) -> list[dict[str, Any]]:
                return [dict(r) for r in connection.execute(text(sql), params).mappings()]

            items = rows(f"SELECT r.* FROM review_items r {where} ORDER BY r.id")
            sources = rows(f"SELECT s.* {joined} {where} ORDER BY s.created_at, s.reply_id")
            # Flag reasons and "not helpful" comments on the filed replies, oldest first.
            notes = rows(
                f"SELECT s.item_id AS item_id, g.reason AS note, g.created_at AS at {joined} "
                f"JOIN flags g ON g.message_id = s.reply_id {where} "
                "AND s.reason = 'flagged' AND g.reason IS NOT NULL "
                f"UNION ALL SELECT s.item_id, f.comment, f.created_at {joined} "
                f"JOIN feedback f ON f.message_id = s.reply_id {where} "
                "AND s.reason = 'not_helpful' AND f.helpful = 0 AND f.comment IS NOT NULL ORDER BY at"
            )
        return [_review_item(row, sources, notes) for row in items]

    def keys_like(self, key: str, settled: bool, ratio: float, limit: int) -> list[ReviewKey]:
        """Items a new text with normalised ``key`` may join: open ones, or with ``settled`` settled
        ones. The item with ``key`` itself comes first (the oldest open one, the newest settled
        one); then the ``limit`` newest of a length that can be ``ratio`` alike (difflib's ratio is
        at most ``2 * min / (len a + len b)``, so lengths ``ratio / (2 - ratio)`` to ``(2 - ratio) /
        ratio`` times ``len(key)``: 0.82-1.22 at 0.9), open ones listed oldest first and settled
        ones newest first (the order :func:`bot.review._match` breaks ties in). Filing a text is
        bounded work however long the queue's history (see :data:`bot.review.MATCH_LIMIT`)."""
        statuses = (
            [s.value for s in ReviewStatus if s != ReviewStatus.OPEN]
            if settled
            else [ReviewStatus.OPEN.value]
        )
        columns = (_r.c.id, _r.c.key, _r.c.status, _r.c.route)
        exact = self.db.rows(
            select(*columns)
            .where(_r.c.status.in_(statuses), _r.c.key == key)
            .order_by(_r.c.id.desc() if settled else _r.c.id)
            .limit(1)
        )
        lo = math.floor(len(key) * ratio / (2 - ratio))
        hi = math.ceil(len(key) * (2 - ratio) / ratio)
        near = self.db.rows(
            select(*columns)
            .where(_r.c.status.in_(statuses), func.length(_r.c.key).between(lo, hi), _r.c.key != key)
            .order_by(_r.c.id.desc())
            .limit(limit)
        )
        if not settled:
            near.reverse()
        return [ReviewKey(r["id"], r["key"], ReviewStatus(r["status"]), r["route"]) for r in [*exact, *near]]

    def item(self, item_id: int) -> ReviewItem:
        """Raises :class:`InputError` if there is no such item."""
        items = self.items(status=None, item_id=item_id)
        if not items:
            raise InputError(f"no review item {item_id}")
        return items[0]

    def resolve(
        self,
        item_id: int,
        status: ReviewStatus,
        actor: str,
        resolution: str | None = None,
        correction: NewCorrection | None = None,
        same_text: Callable[[str, str], bool] | None = None,
    ) -> tuple[ReviewItem, Correction | None, list[int]]:
        """Close an open item (``status`` says how) and store its correction, if any, in one
        transaction. Earlier current corrections whose key is the same (by ``same_text``, default
        equality) are marked superseded by it, not changed otherwise. Returns the item, the
        correction and the ids it superseded.

        Raises :class:`InputError` if there is no such item or it is settled already.
        """
        same = same_text or (lambda a, b: a == b)
        now = self.db.clock.now()
        superseded: list[int] = []
        correction_id: int | None = None
        with self.db.transaction() as connection:
            settled = connection.execute(
                _r.update()
                .where(_r.c.id == item_id, _r.c.status == ReviewStatus.OPEN.value)
                .values(
                    status=ReviewStatus(status).value,
                    resolution=resolution,
                    resolved_by=actor,
                    resolved_at=now,
                    updated_at=now,
                )
            )
            if settled.rowcount != 1:
                row = connection.execute(
                    select(_r.c.status, _r.c.resolved_by).where(_r.c.id == item_id)
                ).first()
                if row is None:
                    raise InputError(f"no review item {item_id}")
                raise InputError(f"review item {item_id} is {row[0]} already (by {row[1]})")
            if correction is not None:
                correction_id, superseded = insert_correction(
                    self.db, connection, item_id, correction, actor, now, same
                )
        stored = (
            self.feedback.corrections(correction_id=correction_id)[0] if correction_id is not None else None
        )
        return self.item(item_id), stored, superseded


#: How the ids of entries written from a correction's answer start (:meth:`ReviewService._write_entry`).
OPERATOR_ENTRY = "op_"


def insert_correction(
    db: Database,
    connection: Connection,
    item_id: int | None,
    correction: NewCorrection,
    actor: str,
    now: str,
    same: Callable[[str, str], bool],
) -> tuple[int, list[int]]:
    """Store ``correction`` inside the caller's transaction; earlier current corrections whose key is
    the same (by ``same``) are marked superseded by it. Returns its id and the ids it superseded."""
    db.serialise(connection, "corrections")
    current = connection.execute(select(_k.c.id, _k.c.key).where(_k.c.superseded_by.is_(None))).all()
    result = connection.execute(
        _k.insert().values(
            item_id=item_id,
            text=correction.text,
            key=correction.key,
            action=correction.action.value,
            label=correction.label,
            kb_id=correction.kb_id,
            answer=redact(storable(correction.answer)) if correction.answer else None,
            author=actor,
            created_at=now,
            origin_id=correction.origin_id,
            message_id=correction.message_id,
        )
    )
    correction_id = inserted_id(result)
    superseded = [int(i) for i, key in current if same(key, correction.key)]
    if superseded:
        connection.execute(
            _k.update().where(_k.c.id.in_(superseded)).values(superseded_by=correction_id, superseded_at=now)
        )
        # What the superseded corrections proposed for other messages is withdrawn with them: a
        # reviewer found one accepted after its correction was superseded, then trained into a model.
        connection.execute(
            _p.update()
            .where(_p.c.correction_id.in_(superseded), _p.c.status == ProposalStatus.OPEN.value)
            .values(status=ProposalStatus.WITHDRAWN.value, decided_by=actor, decided_at=now)
        )
    # Audited in the same transaction: the correction and its record go together. Ids and labels
    # only: the customer's text and an operator's answer stay in the corrections table, and so does
    # the id of an entry written from a customer's words (``op_<their words>``, see
    # :meth:`bot.review.ReviewService.wrong_answer`): the log says only that there is one.
    kb_id = correction.kb_id
    details: dict[str, Any] = {
        "correction": correction_id,
        "action": correction.action.value,
        "label": correction.label,
        "kb_id": "op_… (an operator's entry)" if kb_id and kb_id.startswith(OPERATOR_ENTRY) else kb_id,
        "item": item_id,
        "superseded": superseded,
    }
    if correction.origin_id is not None:
        details["from_correction"] = correction.origin_id
    AuditRepository(db).record_in(
        connection, actor, AuditAction.CORRECTION, f"correction:{correction_id}", details
    )
    return correction_id, superseded


def _review_item(
    row: dict[str, Any], sources: list[dict[str, Any]], notes: list[dict[str, Any]]
) -> ReviewItem:
    mine = [s for s in sources if s["item_id"] == row["id"]]
    suggestion = (
        Suggestion(
            SuggestionKind(row["suggestion_kind"]),
            row["suggested_intent"],
            row["suggested_kb_id"],
            row["suggested_confidence"],
            row["suggestion_model"],
        )
        if row["suggestion_kind"]
        else None
    )
    return ReviewItem(
        id=row["id"],
        key=row["key"],
        text=row["text"],
        status=ReviewStatus(row["status"]),
        route=row["route"],
        suggestion=suggestion,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message_ids=tuple(dict.fromkeys(s["reply_id"] for s in mine)),
        reasons=tuple(dict.fromkeys(ReviewReason(s["reason"]) for s in mine)),
        texts=tuple(dict.fromkeys(s["text"] for s in mine)),
        notes=tuple(dict.fromkeys(n["note"] for n in notes if n["item_id"] == row["id"])),
        resolution=row["resolution"],
        resolved_by=row["resolved_by"],
        resolved_at=row["resolved_at"],
    )
