"""What people said about Teller's replies: customers' feedback, operators' flags, and corrections.

Corrections are written when an operator settles a review item (:meth:`ReviewRepository.resolve`,
one transaction with the item); this repository reads them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import bindparam, select

from bot.errors import Conflict, InputError
from bot.privacy.redaction import redact
from bot.storage import schema
from bot.storage.conversations import ConversationRepository, new_id
from bot.storage.database import Database
from bot.storage.records import Correction, CorrectionAction, Direction, Feedback, Flag, StoredMessage
from bot.text import storable

_f = schema.feedback
#: The feedback a platform message carried, built once (every message with a platform id is looked
#: up here before it is answered: see ``_SEEN`` in :mod:`bot.storage.conversations`).
_BY_PLATFORM = select(_f).where(
    _f.c.channel == bindparam("channel"), _f.c.platform_id == bindparam("platform_id")
)
_g = schema.flags
_k = schema.corrections


class FeedbackRepository:
    """Feedback, flags and corrections. Free text (comments, reasons) is redacted. Thread-safe."""

    def __init__(self, database: Database, conversations: ConversationRepository) -> None:
        self.db = database
        self.conversations = conversations

    def add_feedback(
        self,
        message_id: str,
        helpful: bool,
        comment: str | None = None,
        user_id: str | None = None,
        platform: tuple[str, str] | None = None,
    ) -> Feedback:
        """A customer's verdict on one of Teller's replies, once per reply. ``platform``: the
        channel and platform id of the message that carried it, for feedback sent as a message's
        text (:meth:`by_platform` finds it again; one row per platform message). Raises
        :class:`InputError` if ``message_id`` is not a stored reply, :class:`Conflict` if it has
        feedback already (checked in the transaction that stores it, serialised per reply across
        replicas: :meth:`~bot.storage.database.Database.serialise`) or if feedback was stored under
        ``platform`` already (two replicas taking the same redelivered message at once: the unique
        index decides)."""
        message = self.conversations.message(message_id)
        if message.direction != Direction.OUT:
            raise InputError(
                f"message {message_id!r} is a customer message; feedback is about Teller's replies"
            )
        row = {
            "id": new_id("f"),
            "message_id": message_id,
            "helpful": int(helpful),
            "comment": redact(storable(comment)) if comment else None,
            "user_id": user_id,
            "created_at": self.db.clock.now(),
            "channel": platform[0] if platform else None,
            "platform_id": platform[1] if platform else None,
        }
        with self.db.transaction() as connection:
            # PostgreSQL reads at READ COMMITTED: without this, two requests at once (a double click,
            # two tabs) both found no feedback and both stored theirs (a review: 19 of 30 trials).
            self.db.serialise(connection, f"feedback:{message_id}")
            given = connection.execute(select(_f.c.id).where(_f.c.message_id == message_id).limit(1))
            if given.first() is not None:
                raise Conflict("feedback on this reply was given already")
            insert = self.db.insert(_f).values(**row).on_conflict_do_nothing().returning(_f.c.id)
            if connection.execute(insert).first() is None:  # only the platform message's index refuses
                raise Conflict("feedback on this reply was given already")
        return _feedback(row)

    def by_platform(self, channel: str, platform_id: str) -> Feedback | None:
        """The feedback a platform message carried as its text (:meth:`add_feedback` with
        ``platform``), None if it carried none."""
        rows = self.db.rows(_BY_PLATFORM, {"channel": channel, "platform_id": platform_id})
        return _feedback(rows[0]) if rows else None

    def feedback(self, limit: int = 100) -> list[tuple[Feedback, StoredMessage]]:
        """The latest feedback, newest first, each with the reply it is about."""
        rows = self.db.rows(select(_f).order_by(_f.c.created_at.desc(), _f.c.id.desc()).limit(limit))
        return [(_feedback(r), self.conversations.message(r["message_id"])) for r in rows]

    def add_flag(self, message_id: str, reason: str | None, actor: str, source: str) -> Flag:
        """Flag one of Teller's replies (the reason redacted). An actor flags a reply once: flagging
        it again returns the first flag. Raises :class:`InputError` if it is not Teller's answer."""
        message = self.conversations.message(message_id)
        if message.direction != Direction.OUT or message.reply_to is None:
            raise InputError(f"message {message_id!r} is not one of Teller's answers")
        row = {
            "id": new_id("fl"),
            "message_id": message_id,
            "reason": redact(storable(reason.strip())) if reason and reason.strip() else None,
            "actor": actor,
            "source": source,
            "created_at": self.db.clock.now(),
        }
        with self.db.transaction() as connection:
            connection.execute(self.db.insert(_g).values(**row).on_conflict_do_nothing())
        return self.flags(message_id=message_id, actor=actor)[0]

    def flags(self, limit: int = 100, message_id: str | None = None, actor: str | None = None) -> list[Flag]:
        """Flags, newest first."""
        query = select(_g).order_by(_g.c.created_at.desc(), _g.c.id.desc()).limit(limit)
        if message_id is not None:
            query = query.where(_g.c.message_id == message_id)
        if actor is not None:
            query = query.where(_g.c.actor == actor)
        return [Flag(**{k: r[k] for k in Flag.__dataclass_fields__}) for r in self.db.rows(query)]

    def corrections(
        self, current_only: bool = False, limit: int | None = None, correction_id: int | None = None
    ) -> list[Correction]:
        """Corrections, newest first; ``current_only`` leaves out superseded ones."""
        query = select(_k).order_by(_k.c.id.desc())
        if current_only:
            query = query.where(_k.c.superseded_by.is_(None))
        if correction_id is not None:
            query = query.where(_k.c.id == correction_id)
        if limit is not None:
            query = query.limit(limit)
        return [correction_from_row(r) for r in self.db.rows(query)]

    def corrections_head(self) -> str:
        """A signature of the corrections table ("" when it is empty) that moves whenever a
        correction is stored anywhere (a newer one superseding an older one is stored too), removed
        (erasure, retention: a trial found an erased customer's correction still answering on every
        replica, the newest id unchanged) or changed (erasure keeps a shared item's correction under
        another customer's words, whatever their length: a review's finding). A SHA-256 over each
        row's id, state and words, read in one query (the table holds operators' corrections:
        thousands at most, read every few seconds)."""
        rows = self.db.rows(
            select(_k.c.id, _k.c.superseded_by, _k.c.text, _k.c.label, _k.c.kb_id).order_by(_k.c.id)
        )
        if not rows:
            return ""
        digest = hashlib.sha256()
        for r in rows:
            digest.update(
                json.dumps([r["id"], r["superseded_by"], r["text"], r["label"], r["kb_id"]]).encode()
            )
        return f"{len(rows)}:{digest.hexdigest()[:32]}"


def correction_from_row(row: dict[str, Any]) -> Correction:
    return Correction(**{**row, "action": CorrectionAction(row["action"])})


def _feedback(row: dict[str, Any]) -> Feedback:
    return Feedback(
        row["id"], row["message_id"], bool(row["helpful"]), row["comment"], row["user_id"], row["created_at"]
    )
