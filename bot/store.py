"""Conversation storage: SQLite through sqlite-utils, WAL, numbered migrations, PII redacted on the way in.

Every message in and out is one row of ``messages``; an exchange (the customer's message and
Teller's reply) is written in one transaction before the reply leaves, so whatever a customer has
seen answered is on disk even if the process is killed the next instant.
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


@dataclass(frozen=True)
class Feedback:
    id: str
    message_id: str
    helpful: bool
    comment: str | None
    user_id: str | None
    created_at: str


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


#: Schema migrations, in order; ``PRAGMA user_version`` records how many have run.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1]


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
        whether the reply was marked not helpful."""
        return self._read(
            "SELECT i.text AS text, o.route AS route, o.intent AS intent, o.kb_id AS kb_id, "
            "EXISTS(SELECT 1 FROM feedback f WHERE f.message_id = o.id AND f.helpful = 0) AS flagged "
            "FROM messages o JOIN messages i ON o.reply_to = i.id "
            "WHERE o.direction = 'out' AND o.created_at >= ? ORDER BY o.created_at, o.rowid",
            [since],
        )

    def feedback(self, limit: int = 100) -> list[tuple[Feedback, StoredMessage]]:
        rows = self._read("SELECT * FROM feedback ORDER BY created_at DESC, rowid DESC LIMIT ?", [limit])
        return [(_feedback(r), self.message(r["message_id"])) for r in rows]

    def count(self, table: str = "messages") -> int:
        return int(self._read(f"SELECT count(*) AS n FROM [{table}]")[0]["n"])

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
