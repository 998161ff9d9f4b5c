"""Business outcomes of Teller's replies: what happened after a reply, by name.

An outcome (``adviser_call_booked``, ``card_activated``, ...) is recorded against one of Teller's
answers, once per name: by the customer's own button press (pressing "Book an adviser call" under
an advice reply records ``adviser_call_booked`` on that reply, :meth:`OutcomeRepository.book`), or
by a bank's backend (``POST /api/outcomes``, audited as :class:`~bot.storage.records.AuditAction`
``outcome`` in the same transaction). Positioning reads them with the log
(:meth:`OutcomeRepository.of_messages`): a bank may count a need resolved only when an outcome is
recorded (issue #16: an advice reply is a refusal, an adviser call booked is the resolution).

Outcomes hang off their message: erasure and retention remove them with it
(:func:`bot.privacy.purge.purge_messages`).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from bot.errors import InputError, NotFound
from bot.storage import schema
from bot.storage.audit import AuditRepository
from bot.storage.conversations import TELLER_ANSWER, ConversationRepository, new_id
from bot.storage.database import Database
from bot.storage.records import HUMAN_ROUTE, AuditAction, Direction, Outcome, StoredMessage

_o = schema.outcomes
_m = schema.messages

#: An outcome's name: a short slug, lower case (``adviser_call_booked``).
OUTCOME_NAME = re.compile(r"[a-z][a-z0-9_]{0,49}")
#: The outcome the "Book an adviser call" button records on the advice reply it was pressed under.
ADVISER_CALL_BOOKED = "adviser_call_booked"
#: Who recorded an outcome: the customer's button press, or the bank's backend through the API.
CUSTOMER_SOURCE = "customer"
BACKEND_SOURCE = "api:backend"
#: What an unknown reply, a customer's own message and an operator's relay are all told.
NO_SUCH_ANSWER = "no answer of Teller's with that id (an outcome is recorded on one of Teller's replies)"
#: Replies looked at for the one a pressed button was offered under (newest first).
RECENT = 20

_CHUNK = 400


def check_name(name: str) -> str:
    """``name`` when it is a valid outcome name; raises :class:`InputError` saying the form."""
    if not OUTCOME_NAME.fullmatch(name):
        raise InputError(
            "an outcome's name is a short slug: a lower-case letter, then lower-case letters, digits or "
            "underscores, at most 50 characters (e.g. adviser_call_booked)"
        )
    return name


class OutcomeRepository:
    """Business outcomes of Teller's replies. Thread-safe."""

    def __init__(
        self, database: Database, conversations: ConversationRepository, audit: AuditRepository
    ) -> None:
        self.db = database
        self.conversations = conversations
        self.audit = audit

    def answer(self, message_id: str) -> StoredMessage:
        """Teller's answer ``message_id``; :class:`NotFound` (:data:`NO_SUCH_ANSWER`) for an unknown
        id, a customer's message or an operator's relay alike."""
        if not self.conversations.exists(message_id):
            raise NotFound(NO_SUCH_ANSWER)
        reply = self.conversations.message(message_id)
        if reply.direction != Direction.OUT or reply.reply_to is None or reply.route in (None, HUMAN_ROUTE):
            raise NotFound(NO_SUCH_ANSWER)
        return reply

    def record(
        self, message_id: str, name: str, source: str, actor: str | None = None
    ) -> tuple[Outcome, bool]:
        """Record outcome ``name`` on Teller's answer ``message_id`` (once: recording it again returns
        the first, and ``False``). With ``actor``, a new outcome is written to the audit log in the
        same transaction. Raises :class:`InputError` for a malformed name, :class:`NotFound` for a
        message that is not one of Teller's answers."""
        check_name(name)
        self.answer(message_id)
        row = {
            "id": new_id("o"),
            "message_id": message_id,
            "name": name,
            "source": source,
            "created_at": self.db.clock.now(),
        }
        with self.db.transaction() as connection:
            # RETURNING says whether the row went in (a rowcount is -1 on some PostgreSQL drivers).
            inserted = connection.execute(
                self.db.insert(_o).values(**row).on_conflict_do_nothing().returning(_o.c.id)
            )
            new = inserted.first() is not None
            if new and actor is not None:
                self.audit.record_in(
                    connection,
                    actor,
                    AuditAction.OUTCOME,
                    message_id,
                    {"outcome": name, "message_id": message_id, "source": source},
                )
        found = self.db.rows(select(_o).where(_o.c.message_id == message_id, _o.c.name == name))
        return _outcome(found[0]), new

    def of_message(self, message_id: str) -> list[Outcome]:
        """The outcomes recorded on one reply, oldest first."""
        rows = self.db.rows(
            select(_o).where(_o.c.message_id == message_id).order_by(_o.c.created_at, _o.c.id)
        )
        return [_outcome(r) for r in rows]

    def of_messages(self, message_ids: Iterable[str]) -> dict[str, frozenset[str]]:
        """Reply id -> the names of the outcomes recorded on it (replies with none are left out)."""
        ids = sorted(set(message_ids))
        found: dict[str, set[str]] = defaultdict(set)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            for r in self.db.rows(select(_o.c.message_id, _o.c.name).where(_o.c.message_id.in_(chunk))):
                found[r["message_id"]].add(r["name"])
        return {k: frozenset(v) for k, v in found.items()}

    def latest_answer(self, channel: str, user_id: str) -> StoredMessage:
        """The customer's latest answer from Teller (not an operator's relay). Raises
        :class:`NotFound` when there is none."""
        rows = self.db.rows(
            select(_m)
            .where(
                _m.c.channel == channel,
                _m.c.user_id == user_id,
                TELLER_ANSWER,
            )
            .order_by(_m.c.created_at.desc(), _m.c.id.desc())
            .limit(1)
        )
        if not rows:
            raise NotFound("this customer has no answer of Teller's to record an outcome on")
        return self.conversations.message(rows[0]["id"])

    def book(
        self, channel: str, user_id: str, value: str, name: str, before: str | None = None
    ) -> tuple[Outcome, bool] | None:
        """The customer pressed the button ``value`` that books ``name``: record it on the latest of
        their answers from Teller (among the last :data:`RECENT`, stored before the message
        ``before`` if given: the answer to the press, so that a later answer is never the one
        booked, and a redelivered press finds the same answer) that offered that button. Returns
        the outcome and whether it is new (as :meth:`record`: booking the same answer again, on any
        replica, records nothing); None when no recent answer offered it (the value was typed,
        say)."""
        query = (
            select(_m.c.id, _m.c.choices)
            .where(
                _m.c.channel == channel,
                _m.c.user_id == user_id,
                _m.c.direction == Direction.OUT.value,
                _m.c.reply_to.is_not(None),
            )
            .order_by(_m.c.created_at.desc(), _m.c.id.desc())
            .limit(RECENT)
        )
        if before is not None:
            then = select(_m.c.created_at).where(_m.c.id == before).scalar_subquery()
            query = query.where(_m.c.created_at <= then)
        for r in self.db.rows(query):
            if r["id"] == before:
                continue
            offered = [c.get("value") for c in json.loads(r["choices"] or "[]")]
            if value in offered:
                return self.record(r["id"], name, CUSTOMER_SOURCE)
        return None


def _outcome(row: dict[str, Any]) -> Outcome:
    return Outcome(row["id"], row["message_id"], row["name"], row["source"], row["created_at"])
