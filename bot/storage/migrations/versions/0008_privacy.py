"""Privacy: an append-only audit log of operator and admin actions (erasures, retention runs, …),
and an outbox holding the exact text of a message on its way to a customer while the stored copy is
redacted (removed once the message is delivered, failed, erased or past retention).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("details", sa.Text),
    )
    op.create_index("idx_audit_log_action_at", "audit_log", ["action", "at"])
    op.create_table(
        "outbox",
        sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_index("idx_audit_log_action_at", table_name="audit_log")
    op.drop_table("audit_log")
