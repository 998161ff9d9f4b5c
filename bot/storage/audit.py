"""The audit log: operator and admin actions, append-only.

Each entry says who acted (``actor``), what they did (:class:`~bot.storage.records.AuditAction`),
on what (``subject``) and the receipt of it (``details``, JSON). The repository can add entries and
read them, never change or remove one: there is no update or delete here, and nothing else in
Teller writes to ``audit_log``. The database guards it too against accidental changes by anyone
with SQL access: triggers refuse ``UPDATE`` and ``DELETE`` (and ``TRUNCATE`` on PostgreSQL) with
"audit_log is append-only" (migration 0012; the table's owner can still drop them, so a bank that
wants it tamper-proof runs Teller under a role granted only ``INSERT`` and ``SELECT`` on it). An
action that changes data records its entry in the same transaction
(:meth:`AuditRepository.record_in`), so the change and its record are committed together or not at
all.

A customer's id never goes into an entry in clear: callers put a keyed pseudonym in ``subject``
(see :mod:`bot.privacy.erasure`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import SQLAlchemyError

from bot.storage import schema
from bot.storage.database import Database, inserted_id
from bot.storage.errors import StoreError
from bot.storage.records import AuditAction, AuditEntry

log = logging.getLogger(__name__)

_a = schema.audit_log


class AuditRepository:
    """Adds entries to the audit log and reads them back. Thread-safe."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def record(
        self,
        actor: str,
        action: AuditAction | str,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Add an entry in a transaction of its own; returns it."""
        with self.db.transaction() as connection:
            return self.record_in(connection, actor, action, subject, details)

    def record_after(
        self,
        actor: str,
        action: AuditAction | str,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry | None:
        """:meth:`record` for an action already done and committed on its own (a knowledge-base
        change, a retrain, an activation): a database error is logged (``audit_failed``, with what
        the entry would have said) and ``None`` returned, so the action is never lost for its record."""
        try:
            return self.record(actor, action, subject, details)
        except (StoreError, SQLAlchemyError) as exc:
            log.error(
                "audit_failed",
                extra={
                    "fields": {
                        "actor": actor,
                        "action": str(action),
                        "subject": subject,
                        "details": details,
                        "error": repr(exc)[:300],
                    }
                },
            )
            return None

    def record_in(
        self,
        connection: Connection,
        actor: str,
        action: AuditAction | str,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Add an entry inside the caller's transaction (committed, or rolled back, with it)."""
        if not actor.strip():
            raise ValueError("an audit entry needs its actor")
        row = {
            "at": self.db.clock.now(),
            "actor": actor,
            "action": str(action),
            "subject": subject,
            "details": json.dumps(details or {}, ensure_ascii=False),
        }
        result = connection.execute(_a.insert().values(**row))
        return _entry({"id": inserted_id(result), **row})

    def entries(
        self,
        action: AuditAction | str | None = None,
        actor: str | None = None,
        since: str | None = None,
        limit: int = 100,
        subject: str | Collection[str] | None = None,
    ) -> list[AuditEntry]:
        """Entries, newest first: of one ``action``, ``actor`` or ``subject`` (or any of several
        subjects: a customer's pseudonyms under the id as typed and as stored), at or after
        ``since`` (an ISO time in the store's format, ``2026-11-30T08:15:02.123456Z``), at most
        ``limit``."""
        query = select(_a).order_by(_a.c.id.desc()).limit(limit)
        if action is not None:
            query = query.where(_a.c.action == str(action))
        if actor is not None:
            query = query.where(_a.c.actor == actor)
        if since is not None:
            query = query.where(_a.c.at >= since)
        if isinstance(subject, str):
            query = query.where(_a.c.subject == subject)
        elif subject is not None:
            query = query.where(_a.c.subject.in_(sorted(set(subject))))
        return [_entry(r) for r in self.db.rows(query)]


def _entry(row: dict[str, Any]) -> AuditEntry:
    action = str(row["action"])
    known = {a.value for a in AuditAction}
    return AuditEntry(
        id=int(row["id"]),
        at=row["at"],
        actor=row["actor"],
        action=AuditAction(action) if action in known else action,
        subject=row["subject"],
        details=json.loads(row["details"] or "{}"),
    )
