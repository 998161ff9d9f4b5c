"""Operators: flags, the review queue, corrections, handoffs; who wrote a relayed message.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("author", sa.Text))
    op.create_index("messages_reply_to", "messages", ["reply_to"])
    # Teller's own posts can carry their platform id too (a Slack ts), to find the reply a reaction is on.
    where = sa.text("platform_id IS NOT NULL")
    op.create_index(
        "messages_platform",
        "messages",
        ["channel", "platform_id"],
        sqlite_where=where,
        postgresql_where=where,
    )
    op.create_table(
        "flags",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id")),
        sa.Column("reason", sa.Text),
        sa.Column("actor", sa.Text),
        sa.Column("source", sa.Text),
        sa.Column("created_at", sa.Text),
    )
    op.create_index("idx_flags_message_id_actor", "flags", ["message_id", "actor"], unique=True)
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.Text),
        sa.Column("text", sa.Text),
        sa.Column("status", sa.Text),
        sa.Column("route", sa.Text),
        sa.Column("suggestion_kind", sa.Text),
        sa.Column("suggested_intent", sa.Text),
        sa.Column("suggested_kb_id", sa.Text),
        sa.Column("suggested_confidence", sa.Float),
        sa.Column("suggestion_model", sa.Text),
        sa.Column("resolution", sa.Text),
        sa.Column("resolved_by", sa.Text),
        sa.Column("resolved_at", sa.Text),
        sa.Column("created_at", sa.Text),
        sa.Column("updated_at", sa.Text),
    )
    op.create_index("idx_review_items_status_key", "review_items", ["status", "key"])
    op.create_table(
        "review_sources",
        sa.Column("item_id", sa.Integer, sa.ForeignKey("review_items.id")),
        sa.Column("reply_id", sa.Text, sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id")),
        sa.Column("text", sa.Text),
        sa.Column("reason", sa.Text, primary_key=True),
        sa.Column("created_at", sa.Text),
    )
    op.create_index("idx_review_sources_item_id", "review_sources", ["item_id"])
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("review_items.id")),
        sa.Column("text", sa.Text),
        sa.Column("key", sa.Text),
        sa.Column("action", sa.Text),
        sa.Column("label", sa.Text),
        sa.Column("kb_id", sa.Text),
        sa.Column("answer", sa.Text),
        sa.Column("author", sa.Text),
        sa.Column("created_at", sa.Text),
        sa.Column("superseded_by", sa.Integer),
        sa.Column("superseded_at", sa.Text),
    )
    op.create_index("idx_corrections_superseded_by", "corrections", ["superseded_by"])
    op.create_table(
        "handoffs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("channel", sa.Text),
        sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id")),
        sa.Column("customer_user_id", sa.Text),
        sa.Column("customer_chat_id", sa.Text),
        sa.Column("message_id", sa.Text),
        sa.Column("ops_channel", sa.Text),
        sa.Column("thread_ts", sa.Text),
        sa.Column("status", sa.Text),
        sa.Column("opened_at", sa.Text),
        sa.Column("closed_at", sa.Text),
        sa.Column("closed_by", sa.Text),
    )
    # At most one open handoff per conversation; an ops thread leads back to its handoff.
    open_only = sa.text("status = 'open'")
    op.create_index(
        "handoffs_open",
        "handoffs",
        ["conversation_id"],
        unique=True,
        sqlite_where=open_only,
        postgresql_where=open_only,
    )
    op.create_index("idx_handoffs_thread_ts", "handoffs", ["thread_ts"])


def downgrade() -> None:
    for table in ("handoffs", "corrections", "review_sources", "review_items", "flags"):
        op.drop_table(table)
    op.drop_index("messages_platform", "messages")
    op.drop_index("messages_reply_to", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("author")
