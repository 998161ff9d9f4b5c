"""Ids that are never handed out twice, and an audit log the database itself keeps append-only.

- ``review_items``, ``corrections`` and ``correction_proposals`` lose rows to erasure and retention
  (:mod:`bot.privacy.purge`). Their integer ids are what operators act on (a review item's buttons
  in Slack, ``teller review resolve ID``, ``teller corrections ...``) and what the audit log names.
  SQLite, without ``AUTOINCREMENT``, gives a new row the largest id in use plus one, so erasing the
  newest item let the next customer's item take its id: a stale button or an audit entry would then
  point at someone else's item. On SQLite the three tables are rebuilt with ``AUTOINCREMENT``
  (``sqlite_sequence`` then remembers the largest id ever given; rows and ids are kept). An id
  erased before this migration at the top of its table may still be given once more, unless a row
  still names it (a correction's successor, origin or proposal). PostgreSQL's
  sequences never hand out an id twice: nothing to do there.
- ``audit_log``: ``UPDATE``, ``DELETE`` (and on PostgreSQL ``TRUNCATE``) are refused by triggers,
  a guard against accidental changes by anyone with SQL access, not only in Teller's code. Not
  tamper-proof: whoever can write the SQLite file, or owns the table on PostgreSQL (Teller's own
  role), can drop a trigger; for that, run Teller under a role granted only ``INSERT`` and
  ``SELECT`` on ``audit_log``. A later migration that rebuilds ``audit_log`` on SQLite must create
  the triggers again (``tests/test_audit.py`` checks they hold at head).

The SQLite rebuild needs free disk space of about the three tables' size, and the file keeps it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: Tables whose rows are removed (erasure, retention) and whose ids are referenced elsewhere.
REBUILT = ("review_items", "corrections", "correction_proposals")
APPEND_ONLY = "audit_log is append-only"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Rebuilt with foreign-key enforcement off (the connection's, set by
        # bot.storage.Database.upgrade before the transaction, as SQLite's ALTER TABLE procedure
        # asks); the rows keep their ids, so references stay intact (checked before commit).
        for table in REBUILT:
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
                pass
        # A correction's id may live on where no foreign key guards it after the correction was
        # erased (an older one's ``superseded_by``, a proposal's ``correction_id``/``result_id``, a
        # newer one's ``origin_id``): the sequence starts above those too, so none is given again.
        op.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'corrections', 0 "
            "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'corrections')"
        )
        op.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, "
            "coalesce((SELECT max(superseded_by) FROM corrections), 0), "
            "coalesce((SELECT max(origin_id) FROM corrections), 0), "
            "coalesce((SELECT max(correction_id) FROM correction_proposals), 0), "
            "coalesce((SELECT max(result_id) FROM correction_proposals), 0)) "
            "WHERE name = 'corrections'"
        )
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION teller_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION teller_audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION teller_audit_log_append_only()"
        )


def downgrade() -> None:
    """Teller never downgrades; run by hand, on SQLite it needs foreign-key enforcement off (as
    :meth:`bot.storage.Database.upgrade` sets it, ``_foreign_keys_off``), or the rebuild is refused."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        for table in REBUILT:
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": False}):
                pass
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS teller_audit_log_append_only()")
