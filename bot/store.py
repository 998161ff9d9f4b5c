"""Conversation storage: SQLite through sqlite-utils, WAL, numbered migrations, PII redacted on the way in.

Every message in and out is one row of ``messages``; an exchange (the customer's message and
Teller's reply) is written in one transaction before the reply leaves, so whatever a customer has
seen answered is on disk even if the process is killed the next instant.

Schema version 2 adds what operators work with: ``flags`` (an operator marked a reply wrong),
the review queue (``review_items``, each with the replies filed under it in ``review_sources``),
``corrections`` (labelled examples; a newer one for the same text supersedes, never overwrites) and
``handoffs`` (a conversation relayed to people through a thread in the ops channel; the relayed
messages themselves are rows of ``messages`` with route ``human``).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.errors import InputError, TellerError
from bot.pii import redact

IN = "in"
OUT = "out"
#: The route of a message relayed between a customer and an operator during a handoff.
HUMAN = "human"
OPEN = "open"
CLOSED = "closed"
#: Why a reply is in the review queue.
REASON_NOT_HELPFUL = "not_helpful"
REASON_FLAGGED = "flagged"
REASON_HANDOFF = "handoff"
REASON_CLARIFY = "clarify"
REASON_LOW_CONFIDENCE = "low_confidence"


class StoreError(TellerError):
    """The database cannot be opened or written."""


class DuplicateMessage(StoreError):
    """This platform message was stored before (a platform retry, or two deliveries racing)."""


@dataclass(frozen=True)
class StoredMessage:
    id: str
    conversation_id: str
    direction: str
    channel: str
    user_id: str
    text: str
    created_at: str
    platform_id: str | None = None
    reply_to: str | None = None
    route: str | None = None
    intent: str | None = None
    confidence: float | None = None
    kb_id: str | None = None
    model_version: str | None = None
    latency_ms: float | None = None
    #: The buttons offered with a reply, as ``[{"label": ..., "value": ...}]``.
    choices: tuple[dict[str, str], ...] = ()
    #: Who wrote a relayed reply (``"slack:U123"``); None for Teller's own replies and customers.
    author: str | None = None


@dataclass(frozen=True)
class Feedback:
    id: str
    message_id: str
    helpful: bool
    comment: str | None
    user_id: str | None
    created_at: str


@dataclass(frozen=True)
class Flag:
    """An operator's mark on one of Teller's replies: this answer is wrong."""

    id: str
    message_id: str
    reason: str | None
    actor: str
    source: str
    created_at: str


@dataclass(frozen=True)
class Suggestion:
    """What the review queue proposes for an item: an intent, or a knowledge-base entry (``kind``)."""

    kind: str
    intent: str | None
    kb_id: str | None
    confidence: float | None
    model_version: str | None


@dataclass(frozen=True)
class ReviewCandidate:
    """A reply that qualifies for review, for one reason, and is not filed for that reason yet."""

    reply_id: str
    message_id: str
    conversation_id: str
    text: str
    reason: str
    route: str | None
    intent: str | None
    confidence: float | None
    kb_id: str | None
    created_at: str


@dataclass(frozen=True)
class ReviewSource:
    """One reply filed under a review item, for one reason (``text`` is the customer's, redacted)."""

    reply_id: str
    message_id: str
    text: str
    reason: str


@dataclass(frozen=True)
class ReviewItem:
    """A question for an operator: near-identical customer texts merged, with every reply and reason."""

    id: int
    key: str
    text: str
    status: str
    route: str | None
    suggestion: Suggestion | None
    created_at: str
    updated_at: str
    #: Teller's replies filed under this item, first filed first.
    message_ids: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    #: The distinct customer texts (redacted) merged into this item.
    texts: tuple[str, ...] = ()
    #: Flag reasons and "not helpful" comments, redacted.
    notes: tuple[str, ...] = ()
    resolution: str | None = None
    resolved_by: str | None = None
    resolved_at: str | None = None

    @property
    def count(self) -> int:
        return len(self.message_ids)


@dataclass(frozen=True)
class NewCorrection:
    """A correction about to be stored (``action``: confirm, choose or answer)."""

    text: str
    key: str
    action: str
    label: str | None = None
    kb_id: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class Correction:
    """A labelled example from an operator; kept when a newer one for the same text supersedes it."""

    id: int
    item_id: int | None
    text: str
    key: str
    action: str
    label: str | None
    kb_id: str | None
    answer: str | None
    author: str
    created_at: str
    superseded_by: int | None = None
    superseded_at: str | None = None

    @property
    def superseded(self) -> bool:
        return self.superseded_by is not None


@dataclass(frozen=True)
class Handoff:
    """A conversation handed to people: where the customer is, and the ops thread relaying it."""

    id: str
    channel: str
    conversation_id: str
    customer_user_id: str
    #: What the channel needs to write to the customer (a Telegram chat id, a Slack channel:thread).
    customer_chat_id: str
    status: str
    opened_at: str
    message_id: str | None = None
    ops_channel: str | None = None
    thread_ts: str | None = None
    closed_at: str | None = None
    closed_by: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status == OPEN


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _v1(db: sqlite_utils.Database) -> None:
    """Conversations, messages (in and out) and feedback."""
    db.table("conversations").create(
        {"id": str, "channel": str, "external_id": str, "user_id": str, "created_at": str, "updated_at": str},
        pk="id",
        if_not_exists=True,
    )
    db.table("conversations").create_index(["channel", "external_id"], unique=True, if_not_exists=True)
    db.table("messages").create(
        {
            "id": str,
            "conversation_id": str,
            "direction": str,
            "channel": str,
            "user_id": str,
            "platform_id": str,
            "reply_to": str,
            "text": str,
            "route": str,
            "intent": str,
            "confidence": float,
            "kb_id": str,
            "model_version": str,
            "latency_ms": float,
            "choices": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
        if_not_exists=True,
    )
    db.table("messages").create_index(["conversation_id", "created_at"], if_not_exists=True)
    # One stored copy of each platform message, however often the platform delivers it.
    db.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS messages_platform_in ON messages(channel, platform_id) "
        "WHERE direction = 'in' AND platform_id IS NOT NULL"
    )
    db.table("feedback").create(
        {"id": str, "message_id": str, "helpful": int, "comment": str, "user_id": str, "created_at": str},
        pk="id",
        foreign_keys=[("message_id", "messages", "id")],
        if_not_exists=True,
    )
    db.table("feedback").create_index(["message_id"], if_not_exists=True)


def _v2(db: sqlite_utils.Database) -> None:
    """Operators: flags, the review queue, corrections, handoffs; who wrote a relayed message."""
    if "author" not in db.table("messages").columns_dict:
        db.execute("ALTER TABLE messages ADD COLUMN author TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS messages_reply_to ON messages(reply_to)")
    # Teller's own posts can carry their platform id too (a Slack ts), to find the reply a reaction is on.
    db.execute(
        "CREATE INDEX IF NOT EXISTS messages_platform ON messages(channel, platform_id) "
        "WHERE platform_id IS NOT NULL"
    )
    db.table("flags").create(
        {"id": str, "message_id": str, "reason": str, "actor": str, "source": str, "created_at": str},
        pk="id",
        foreign_keys=[("message_id", "messages", "id")],
        if_not_exists=True,
    )
    db.table("flags").create_index(["message_id", "actor"], unique=True, if_not_exists=True)
    db.table("review_items").create(
        {
            "id": int,
            "key": str,
            "text": str,
            "status": str,
            "route": str,
            "suggestion_kind": str,
            "suggested_intent": str,
            "suggested_kb_id": str,
            "suggested_confidence": float,
            "suggestion_model": str,
            "resolution": str,
            "resolved_by": str,
            "resolved_at": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        if_not_exists=True,
    )
    db.table("review_items").create_index(["status", "key"], if_not_exists=True)
    db.table("review_sources").create(
        {
            "item_id": int,
            "reply_id": str,
            "message_id": str,
            "text": str,
            "reason": str,
            "created_at": str,
        },
        pk=("reply_id", "reason"),
        foreign_keys=[
            ("item_id", "review_items", "id"),
            ("reply_id", "messages", "id"),
            ("message_id", "messages", "id"),
        ],
        if_not_exists=True,
    )
    db.table("review_sources").create_index(["item_id"], if_not_exists=True)
    db.table("corrections").create(
        {
            "id": int,
            "item_id": int,
            "text": str,
            "key": str,
            "action": str,
            "label": str,
            "kb_id": str,
            "answer": str,
            "author": str,
            "created_at": str,
            "superseded_by": int,
            "superseded_at": str,
        },
        pk="id",
        foreign_keys=[("item_id", "review_items", "id")],
        if_not_exists=True,
    )
    db.table("corrections").create_index(["superseded_by"], if_not_exists=True)
    db.table("handoffs").create(
        {
            "id": str,
            "channel": str,
            "conversation_id": str,
            "customer_user_id": str,
            "customer_chat_id": str,
            "message_id": str,
            "ops_channel": str,
            "thread_ts": str,
            "status": str,
            "opened_at": str,
            "closed_at": str,
            "closed_by": str,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
        if_not_exists=True,
    )
    # At most one open handoff per conversation; an ops thread leads back to its handoff.
    db.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS handoffs_open ON handoffs(conversation_id) WHERE status = 'open'"
    )
    db.table("handoffs").create_index(["thread_ts"], if_not_exists=True)


#: Schema migrations, in order; ``PRAGMA user_version`` records how many have run.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2]


class Store:
    """Thread-safe: one connection, writes serialised by a lock, WAL so readers never block."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the database ({exc})") from None
        self._db = sqlite_utils.Database(connection)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable across process crashes
        self._db.execute("PRAGMA foreign_keys = ON")
        self.migrate()

    # ----------------------------------------------------------------------------------- schema

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchall()[0][0])

    def migrate(self) -> None:
        with self._lock:
            version = self.schema_version
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this Teller "
                    f"({len(MIGRATIONS)}); upgrade Teller"
                )
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                # sqlite-utils commits each DDL statement itself, so migrations are written to be
                # re-runnable (IF NOT EXISTS) and the version is bumped only once one has finished.
                migration(self._db)
                self._db.execute(f"PRAGMA user_version = {number}")

    def _transaction(self) -> Any:
        return _Transaction(self._db.conn)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        """A plain INSERT, inside the caller's transaction (sqlite-utils' writers commit on their own)."""
        columns = ", ".join(f"[{c}]" for c in row)
        self._db.execute(
            f"INSERT INTO [{table}] ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values())
        )

    # ----------------------------------------------------------------------------------- writing

    def _conversation(self, channel: str, external_id: str, user_id: str, now: str) -> str:
        rows = self._db.execute(
            "SELECT id FROM conversations WHERE channel = ? AND external_id = ?", [channel, external_id]
        ).fetchall()
        row = rows[0] if rows else None
        if row:
            self._db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", [now, row[0]])
            return str(row[0])
        conversation_id = new_id("c")
        self._insert(
            "conversations",
            {
                "id": conversation_id,
                "channel": channel,
                "external_id": external_id,
                "user_id": user_id,
                "created_at": now,
                "updated_at": now,
            },
        )
        return conversation_id

    def record_exchange(
        self, incoming: dict[str, Any], reply: dict[str, Any]
    ) -> tuple[StoredMessage, StoredMessage]:
        """Store a customer message and Teller's reply together (texts redacted); return both rows.

        ``incoming`` needs channel, conversation (the platform's id), user_id and text, and may have
        platform_id; ``reply`` needs text and may have route, intent, confidence, kb_id,
        model_version, latency_ms and choices (a list of ``{"label", "value"}``).
        """
        now = _now()
        with self._lock, self._transaction():
            conversation_id = self._conversation(
                incoming["channel"], incoming["conversation"], incoming["user_id"], now
            )
            in_row = {
                "id": new_id("m"),
                "conversation_id": conversation_id,
                "direction": IN,
                "channel": incoming["channel"],
                "user_id": incoming["user_id"],
                "platform_id": incoming.get("platform_id"),
                "text": redact(incoming["text"]),
                "created_at": now,
            }
            out_row = {
                "id": new_id("m"),
                "conversation_id": conversation_id,
                "direction": OUT,
                "channel": incoming["channel"],
                "user_id": incoming["user_id"],
                "reply_to": in_row["id"],
                "text": redact(reply["text"]),
                "created_at": now,
                "choices": json.dumps(reply.get("choices") or []),
                **{
                    k: reply.get(k)
                    for k in ("route", "intent", "confidence", "kb_id", "model_version", "latency_ms")
                },
            }
            try:
                self._insert("messages", in_row)
            except sqlite3.IntegrityError:
                raise DuplicateMessage(
                    f"{incoming['channel']} message {incoming.get('platform_id')} is stored already"
                ) from None
            self._insert("messages", out_row)
        return _message(in_row), _message(out_row)

    def add_feedback(
        self, message_id: str, helpful: bool, comment: str | None = None, user_id: str | None = None
    ) -> Feedback:
        """Feedback on one of Teller's replies; the comment is redacted like every stored text."""
        message = self.message(message_id)
        if message.direction != OUT:
            raise InputError(
                f"message {message_id!r} is a customer message; feedback is about Teller's replies"
            )
        row = {
            "id": new_id("f"),
            "message_id": message_id,
            "helpful": int(helpful),
            "comment": redact(comment) if comment else None,
            "user_id": user_id,
            "created_at": _now(),
        }
        with self._lock, self._transaction():
            self._insert("feedback", row)
        return _feedback(row)

    # ----------------------------------------------------------------------------------- reading

    def _read(self, sql: str, args: list[Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a query, fully read under the lock: one connection serves every thread, and an
        unfinished read would keep a writer's COMMIT from completing."""
        with self._lock:
            return list(self._db.query(sql, args or []))

    def message(self, message_id: str) -> StoredMessage:
        rows = self._read("SELECT * FROM messages WHERE id = ?", [message_id])
        if not rows:
            raise InputError(f"no message {message_id!r}")
        return _message(rows[0])

    def find_reply(self, channel: str, platform_id: str) -> StoredMessage | None:
        """Teller's stored reply to a platform message seen before (for duplicate deliveries)."""
        rows = self._read(
            "SELECT o.* FROM messages i JOIN messages o ON o.reply_to = i.id "
            "WHERE i.channel = ? AND i.platform_id = ? AND i.direction = 'in'",
            [channel, platform_id],
        )
        return _message(rows[0]) if rows else None

    def history(self, conversation_id: str | None = None, limit: int = 50) -> list[StoredMessage]:
        """The latest ``limit`` messages (of one conversation, or all), oldest first."""
        where, args = ("WHERE conversation_id = ?", [conversation_id]) if conversation_id else ("", [])
        rows = self._read(
            f"SELECT * FROM messages {where} ORDER BY created_at DESC, rowid DESC LIMIT ?", [*args, limit]
        )
        return [_message(r) for r in reversed(rows)]

    def exchanges(self, since: str) -> list[dict[str, Any]]:
        """Every customer message since ``since`` (ISO time) with Teller's route, intent, KB entry, and
        whether the reply was marked not helpful by the customer or flagged by an operator."""
        return self._read(
            "SELECT i.text AS text, o.route AS route, o.intent AS intent, o.kb_id AS kb_id, "
            "(EXISTS(SELECT 1 FROM feedback f WHERE f.message_id = o.id AND f.helpful = 0) "
            "OR EXISTS(SELECT 1 FROM flags g WHERE g.message_id = o.id)) AS flagged "
            "FROM messages o JOIN messages i ON o.reply_to = i.id "
            "WHERE o.direction = 'out' AND o.created_at >= ? ORDER BY o.created_at, o.rowid",
            [since],
        )

    def feedback(self, limit: int = 100) -> list[tuple[Feedback, StoredMessage]]:
        rows = self._read("SELECT * FROM feedback ORDER BY created_at DESC, rowid DESC LIMIT ?", [limit])
        return [(_feedback(r), self.message(r["message_id"])) for r in rows]

    def count(self, table: str = "messages") -> int:
        return int(self._read(f"SELECT count(*) AS n FROM [{table}]")[0]["n"])

    # ----------------------------------------------------------------------------------- messages

    def exchange(self, message_id: str) -> tuple[StoredMessage, StoredMessage]:
        """The customer's message and Teller's reply to it, from the id of either."""
        message = self.message(message_id)
        if message.direction == OUT:
            if message.reply_to is None:
                raise InputError(f"message {message_id!r} is not one of Teller's answers")
            return self.message(message.reply_to), message
        rows = self._read(
            "SELECT * FROM messages WHERE reply_to = ? AND direction = 'out' ORDER BY rowid LIMIT 1",
            [message_id],
        )
        if not rows:
            raise InputError(f"message {message_id!r} has no answer from Teller")
        return message, _message(rows[0])

    def customer_messages_before(self, message_id: str, limit: int = 10) -> list[StoredMessage]:
        """The customer's earlier messages in the same conversation, newest first."""
        message = self.message(message_id)
        rows = self._read(
            "SELECT * FROM messages WHERE conversation_id = ? AND direction = 'in' AND rowid < "
            "(SELECT rowid FROM messages WHERE id = ?) ORDER BY rowid DESC LIMIT ?",
            [message.conversation_id, message_id, limit],
        )
        return [_message(r) for r in rows]

    def set_platform_id(self, message_id: str, platform_id: str) -> None:
        """Record the platform's id of one of Teller's posts (a Slack ts), to find it from a reaction."""
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "UPDATE messages SET platform_id = ? WHERE id = ? AND direction = 'out'",
                [platform_id, message_id],
            )
            if cursor.rowcount != 1:
                raise InputError(f"no reply {message_id!r}")

    def message_by_platform_id(self, channel: str, platform_id: str) -> StoredMessage | None:
        """The stored message with this platform id on this channel (Teller's post first)."""
        rows = self._read(
            "SELECT * FROM messages WHERE channel = ? AND platform_id = ? "
            "ORDER BY direction = 'out' DESC, rowid DESC LIMIT 1",
            [channel, platform_id],
        )
        return _message(rows[0]) if rows else None

    def conversation_id(self, channel: str, external_id: str) -> str | None:
        """The store's id of a platform conversation, if it has one."""
        rows = self._read(
            "SELECT id FROM conversations WHERE channel = ? AND external_id = ?", [channel, external_id]
        )
        return str(rows[0]["id"]) if rows else None

    # ----------------------------------------------------------------------------------- flags

    def add_flag(self, message_id: str, reason: str | None, actor: str, source: str) -> Flag:
        """Flag one of Teller's replies (the reason redacted). An actor flags a reply once: flagging
        it again returns the first flag."""
        message = self.message(message_id)
        if message.direction != OUT or message.reply_to is None:
            raise InputError(f"message {message_id!r} is not one of Teller's answers")
        row = {
            "id": new_id("fl"),
            "message_id": message_id,
            "reason": redact(reason.strip()) if reason and reason.strip() else None,
            "actor": actor,
            "source": source,
            "created_at": _now(),
        }
        with self._lock, self._transaction():
            existing = self._db.execute(
                "SELECT id FROM flags WHERE message_id = ? AND actor = ?", [message_id, actor]
            ).fetchall()
            if not existing:
                self._insert("flags", row)
        return self.flags(message_id=message_id, actor=actor)[0] if existing else _flag(row)

    def flags(self, limit: int = 100, message_id: str | None = None, actor: str | None = None) -> list[Flag]:
        """Flags, newest first."""
        where, args = _where(message_id=message_id, actor=actor)
        rows = self._read(
            f"SELECT * FROM flags {where} ORDER BY created_at DESC, rowid DESC LIMIT ?", [*args, limit]
        )
        return [_flag(r) for r in rows]

    # ----------------------------------------------------------------------------------- review queue

    def review_candidates(
        self, low_confidence: float, since: str | None = None, reply_id: str | None = None
    ) -> list[ReviewCandidate]:
        """Replies that belong in the review queue and are not filed there yet for that reason: marked
        not helpful, flagged, handoffs, clarify turns, intent answers below ``low_confidence``.

        ``since`` (ISO time) is compared with the reply's time, or the feedback's or flag's.
        """
        since_reply = " AND o.created_at >= :since" if since else ""
        feedback = "FROM feedback f WHERE f.message_id = o.id AND f.helpful = 0" + (
            " AND f.created_at >= :since" if since else ""
        )
        flags = "FROM flags g WHERE g.message_id = o.id" + (" AND g.created_at >= :since" if since else "")
        reasons = [
            (REASON_HANDOFF, "o.route = 'handoff'" + since_reply, "o.created_at"),
            (REASON_CLARIFY, "o.route = 'clarify'" + since_reply, "o.created_at"),
            (
                REASON_LOW_CONFIDENCE,
                "o.route = 'intent' AND o.confidence < :low" + since_reply,
                "o.created_at",
            ),
            (REASON_NOT_HELPFUL, f"EXISTS (SELECT 1 {feedback})", f"(SELECT min(f.created_at) {feedback})"),
            (REASON_FLAGGED, f"EXISTS (SELECT 1 {flags})", f"(SELECT min(g.created_at) {flags})"),
        ]
        parts = [
            "SELECT o.id AS reply_id, i.id AS message_id, o.conversation_id AS conversation_id, "
            "i.text AS text, o.route AS route, o.intent AS intent, o.confidence AS confidence, "
            f"o.kb_id AS kb_id, {when} AS created_at, '{reason}' AS reason, o.rowid AS seq "
            "FROM messages o JOIN messages i ON i.id = o.reply_to "
            f"WHERE o.direction = 'out' AND ({condition})"
            + (" AND o.id = :reply" if reply_id else "")
            + " AND NOT EXISTS (SELECT 1 FROM review_sources s WHERE s.reply_id = o.id "
            f"AND s.reason = '{reason}')"
            for reason, condition, when in reasons
        ]
        params = {"low": low_confidence, "since": since, "reply": reply_id}
        with self._lock:
            rows = list(self._db.query(" UNION ALL ".join(parts) + " ORDER BY created_at, seq", params))
        return [ReviewCandidate(**{k: v for k, v in r.items() if k != "seq"}) for r in rows]

    def create_review_item(
        self,
        key: str,
        text: str,
        route: str | None,
        suggestion: Suggestion | None,
        sources: list[ReviewSource],
    ) -> int:
        """A new open item holding ``sources``; if an open item with the same key appeared meanwhile
        (another process), the sources join that one. Returns the item's id."""
        now = _now()
        with self._lock, self._transaction():
            rows = self._db.execute(
                "SELECT id FROM review_items WHERE key = ? AND status = 'open' ORDER BY id LIMIT 1", [key]
            ).fetchall()
            if rows:
                item_id = int(rows[0][0])
            else:
                cursor = self._db.execute(
                    "INSERT INTO review_items (key, text, status, route, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [key, text, OPEN, route, now, now],
                )
                item_id = int(cursor.lastrowid or 0)
                self._set_suggestion(item_id, suggestion)
            self._file(item_id, sources, now)
        return item_id

    def add_review_sources(self, item_id: int, sources: list[ReviewSource]) -> None:
        """File more replies under an item (a reply already filed for a reason is skipped)."""
        with self._lock, self._transaction():
            self._file(item_id, sources, _now())

    def set_suggestion(self, item_id: int, suggestion: Suggestion | None) -> None:
        with self._lock, self._transaction():
            self._set_suggestion(item_id, suggestion)

    def _set_suggestion(self, item_id: int, s: Suggestion | None) -> None:
        self._db.execute(
            "UPDATE review_items SET suggestion_kind = ?, suggested_intent = ?, suggested_kb_id = ?, "
            "suggested_confidence = ?, suggestion_model = ? WHERE id = ?",
            [
                s.kind if s else None,
                s.intent if s else None,
                s.kb_id if s else None,
                s.confidence if s else None,
                s.model_version if s else None,
                item_id,
            ],
        )

    def _file(self, item_id: int, sources: list[ReviewSource], now: str) -> None:
        for source in sources:
            self._db.execute(
                "INSERT OR IGNORE INTO review_sources "
                "(item_id, reply_id, message_id, text, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [item_id, source.reply_id, source.message_id, source.text, source.reason, now],
            )
        self._db.execute("UPDATE review_items SET updated_at = ? WHERE id = ?", [now, item_id])

    def review_items(
        self, status: str | None = OPEN, item_id: int | None = None, reply_id: str | None = None
    ) -> list[ReviewItem]:
        """Review items (only ``status`` ones; None for all), oldest first, with their sources."""
        conditions: list[str] = ["1"]
        args: list[Any] = []
        if status is not None:
            conditions.append("r.status = ?")
            args.append(status)
        if item_id is not None:
            conditions.append("r.id = ?")
            args.append(item_id)
        if reply_id is not None:
            conditions.append("r.id IN (SELECT item_id FROM review_sources WHERE reply_id = ?)")
            args.append(reply_id)
        where = "WHERE " + " AND ".join(conditions)
        joined = "FROM review_sources s JOIN review_items r ON r.id = s.item_id"
        with self._lock:
            items = list(self._db.query(f"SELECT r.* FROM review_items r {where} ORDER BY r.id", args))
            sources = list(
                self._db.query(f"SELECT s.* {joined} {where} ORDER BY s.created_at, s.rowid", args)
            )
            # Flag reasons and "not helpful" comments on the filed replies, oldest first.
            notes = list(
                self._db.query(
                    f"SELECT s.item_id AS item_id, g.reason AS note, g.created_at AS at {joined} "
                    f"JOIN flags g ON g.message_id = s.reply_id {where} "
                    "AND s.reason = 'flagged' AND g.reason IS NOT NULL "
                    f"UNION ALL SELECT s.item_id, f.comment, f.created_at {joined} "
                    f"JOIN feedback f ON f.message_id = s.reply_id {where} "
                    "AND s.reason = 'not_helpful' AND f.helpful = 0 AND f.comment IS NOT NULL ORDER BY at",
                    args + args,
                )
            )
        return [_review_item(row, sources, notes) for row in items]

    def review_keys(self) -> list[tuple[int, str, str, str | None]]:
        """``(id, key, status, route)`` of every review item, oldest first (for matching new texts)."""
        rows = self._read("SELECT id, key, status, route FROM review_items ORDER BY id")
        return [(r["id"], r["key"], r["status"], r["route"]) for r in rows]

    def review_item(self, item_id: int) -> ReviewItem:
        items = self.review_items(status=None, item_id=item_id)
        if not items:
            raise InputError(f"no review item {item_id}")
        return items[0]

    def resolve_review_item(
        self,
        item_id: int,
        status: str,
        actor: str,
        resolution: str | None = None,
        correction: NewCorrection | None = None,
        same_text: Callable[[str, str], bool] | None = None,
    ) -> tuple[ReviewItem, Correction | None, list[int]]:
        """Close an open item (``status`` says how) and store its correction, if any, in one
        transaction. Earlier current corrections whose key is the same (by ``same_text``, default
        equality) are marked superseded by it, not changed otherwise. Returns the item, the
        correction and the ids it superseded."""
        same = same_text or (lambda a, b: a == b)
        now = _now()
        superseded: list[int] = []
        correction_id: int | None = None
        with self._lock, self._transaction():
            rows = self._db.execute(
                "SELECT status, resolved_by FROM review_items WHERE id = ?", [item_id]
            ).fetchall()
            if not rows:
                raise InputError(f"no review item {item_id}")
            if rows[0][0] != OPEN:
                raise InputError(f"review item {item_id} is {rows[0][0]} already (by {rows[0][1]})")
            self._db.execute(
                "UPDATE review_items SET status = ?, resolution = ?, resolved_by = ?, resolved_at = ?, "
                "updated_at = ? WHERE id = ?",
                [status, resolution, actor, now, now, item_id],
            )
            if correction is not None:
                current = self._db.execute(
                    "SELECT id, key FROM corrections WHERE superseded_by IS NULL"
                ).fetchall()
                cursor = self._db.execute(
                    "INSERT INTO corrections (item_id, text, key, action, label, kb_id, answer, author, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        item_id,
                        correction.text,
                        correction.key,
                        correction.action,
                        correction.label,
                        correction.kb_id,
                        redact(correction.answer) if correction.answer else None,
                        actor,
                        now,
                    ],
                )
                correction_id = int(cursor.lastrowid or 0)
                superseded = [int(i) for i, key in current if same(key, correction.key)]
                for old in superseded:
                    self._db.execute(
                        "UPDATE corrections SET superseded_by = ?, superseded_at = ? WHERE id = ?",
                        [correction_id, now, old],
                    )
        stored = self.corrections(correction_id=correction_id)[0] if correction_id is not None else None
        return self.review_item(item_id), stored, superseded

    def corrections(
        self, current_only: bool = False, limit: int | None = None, correction_id: int | None = None
    ) -> list[Correction]:
        """Corrections, newest first; ``current_only`` leaves out superseded ones."""
        conditions = ["superseded_by IS NULL"] if current_only else []
        args: list[Any] = []
        if correction_id is not None:
            conditions.append("id = ?")
            args.append(correction_id)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._read(
            f"SELECT * FROM corrections {where} ORDER BY id DESC LIMIT ?",
            [*args, -1 if limit is None else limit],
        )
        return [Correction(**r) for r in rows]

    # ----------------------------------------------------------------------------------- handoffs

    def start_handoff(
        self,
        channel: str,
        conversation_id: str,
        customer_user_id: str,
        customer_chat_id: str,
        message_id: str | None = None,
        ops_channel: str | None = None,
        thread_ts: str | None = None,
    ) -> Handoff:
        """Open a handoff for a conversation (the store's id, ``StoredMessage.conversation_id``); if
        one is open already, that one is returned unchanged."""
        handoff_id = new_id("h")
        row = {
            "id": handoff_id,
            "channel": channel,
            "conversation_id": conversation_id,
            "customer_user_id": customer_user_id,
            "customer_chat_id": customer_chat_id,
            "message_id": message_id,
            "ops_channel": ops_channel,
            "thread_ts": thread_ts,
            "status": OPEN,
            "opened_at": _now(),
        }
        with self._lock, self._transaction():
            if not self._db.execute("SELECT 1 FROM conversations WHERE id = ?", [conversation_id]).fetchall():
                raise InputError(f"no conversation {conversation_id!r}")
            existing = self._db.execute(
                "SELECT id FROM handoffs WHERE conversation_id = ? AND status = 'open'", [conversation_id]
            ).fetchall()
            if not existing:
                self._insert("handoffs", row)
        return self.handoff(str(existing[0][0]) if existing else handoff_id)

    def set_handoff_thread(self, handoff_id: str, ops_channel: str, thread_ts: str) -> Handoff:
        """Record the ops-channel thread that relays a handoff (once its first post is out)."""
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "UPDATE handoffs SET ops_channel = ?, thread_ts = ? WHERE id = ?",
                [ops_channel, thread_ts, handoff_id],
            )
            if cursor.rowcount != 1:
                raise InputError(f"no handoff {handoff_id!r}")
        return self.handoff(handoff_id)

    def close_handoff(self, handoff_id: str, closed_by: str) -> Handoff:
        """Close a handoff; closing a closed one changes nothing and returns it."""
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE handoffs SET status = 'closed', closed_at = ?, closed_by = ? "
                "WHERE id = ? AND status = 'open'",
                [_now(), closed_by, handoff_id],
            )
        return self.handoff(handoff_id)

    def handoff(self, handoff_id: str) -> Handoff:
        rows = self._read("SELECT * FROM handoffs WHERE id = ?", [handoff_id])
        if not rows:
            raise InputError(f"no handoff {handoff_id!r}")
        return Handoff(**rows[0])

    def active_handoff(self, conversation_id: str) -> Handoff | None:
        """The open handoff of a conversation (the store's id), if any."""
        rows = self._read(
            "SELECT * FROM handoffs WHERE conversation_id = ? AND status = 'open'", [conversation_id]
        )
        return Handoff(**rows[0]) if rows else None

    def active_handoff_for(self, channel: str, external_id: str) -> Handoff | None:
        """The open handoff of a platform conversation (``Incoming.conversation_id``), if any."""
        rows = self._read(
            "SELECT h.* FROM handoffs h JOIN conversations c ON c.id = h.conversation_id "
            "WHERE c.channel = ? AND c.external_id = ? AND h.status = 'open'",
            [channel, external_id],
        )
        return Handoff(**rows[0]) if rows else None

    def handoff_by_thread(self, thread_ts: str, ops_channel: str | None = None) -> Handoff | None:
        """The handoff an ops-channel thread relays (the latest, open or closed)."""
        where, args = _where(thread_ts=thread_ts, ops_channel=ops_channel)
        rows = self._read(f"SELECT * FROM handoffs {where} ORDER BY opened_at DESC, rowid DESC LIMIT 1", args)
        return Handoff(**rows[0]) if rows else None

    def handoffs(self, status: str | None = None, limit: int = 100) -> list[Handoff]:
        """Handoffs, newest first."""
        where, args = _where(status=status)
        rows = self._read(
            f"SELECT * FROM handoffs {where} ORDER BY opened_at DESC, rowid DESC LIMIT ?", [*args, limit]
        )
        return [Handoff(**r) for r in rows]

    def record_relay(
        self,
        handoff_id: str,
        direction: str,
        text: str,
        author: str | None = None,
        platform_id: str | None = None,
    ) -> StoredMessage:
        """Store a message relayed during an open handoff: the customer's (``IN``, deduplicated by
        ``platform_id`` like any customer message) or an operator's reply (``OUT``, ``author`` the
        operator). Route ``human``, text redacted."""
        if direction not in (IN, OUT):
            raise InputError(f"direction must be {IN!r} or {OUT!r}, not {direction!r}")
        if not text.strip():
            raise InputError("the message is empty")
        if direction == OUT and not author:
            raise InputError("an operator's message needs its author")
        now = _now()
        with self._lock, self._transaction():
            rows = self._db.execute(
                "SELECT conversation_id, channel, customer_user_id, status FROM handoffs WHERE id = ?",
                [handoff_id],
            ).fetchall()
            if not rows:
                raise InputError(f"no handoff {handoff_id!r}")
            conversation_id, channel, user_id, status = rows[0]
            if status != OPEN:
                raise InputError(f"handoff {handoff_id!r} is closed")
            row = {
                "id": new_id("m"),
                "conversation_id": conversation_id,
                "direction": direction,
                "channel": channel,
                "user_id": user_id,
                "platform_id": platform_id,
                "text": redact(text),
                "route": HUMAN,
                "author": author if direction == OUT else None,
                "choices": "[]",
                "created_at": now,
            }
            try:
                self._insert("messages", row)
            except sqlite3.IntegrityError:
                raise DuplicateMessage(f"{channel} message {platform_id} is stored already") from None
            self._db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", [now, conversation_id])
        return _message(row)

    def transcript(self, handoff_id: str) -> list[StoredMessage]:
        """The conversation of a handoff, from its first message up to the handoff's close, oldest first."""
        handoff = self.handoff(handoff_id)
        rows = self._read(
            "SELECT * FROM messages WHERE conversation_id = ? AND created_at <= ? ORDER BY created_at, rowid",
            [handoff.conversation_id, handoff.closed_at or "9999"],
        )
        return [_message(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error (the connection is in autocommit mode)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> None:
        self._connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self._connection.execute("COMMIT" if kind is None else "ROLLBACK")


_MESSAGE_FIELDS = set(StoredMessage.__dataclass_fields__)


def _message(row: dict[str, Any]) -> StoredMessage:
    fields = {k: v for k, v in row.items() if k in _MESSAGE_FIELDS}
    fields["choices"] = tuple(json.loads(row.get("choices") or "[]"))
    return StoredMessage(**fields)


def _feedback(row: dict[str, Any]) -> Feedback:
    return Feedback(
        row["id"], row["message_id"], bool(row["helpful"]), row["comment"], row["user_id"], row["created_at"]
    )


def _flag(row: dict[str, Any]) -> Flag:
    return Flag(**{k: row[k] for k in Flag.__dataclass_fields__})


def _where(**columns: Any) -> tuple[str, list[Any]]:
    """``WHERE a = ? AND b = ?`` for the columns given a value (not None), and the values."""
    given = {k: v for k, v in columns.items() if v is not None}
    if not given:
        return "", []
    return "WHERE " + " AND ".join(f"[{k}] = ?" for k in given), list(given.values())


def _review_item(
    row: dict[str, Any], sources: list[dict[str, Any]], notes: list[dict[str, Any]]
) -> ReviewItem:
    mine = [s for s in sources if s["item_id"] == row["id"]]
    suggestion = (
        Suggestion(
            row["suggestion_kind"],
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
        status=row["status"],
        route=row["route"],
        suggestion=suggestion,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message_ids=tuple(dict.fromkeys(s["reply_id"] for s in mine)),
        reasons=tuple(dict.fromkeys(s["reason"] for s in mine)),
        texts=tuple(dict.fromkeys(s["text"] for s in mine)),
        notes=tuple(dict.fromkeys(n["note"] for n in notes if n["item_id"] == row["id"])),
        resolution=row["resolution"],
        resolved_by=row["resolved_by"],
        resolved_at=row["resolved_at"],
    )
