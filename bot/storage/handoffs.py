"""Handoffs: a conversation relayed to people through a thread in the ops channel.

The relayed messages are rows of ``messages`` with route ``human``. Everything a replica needs to
relay is in the database: the operator's reply can arrive at any replica, and a web customer
polling another replica sees it (:meth:`ConversationRepository.messages_since`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError

from bot.errors import InputError
from bot.privacy.redaction import redact, redact_answer
from bot.storage import schema
from bot.storage.conversations import message_from_row, new_id
from bot.storage.database import Database
from bot.storage.errors import DuplicateMessage
from bot.storage.outbox import OutboxRepository
from bot.storage.records import (
    HUMAN_ROUTE,
    TELLER_AUTHOR,
    Direction,
    Handoff,
    HandoffStatus,
    NewHandoff,
    StoredMessage,
)
from bot.text import storable

_h = schema.handoffs
_c = schema.conversations
_m = schema.messages
_e = schema.erased_threads


class HandoffRepository:
    """Handoffs and the messages relayed during them (texts redacted). Thread-safe."""

    def __init__(self, database: Database, outbox: OutboxRepository | None = None) -> None:
        self.db = database
        self.outbox = outbox or OutboxRepository(database)

    def start(self, new: NewHandoff) -> Handoff:
        """Open a handoff for a conversation; if one is open already (here or on another replica),
        that one is returned unchanged. Raises :class:`InputError` for an unknown conversation."""
        handoff_id = new_id("h")
        with self.db.transaction() as connection:
            if connection.execute(select(_c.c.id).where(_c.c.id == new.conversation_id)).first() is None:
                raise InputError(f"no conversation {new.conversation_id!r}")
            connection.execute(
                self.db.insert(_h)
                .values(
                    id=handoff_id,
                    channel=new.channel,
                    conversation_id=new.conversation_id,
                    customer_user_id=new.customer_user_id,
                    customer_chat_id=new.customer_chat_id,
                    message_id=new.message_id,
                    ops_channel=new.ops_channel,
                    thread_ts=new.thread_ts,
                    status=HandoffStatus.OPEN.value,
                    opened_at=self.db.clock.now(),
                )
                .on_conflict_do_nothing()
            )
        found = self.active(new.conversation_id)
        assert found is not None  # inserted, or another one was open
        return found

    def set_thread(self, handoff_id: str, ops_channel: str, thread_ts: str) -> Handoff:
        """Record the ops-channel thread that relays a handoff (once its first post is out)."""
        with self.db.transaction() as connection:
            result = connection.execute(
                _h.update().where(_h.c.id == handoff_id).values(ops_channel=ops_channel, thread_ts=thread_ts)
            )
            if result.rowcount != 1:
                raise InputError(f"no handoff {handoff_id!r}")
        return self.get(handoff_id)

    def claim_thread(self, handoff_id: str, stale_before: str) -> bool:
        """Claim posting open handoff ``handoff_id``'s thread to the ops channel: True for the one
        caller (on any replica) whose conditional update took it; False when it has a thread, is
        closed, or another caller claimed it at or after ``stale_before`` (an ISO time: a claim
        older than that was left by a replica that died or gave up, and is taken over)."""
        with self.db.transaction() as connection:
            claimed = connection.execute(
                _h.update()
                .where(
                    _h.c.id == handoff_id,
                    _h.c.status == HandoffStatus.OPEN.value,
                    _h.c.thread_ts.is_(None),
                    or_(_h.c.thread_claimed_at.is_(None), _h.c.thread_claimed_at < stale_before),
                )
                .values(thread_claimed_at=self.db.clock.now())
            )
        return claimed.rowcount == 1

    def release_thread(self, handoff_id: str) -> None:
        """Give back a claim of :meth:`claim_thread` whose post did not happen (the ops channel
        refused it): the handoff sweep posts it later."""
        with self.db.transaction() as connection:
            connection.execute(
                _h.update()
                .where(_h.c.id == handoff_id, _h.c.thread_ts.is_(None))
                .values(thread_claimed_at=None)
            )

    def threadless(self, before: str, limit: int = 100) -> list[Handoff]:
        """Open handoffs opened before ``before`` (an ISO time) that have no thread and no claim
        younger than ``before``, oldest first: those whose post failed or was never made."""
        rows = self.db.rows(
            select(_h)
            .where(
                _h.c.status == HandoffStatus.OPEN.value,
                _h.c.thread_ts.is_(None),
                _h.c.opened_at < before,
                or_(_h.c.thread_claimed_at.is_(None), _h.c.thread_claimed_at < before),
            )
            .order_by(_h.c.opened_at, _h.c.id)
            .limit(limit)
        )
        return [_handoff(r) for r in rows]

    def close(self, handoff_id: str, closed_by: str) -> Handoff:
        """Close a handoff; closing a closed one changes nothing and returns it."""
        with self.db.transaction() as connection:
            connection.execute(
                _h.update()
                .where(_h.c.id == handoff_id, _h.c.status == HandoffStatus.OPEN.value)
                .values(status=HandoffStatus.CLOSED.value, closed_at=self.db.clock.now(), closed_by=closed_by)
            )
        return self.get(handoff_id)

    def idle(self, before: str, limit: int = 100) -> list[Handoff]:
        """Open handoffs opened before ``before`` (an ISO time) whose conversation has had no
        message either way since then, oldest first."""
        rows = self.db.rows(
            select(_h)
            .join(_c, _c.c.id == _h.c.conversation_id)
            .where(_h.c.status == HandoffStatus.OPEN.value, _h.c.opened_at < before, _c.c.updated_at < before)
            .order_by(_h.c.opened_at, _h.c.id)
            .limit(limit)
        )
        return [_handoff(r) for r in rows]

    def expire(self, handoff_id: str, before: str, closed_by: str) -> Handoff | None:
        """Close an idle handoff (see :meth:`idle`); None when it is not idle any more (a message
        came meanwhile) or is closed already (by an operator, or by another replica's sweep)."""
        idle = exists(select(_c.c.id).where(_c.c.id == _h.c.conversation_id, _c.c.updated_at < before))
        with self.db.transaction() as connection:
            result = connection.execute(
                _h.update()
                .where(
                    _h.c.id == handoff_id,
                    _h.c.status == HandoffStatus.OPEN.value,
                    _h.c.opened_at < before,
                    idle,
                )
                .values(status=HandoffStatus.CLOSED.value, closed_at=self.db.clock.now(), closed_by=closed_by)
            )
            if result.rowcount != 1:
                return None
        return self.get(handoff_id)

    def first_reply_waits(self, limit: int = 20, scan: int = 500) -> list[float]:
        """Seconds from opening to the first operator reply, for the latest ``limit`` handoffs
        that got one (newest first), among the latest ``scan`` opened: what a waiting customer is
        told to expect. Read on every handoff opened, so it never reads the whole history (a review
        measured 55-75 ms at 100,000 handoffs when it did)."""
        recent = select(_h).order_by(_h.c.opened_at.desc()).limit(scan).subquery()
        first = (
            select(func.min(_m.c.created_at))
            .where(
                _m.c.conversation_id == recent.c.conversation_id,
                _m.c.direction == Direction.OUT.value,
                _m.c.route == HUMAN_ROUTE,
                _m.c.author != TELLER_AUTHOR,  # Teller's own warning is no operator's reply
                _m.c.created_at >= recent.c.opened_at,
                or_(recent.c.closed_at.is_(None), _m.c.created_at <= recent.c.closed_at),
            )
            .scalar_subquery()
        )
        query = (
            select(recent.c.opened_at, first.label("first_reply"))
            .where(first.is_not(None))
            .order_by(recent.c.opened_at.desc())
            .limit(limit)
        )
        return [
            (_parse(str(r["first_reply"])) - _parse(str(r["opened_at"]))).total_seconds()
            for r in self.db.rows(query)
        ]

    def lookup(self, handoff_id: str) -> Handoff | None:
        """The handoff, or None if there is none (never was, or erased)."""
        rows = self.db.rows(select(_h).where(_h.c.id == handoff_id))
        return _handoff(rows[0]) if rows else None

    def get(self, handoff_id: str) -> Handoff:
        """Raises :class:`InputError` if there is no such handoff."""
        handoff = self.lookup(handoff_id)
        if handoff is None:
            raise InputError(f"no handoff {handoff_id!r}")
        return handoff

    def active(self, conversation_id: str) -> Handoff | None:
        """The open handoff of a conversation (the store's id), if any."""
        rows = self.db.rows(
            select(_h).where(_h.c.conversation_id == conversation_id, _h.c.status == HandoffStatus.OPEN.value)
        )
        return _handoff(rows[0]) if rows else None

    def latest(self, conversation_id: str) -> Handoff | None:
        """The newest handoff of a conversation (the store's id), open or closed, if any."""
        rows = self.db.rows(
            select(_h)
            .where(_h.c.conversation_id == conversation_id)
            .order_by(_h.c.opened_at.desc(), _h.c.id.desc())
            .limit(1)
        )
        return _handoff(rows[0]) if rows else None

    def active_for(self, channel: str, external_id: str) -> Handoff | None:
        """The open handoff of a platform conversation (``Incoming.conversation_id``), if any."""
        rows = self.db.rows(
            select(_h)
            .join(_c, _c.c.id == _h.c.conversation_id)
            .where(
                _c.c.channel == channel,
                _c.c.external_id == external_id,
                _h.c.status == HandoffStatus.OPEN.value,
            )
        )
        return _handoff(rows[0]) if rows else None

    def open_count(self) -> int:
        """How many handoffs are open now, across the cluster."""
        rows = self.db.rows(
            select(func.count().label("n")).select_from(_h).where(_h.c.status == HandoffStatus.OPEN.value)
        )
        return int(rows[0]["n"])

    def for_message(self, message_id: str) -> Handoff | None:
        """The handoff opened for one of Teller's replies (``message_id``), open or closed, if any."""
        rows = self.db.rows(select(_h).where(_h.c.message_id == message_id).order_by(_h.c.opened_at).limit(1))
        return _handoff(rows[0]) if rows else None

    def by_thread(self, thread_ts: str, ops_channel: str | None = None) -> Handoff | None:
        """The handoff an ops-channel thread relays (the latest, open or closed)."""
        query = select(_h).where(_h.c.thread_ts == thread_ts)
        if ops_channel is not None:
            query = query.where(_h.c.ops_channel == ops_channel)
        rows = self.db.rows(query.order_by(_h.c.opened_at.desc(), _h.c.id.desc()).limit(1))
        return _handoff(rows[0]) if rows else None

    def erased_thread(self, thread_ts: str, ops_channel: str) -> bool:
        """Whether an ops-channel thread relayed a handoff that was open when its customer was
        erased (:mod:`bot.privacy.erasure` keeps where the thread was, nothing of the customer's)."""
        query = select(_e.c.erased_at).where(_e.c.thread_ts == thread_ts, _e.c.ops_channel == ops_channel)
        return bool(self.db.rows(query.limit(1)))

    def mark_erased_thread(self, ops_channel: str, thread_ts: str) -> None:
        """Record an ops-channel thread whose handoff was erased before the thread was recorded
        (erased while the thread was being opened): an operator replying there is told, as for a
        thread :mod:`bot.privacy.erasure` recorded itself. Recording it twice changes nothing."""
        with self.db.transaction() as connection:
            connection.execute(
                self.db.insert(_e)
                .values(ops_channel=ops_channel, thread_ts=thread_ts, erased_at=self.db.clock.now())
                .on_conflict_do_nothing()
            )

    def recent(self, status: HandoffStatus | None = None, limit: int = 100) -> list[Handoff]:
        """Handoffs, newest first."""
        query = select(_h).order_by(_h.c.opened_at.desc(), _h.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(_h.c.status == HandoffStatus(status).value)
        return [_handoff(r) for r in self.db.rows(query)]

    def record_relay(
        self,
        handoff_id: str,
        direction: Direction,
        text: str,
        author: str | None = None,
        platform_id: str | None = None,
        segment: str | None = None,
        sender: str | None = None,
    ) -> StoredMessage:
        """Store a message relayed during an open handoff: the customer's (``IN``, deduplicated by
        ``platform_id`` like any customer message, with the ``segment`` the bank named for the
        customer, as an answered message keeps it) or an operator's reply (``OUT``, ``author`` the
        operator; deduplicated by ``platform_id`` within the conversation). Route ``human``, text
        redacted. An ``IN`` message is stored as its ``sender``'s (a group chat's other members
        write in the same conversation: their words are theirs to see or erase, not the handed-off
        customer's); without one, as the handed-off customer's. ``OUT`` messages are the customer's.

        Raises :class:`InputError` (empty text, no author, unknown or closed handoff) or
        :class:`DuplicateMessage`.
        """
        direction = Direction(direction)
        if not text.strip():
            raise InputError("the message is empty")
        if direction == Direction.OUT and not author:
            raise InputError("an operator's message needs its author")
        written = storable(text)
        # before the transaction: no lock held while scanning. A customer's reply is read as the
        # answer to the last words said to them ("12/03/1985" after "your date of birth?").
        if direction == Direction.IN:
            stored = redact_answer(written, self._last_said(handoff_id))
        else:
            stored = redact(written)
        with self.db.transaction() as connection:
            found = connection.execute(
                select(_h.c.conversation_id, _h.c.channel, _h.c.customer_user_id, _h.c.status).where(
                    _h.c.id == handoff_id
                )
            ).first()
            if found is None:
                raise InputError(f"no handoff {handoff_id!r}")
            conversation_id, channel, user_id, status = found
            if status != HandoffStatus.OPEN:
                raise InputError(f"handoff {handoff_id!r} is closed")
            if direction == Direction.OUT and platform_id is not None:
                # An operator's message Slack delivered twice (to two replicas, say) is relayed once.
                self.db.serialise(connection, f"relay:{platform_id}")
                seen = connection.execute(
                    select(_m.c.id).where(
                        _m.c.conversation_id == conversation_id,
                        _m.c.direction == Direction.OUT.value,
                        _m.c.platform_id == platform_id,
                    )
                ).first()
                if seen is not None:
                    raise DuplicateMessage(f"operator message {platform_id} is relayed already")
            now = self.db.clock.now()
            row = {
                "id": new_id("m"),
                "conversation_id": conversation_id,
                "direction": direction.value,
                "channel": channel,
                "user_id": sender if direction == Direction.IN and sender else user_id,
                "platform_id": platform_id,
                "text": stored,
                "route": HUMAN_ROUTE,
                "author": author if direction == Direction.OUT else None,
                "choices": "[]",
                "created_at": now,
                "segment": segment if direction == Direction.IN else None,
            }
            try:
                with connection.begin_nested():
                    connection.execute(_m.insert().values(**row))
            except IntegrityError:
                raise DuplicateMessage(f"{channel} message {platform_id} is stored already") from None
            connection.execute(_c.update().where(_c.c.id == conversation_id).values(updated_at=now))
            if direction == Direction.OUT:  # the customer reads the operator's words as written
                self.outbox.keep(connection, str(row["id"]), written, stored, now)
        return message_from_row(row)

    def answer_relay(self, message: StoredMessage, text: str) -> StoredMessage:
        """Store what Teller itself tells the sender of ``message``, a customer's message relayed
        in an open handoff (the warning to one who sent a secret, :data:`bot.core.SECRET_WARNING`):
        its reply (``reply_to``), route ``human``, author :data:`TELLER_AUTHOR`, text redacted (the
        outbox keeps it as written until it is delivered). A redelivery of ``message`` replays it
        (:meth:`bot.core.TellerCore.replay`). It is not an operator's reply: the expected wait, the
        expiry notice and the reading of the customer's next answer leave it out.

        Raises :class:`InputError` (empty text, or ``message`` is no customer's) or
        :class:`DuplicateMessage` (``message`` has its reply already).
        """
        if not text.strip():
            raise InputError("the message is empty")
        if message.direction != Direction.IN or message.conversation_id is None:
            raise InputError("only a customer's message is answered")
        written = storable(text)
        stored = redact(written)
        with self.db.transaction() as connection:
            self.db.serialise(connection, f"answer:{message.id}")
            answered = connection.execute(
                select(_m.c.id).where(_m.c.reply_to == message.id, _m.c.direction == Direction.OUT.value)
            ).first()
            if answered is not None:
                raise DuplicateMessage(f"message {message.id} has its reply already")
            now = self.db.clock.now()
            row = {
                "id": new_id("m"),
                "conversation_id": message.conversation_id,
                "direction": Direction.OUT.value,
                "channel": message.channel,
                "user_id": message.user_id,
                "reply_to": message.id,
                "text": stored,
                "route": HUMAN_ROUTE,
                "author": TELLER_AUTHOR,
                "choices": "[]",
                "created_at": now,
            }
            connection.execute(_m.insert().values(**row))
            self.outbox.keep(connection, str(row["id"]), written, stored, now)
        return message_from_row(row)

    def _last_said(self, handoff_id: str) -> str | None:
        """The text of the latest message to the customer in a handoff's conversation (an
        operator's question, or Teller's last answer; not the warning :meth:`answer_relay` stores,
        which asks for nothing), None if none or no such handoff."""
        rows = self.db.rows(
            select(_m.c.text)
            .join(_h, _h.c.conversation_id == _m.c.conversation_id)
            .where(
                _h.c.id == handoff_id,
                _m.c.direction == Direction.OUT.value,
                or_(_m.c.author.is_(None), _m.c.author != TELLER_AUTHOR),
            )
            .order_by(_m.c.created_at.desc(), _m.c.id.desc())
            .limit(1)
        )
        return str(rows[0]["text"]) if rows else None

    def transcript(self, handoff_id: str) -> list[StoredMessage]:
        """The conversation of a handoff, from its first message up to the handoff's close, oldest first."""
        handoff = self.get(handoff_id)
        query = select(_m).where(_m.c.conversation_id == handoff.conversation_id)
        if handoff.closed_at:
            query = query.where(_m.c.created_at <= handoff.closed_at)
        rows = self.db.rows(query.order_by(_m.c.created_at, _m.c.direction, _m.c.id))
        return [message_from_row(r) for r in rows]


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _handoff(row: dict[str, object]) -> Handoff:
    return Handoff(**{**row, "status": HandoffStatus(str(row["status"]))})  # type: ignore[arg-type]
