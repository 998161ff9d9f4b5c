"""Conversations and their messages: each customer message with Teller's reply, stored before it leaves.

An exchange (the customer's message and Teller's reply) is one transaction, so whatever a customer
has seen answered is in the database even if the process is killed the next instant. A platform
message is stored once per channel, whichever replica receives it: the database's unique index
(``messages_platform_in``) decides, and the loser gets :class:`DuplicateMessage`.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, exists, func, select, true, update
from sqlalchemy.exc import IntegrityError

from bot.errors import InputError
from bot.privacy.redaction import redact
from bot.storage import schema
from bot.storage.database import Database
from bot.storage.errors import DuplicateMessage
from bot.storage.outbox import OutboxRepository
from bot.storage.records import HUMAN_ROUTE, Direction, Exchange, HandoffStatus, NewExchange, StoredMessage
from bot.text import storable

_m = schema.messages
_c = schema.conversations
_h = schema.handoffs
#: The messages that are Teller's answers: replies to a customer's message with a route of the
#: policy's (not an operator's relayed words).
TELLER_ANSWER = and_(
    _m.c.direction == Direction.OUT.value,
    _m.c.reply_to.is_not(None),
    _m.c.route.is_not(None),
    _m.c.route != HUMAN_ROUTE,
)
_reply = _m.alias("o")

# The statements of every message, built once: building one per call cost more than running it
# (SQLite, 2026-12-01: the redelivery look-up 0.75 -> 0.19 ms, an exchange's write 1.0 -> 0.36 ms;
# under load, SQLAlchemy's statement building was the largest share of the GIL's time).
#: A customer message by platform id, with Teller's reply to it (if any) as ``o_*`` columns.
_SEEN = (
    select(_m, *(c.label(f"o_{c.name}") for c in _reply.columns))
    .outerjoin(_reply, (_reply.c.reply_to == _m.c.id) & (_reply.c.direction == Direction.OUT.value))
    .where(
        _m.c.channel == bindparam("channel"),
        _m.c.platform_id == bindparam("platform_id"),
        _m.c.direction == Direction.IN.value,
    )
    .limit(1)
)
_INSERT = _m.insert()


#: A stored message's id (:func:`new_id` with prefix ``m``: ``m_3f9a0c1d2e4b5a69``) as a regular
#: expression. An API that takes a message's id refuses anything else (422).
MESSAGE_ID_PATTERN = r"^m_[0-9a-f]{16}$"


def new_id(prefix: str) -> str:
    """``<prefix>_`` and 16 random hex digits (a message's: :data:`MESSAGE_ID_PATTERN`)."""
    return f"{prefix}_{secrets.token_hex(8)}"


#: How many of Teller's latest answers to a customer in a conversation a pressed value may come from.
OFFERED_RECENT = 20


class ConversationRepository:
    """Conversations and messages. Texts are redacted on the way in (before any transaction
    starts, so a long message holds no lock while it is scanned). Thread-safe."""

    def __init__(self, database: Database, outbox: OutboxRepository | None = None) -> None:
        self.db = database
        self.outbox = outbox or OutboxRepository(database)
        insert = database.insert(_c)
        self._upsert_conversation = insert.on_conflict_do_update(
            index_elements=[_c.c.channel, _c.c.external_id], set_={"updated_at": insert.excluded.updated_at}
        ).returning(_c.c.id)
        # A platform message stored before inserts nothing (the unique index decides, no savepoint).
        self._insert_new = database.insert(_m).on_conflict_do_nothing().returning(_m.c.id)

    # ------------------------------------------------------------------------------- writing

    def conversation(
        self, connection: Connection, channel: str, external_id: str, user_id: str, now: str
    ) -> str:
        """The store's id of a platform conversation, created if new, its ``updated_at`` moved to
        ``now`` (one statement, inside the caller's transaction). Two replicas creating the same
        conversation at once both get the one row."""
        row = {
            "id": new_id("c"),
            "channel": channel,
            "external_id": external_id,
            "user_id": user_id,
            "created_at": now,
            "updated_at": now,
        }
        return str(connection.execute(self._upsert_conversation, row).scalar_one())

    def record_exchange(self, exchange: NewExchange) -> tuple[StoredMessage, StoredMessage]:
        """Store a customer message and Teller's reply together (texts redacted; the reply as
        written waits in the outbox when redaction changed it); return both rows.

        Raises :class:`DuplicateMessage` if this ``(channel, platform_id)`` was stored before.
        """
        clock = self.db.clock
        text, reply = redact(storable(exchange.text)), redact(storable(exchange.reply))
        with self.db.transaction() as connection:
            received = clock.now()
            conversation_id = self.conversation(
                connection, exchange.channel, exchange.conversation, exchange.user_id, received
            )
            in_row = {
                "id": new_id("m"),
                "conversation_id": conversation_id,
                "direction": Direction.IN.value,
                "channel": exchange.channel,
                "user_id": exchange.user_id,
                "platform_id": exchange.platform_id,
                "text": text,
                "created_at": received,
                "segment": exchange.segment,
            }
            out_row = {
                "id": new_id("m"),
                "conversation_id": conversation_id,
                "direction": Direction.OUT.value,
                "channel": exchange.channel,
                "user_id": exchange.user_id,
                "reply_to": in_row["id"],
                "text": reply,
                "route": exchange.route,
                "intent": exchange.intent,
                "confidence": exchange.confidence,
                "kb_id": exchange.kb_id,
                "model_version": exchange.model_version,
                "latency_ms": exchange.latency_ms,
                "choices": _choices_json(exchange.choices),
                "reason": exchange.reason,
                "created_at": clock.now(),
            }
            if connection.execute(self._insert_new, in_row).first() is None:
                raise DuplicateMessage(f"{exchange.channel} message {exchange.platform_id} is stored already")
            connection.execute(_INSERT, out_row)
            self.outbox.keep(
                connection, str(out_row["id"]), storable(exchange.reply), reply, str(out_row["created_at"])
            )
        return message_from_row(in_row), message_from_row(out_row)

    def set_platform_id(self, message_id: str, platform_id: str) -> None:
        """Record the platform's id of one of Teller's posts (a Slack ts), to find it from a reaction."""
        with self.db.transaction() as connection:
            result = connection.execute(
                _m.update()
                .where(_m.c.id == message_id, _m.c.direction == Direction.OUT.value)
                .values(platform_id=platform_id)
            )
            if result.rowcount != 1:
                raise InputError(f"no reply {message_id!r}")

    # ------------------------------------------------------------------------------- reading

    def message(self, message_id: str) -> StoredMessage:
        """Raises :class:`InputError` if there is no such message."""
        rows = self.db.rows(select(_m).where(_m.c.id == message_id))
        if not rows:
            raise InputError(f"no message {message_id!r}")
        return message_from_row(rows[0])

    def exists(self, message_id: str) -> bool:
        return bool(self.db.rows(select(_m.c.id).where(_m.c.id == message_id)))

    def find_reply(self, channel: str, platform_id: str) -> StoredMessage | None:
        """Teller's stored reply to a platform message seen before (for duplicate deliveries)."""
        found = self.seen(channel, platform_id)
        return found[1] if found is not None else None

    def seen(self, channel: str, platform_id: str) -> tuple[StoredMessage, StoredMessage | None] | None:
        """The customer's message stored under this platform id and Teller's reply to it (None when
        it has none, e.g. it was relayed to a person); None if it was never stored. One query."""
        rows = self.db.rows(_SEEN, {"channel": channel, "platform_id": platform_id})
        if not rows:
            return None
        answer = {c.name: rows[0][f"o_{c.name}"] for c in _reply.columns}
        return message_from_row(rows[0]), message_from_row(answer) if answer["id"] is not None else None

    def holds_customer(self, channel: str, user_id: str) -> bool:
        """Whether any message of ``user_id`` on ``channel`` is stored (theirs, or sent to them)."""
        query = select(_m.c.id).where(_m.c.channel == channel, _m.c.user_id == user_id).limit(1)
        return bool(self.db.rows(query))

    def history(self, conversation_id: str | None = None, limit: int = 50) -> list[StoredMessage]:
        """The latest ``limit`` messages (of one conversation, or all), oldest first."""
        query = (
            select(_m).order_by(_m.c.created_at.desc(), _m.c.direction.desc(), _m.c.id.desc()).limit(limit)
        )
        if conversation_id:
            query = query.where(_m.c.conversation_id == conversation_id)
        return [message_from_row(r) for r in reversed(self.db.rows(query))]

    def messages_since(
        self,
        conversation_id: str,
        after: str | None,
        limit: int = 100,
        *,
        direction: Direction | None = None,
        route: str | None = None,
    ) -> list[StoredMessage]:
        """A conversation's messages stamped after ``after`` (ISO time; None: all), oldest first, at
        most ``limit``; only those of ``direction`` and ``route`` when given (filtered before the
        limit: a customer's 200 newer messages must not hide an operator's reply)."""
        query = select(_m).where(_m.c.conversation_id == conversation_id)
        if after:
            query = query.where(_m.c.created_at > after)
        if direction is not None:
            query = query.where(_m.c.direction == direction.value)
        if route is not None:
            query = query.where(_m.c.route == route)
        return [message_from_row(r) for r in self.db.rows(query.order_by(*_ORDER).limit(limit))]

    def exchanges(self, since: str) -> list[Exchange]:
        """Every customer message since ``since`` (ISO time) with Teller's route, intent, KB entry, and
        whether the reply was marked not helpful by the customer or flagged by an operator."""
        incoming = _m.alias("i")
        f, g = schema.feedback, schema.flags
        flagged = exists().where(f.c.message_id == _m.c.id, f.c.helpful == 0) | exists().where(
            g.c.message_id == _m.c.id
        )
        rows = self.db.rows(
            select(incoming.c.text, _m.c.route, _m.c.intent, _m.c.kb_id, flagged.label("flagged"))
            .join(incoming, _m.c.reply_to == incoming.c.id)
            .where(_m.c.direction == Direction.OUT.value, _m.c.created_at >= since)
            .order_by(_m.c.created_at, _m.c.id)
        )
        return [Exchange(r["text"], r["route"], r["intent"], r["kb_id"], bool(r["flagged"])) for r in rows]

    def exchange(self, message_id: str) -> tuple[StoredMessage, StoredMessage]:
        """The customer's message and Teller's reply to it, from the id of either.

        Raises :class:`InputError` if there is no such message or it has no counterpart.
        """
        message = self.message(message_id)
        if message.direction == Direction.OUT:
            if message.reply_to is None:
                raise InputError(f"message {message_id!r} is not one of Teller's answers")
            return self.message(message.reply_to), message
        rows = self.db.rows(
            select(_m)
            .where(_m.c.reply_to == message_id, _m.c.direction == Direction.OUT.value)
            .order_by(*_ORDER)
            .limit(1)
        )
        if not rows:
            raise InputError(f"message {message_id!r} has no answer from Teller")
        return message, message_from_row(rows[0])

    def customer_messages_before(self, message_id: str, limit: int = 10) -> list[StoredMessage]:
        """The customer's earlier messages in the same conversation, newest first."""
        message = self.message(message_id)
        rows = self.db.rows(
            select(_m)
            .where(
                _m.c.conversation_id == message.conversation_id,
                _m.c.direction == Direction.IN.value,
                and_(_m.c.created_at < message.created_at, _m.c.id != message.id),
            )
            .order_by(_m.c.created_at.desc(), _m.c.id.desc())
            .limit(limit)
        )
        return [message_from_row(r) for r in rows]

    def latest_answer(
        self, channel: str, external_id: str, user_id: str, offering: str | None = None
    ) -> StoredMessage | None:
        """Teller's latest answer to ``user_id`` in a platform conversation (not an operator's
        relay: a reply to a customer's message, with a route of the policy's); None if there is
        none. ``offering``: only an answer with a button whose value starts so (``feedback:``: an
        answer the customer was offered to rate)."""
        offered = (
            true() if offering is None else _m.c.choices.contains(_value_starting(offering), autoescape=True)
        )
        rows = self.db.rows(_answers_to(select(_m), channel, external_id, user_id).where(offered).limit(1))
        return message_from_row(rows[0]) if rows else None

    def offered(
        self, channel: str, external_id: str, user_id: str, value: str, recent: int = OFFERED_RECENT
    ) -> bool:
        """Whether one of Teller's latest ``recent`` answers in a platform conversation offered a
        button whose value is ``value`` (a pressed ``intent:`` or ``entry:`` value is honoured only
        then; anything else a client sends is read as the text it is): its answers to ``user_id``
        first, so that in a group chat other members' traffic does not push a customer's buttons
        out, then its answers to anyone there (every member of a group sees the buttons, and one may
        press a button Teller offered another: a review's finding)."""
        conversation = self.conversation_id(channel, external_id)
        return conversation is not None and self._offering(conversation, user_id, value, recent) is not None

    def was_offered(self, message_id: str, recent: int = OFFERED_RECENT) -> bool:
        """Whether the stored customer message ``message_id``, a pressed-looking value, was offered
        by Teller's answers before it as :meth:`offered` counts them: what :meth:`offered` told when
        it came in, so whether it was honoured as a press or read as the words it is. Raises
        :class:`InputError` for an unknown id (as :meth:`message`)."""
        return self.offering_answer(message_id, recent) is not None

    def offering_answer(self, message_id: str, recent: int = OFFERED_RECENT) -> StoredMessage | None:
        """The answer of Teller's whose button the stored customer message ``message_id`` pressed,
        as :meth:`was_offered` finds it (its ``choices`` hold the button's label, its ``reply_to``
        the question it answered; in a group, perhaps another member's); None if none offered it.
        Raises :class:`InputError` for an unknown id."""
        message = self.message(message_id)
        return self._offering(
            message.conversation_id, message.user_id, message.text, recent, before=message.created_at
        )

    def _offering(
        self, conversation_id: str, user_id: str, value: str, recent: int, before: str | None = None
    ) -> StoredMessage | None:
        answers = select(_m).where(_m.c.conversation_id == conversation_id, TELLER_ANSWER)
        if before is not None:
            answers = answers.where(_m.c.created_at < before)
        newest = (_m.c.created_at.desc(), _m.c.id.desc())
        for query in (answers.where(_m.c.user_id == user_id), answers):
            for row in self.db.rows(query.order_by(*newest).limit(recent)):
                if _offers(row, value):
                    return message_from_row(row)
        return None

    def message_by_platform_id(self, channel: str, platform_id: str) -> StoredMessage | None:
        """The stored message with this platform id on this channel (Teller's post first)."""
        rows = self.db.rows(
            select(_m)
            .where(_m.c.channel == channel, _m.c.platform_id == platform_id)
            .order_by(_m.c.direction.desc(), _m.c.created_at.desc())
            .limit(1)
        )
        return message_from_row(rows[0]) if rows else None

    def address_of_post(self, channel: str, platform_id: str) -> str | None:
        """The platform conversation (its ``external_id``: the chat, or the chat and its forum
        topic) of Teller's post with this platform id on this channel; None if no stored reply of
        Teller's has it."""
        rows = self.db.rows(
            select(_c.c.external_id)
            .join(_m, _m.c.conversation_id == _c.c.id)
            .where(
                _m.c.channel == channel,
                _m.c.platform_id == platform_id,
                _m.c.direction == Direction.OUT.value,
            )
            .limit(1)
        )
        return str(rows[0]["external_id"]) if rows else None

    def move(self, channel: str, old_external_id: str, new_external_id: str) -> str | None:
        """Make the stored conversation of ``old_external_id`` the one ``new_external_id`` continues
        (a Telegram group upgraded to a supergroup gets a new chat id), its open handoff's customer
        address ``new_external_id`` too. Returns its store id, or None
        when nothing moved: no conversation under the old id, or one under the new id already
        (nothing is merged). Idempotent; replicas moving it at once move it once."""
        try:
            return self._move(channel, old_external_id, new_external_id)
        except IntegrityError:  # the new id's first message was stored meanwhile: it stays apart
            return None

    def _move(self, channel: str, old_external_id: str, new_external_id: str) -> str | None:
        with self.db.transaction() as connection:
            self.db.serialise(connection, f"move:{channel}:{old_external_id}")
            taken = connection.execute(
                select(_c.c.id).where(_c.c.channel == channel, _c.c.external_id == new_external_id)
            ).first()
            if taken is not None:
                return None
            moved = connection.execute(
                update(_c)
                .where(_c.c.channel == channel, _c.c.external_id == old_external_id)
                .values(external_id=new_external_id)
                .returning(_c.c.id)
            ).first()
            if moved is None:
                return None
            # Its open handoff writes to the new id (the old one's address, a reply to one of the
            # group's messages, names a chat that refuses every send and a message the new one
            # does not have: each operator's relay was refused once before reaching the customer).
            connection.execute(
                update(_h)
                .where(_h.c.conversation_id == moved[0], _h.c.status == HandoffStatus.OPEN.value)
                .values(customer_chat_id=new_external_id)
            )
            return str(moved[0])

    def conversation_id(self, channel: str, external_id: str) -> str | None:
        """The store's id of a platform conversation, if it has one."""
        rows = self.db.rows(select(_c.c.id).where(_c.c.channel == channel, _c.c.external_id == external_id))
        return str(rows[0]["id"]) if rows else None

    def platform_counts(self, channel: str, prefix: str) -> dict[str, int]:
        """How many customer messages are stored under each platform id starting with ``prefix``
        (a load test's check that every acknowledged message is stored exactly once)."""
        rows = self.db.rows(
            select(_m.c.platform_id, func.count().label("n"))
            .where(
                _m.c.channel == channel,
                _m.c.direction == Direction.IN.value,
                _m.c.platform_id.startswith(prefix, autoescape=True),
            )
            .group_by(_m.c.platform_id)
        )
        return {r["platform_id"]: int(r["n"]) for r in rows}

    def count(self) -> int:
        """How many messages are stored (in and out)."""
        return int(self.db.rows(select(func.count().label("n")).select_from(_m))[0]["n"])


#: Oldest first; a reply stamped in the same microsecond as its message (rows from before the
#: microsecond clock) still sorts after it ("in" < "out").
_ORDER = (_m.c.created_at, _m.c.direction, _m.c.id)


def _choices_json(choices: tuple[tuple[str, str], ...]) -> str:
    return json.dumps([{"label": label, "value": value} for label, value in choices])


def _offers(row: dict[str, Any], value: str) -> bool:
    """Whether a stored answer (its ``choices`` column) offered a button whose value is ``value``."""
    return any(c.get("value") == value for c in json.loads(row["choices"] or "[]"))


def _answers_to(query: Select[Any], channel: str, external_id: str, user_id: str) -> Select[Any]:
    """``query`` over Teller's answers to ``user_id`` in a platform conversation, newest first."""
    return (
        query.join(_c, _m.c.conversation_id == _c.c.id)
        .where(
            _c.c.channel == channel, _c.c.external_id == external_id, _m.c.user_id == user_id, TELLER_ANSWER
        )
        .order_by(_m.c.created_at.desc(), _m.c.id.desc())
    )


def _value_starting(prefix: str) -> str:
    """The text :func:`_choices_json` writes for a choice whose value starts with ``prefix``
    (``"value": "feedback:``), to find such a choice in the stored column."""
    written = json.dumps({"value": prefix})  # '{"value": "<prefix>"}', as _choices_json spaces it
    return written[1 : -len('"}')]


def message_from_row(row: dict[str, Any]) -> StoredMessage:
    """A :class:`StoredMessage` from a ``messages`` row (missing columns are None)."""
    choices = tuple((c["label"], c["value"]) for c in json.loads(row.get("choices") or "[]"))
    return StoredMessage(
        id=row["id"],
        conversation_id=row["conversation_id"],
        direction=Direction(row["direction"]),
        channel=row["channel"],
        user_id=row["user_id"],
        text=row["text"],
        created_at=row["created_at"],
        platform_id=row.get("platform_id"),
        reply_to=row.get("reply_to"),
        route=row.get("route"),
        intent=row.get("intent"),
        confidence=row.get("confidence"),
        kb_id=row.get("kb_id"),
        model_version=row.get("model_version"),
        latency_ms=row.get("latency_ms"),
        choices=choices,
        author=row.get("author"),
        reason=row.get("reason"),
        segment=row.get("segment"),
    )
