"""Conversations, messages (in and out) and customers' feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("channel", sa.Text),
        sa.Column("external_id", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("created_at", sa.Text),
        sa.Column("updated_at", sa.Text),
    )
    op.create_index(
        "idx_conversations_channel_external_id", "conversations", ["channel", "external_id"], unique=True
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id")),
        sa.Column("direction", sa.Text),
        sa.Column("channel", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("platform_id", sa.Text),
        sa.Column("reply_to", sa.Text),
        sa.Column("text", sa.Text),
        sa.Column("route", sa.Text),
        sa.Column("intent", sa.Text),
        sa.Column("confidence", sa.Float),
        sa.Column("kb_id", sa.Text),
        sa.Column("model_version", sa.Text),
        sa.Column("latency_ms", sa.Float),
        sa.Column("choices", sa.Text),
        sa.Column("created_at", sa.Text),
    )
    op.create_index("idx_messages_conversation_id_created_at", "messages", ["conversation_id", "created_at"])
    where = sa.text("direction = 'in' AND platform_id IS NOT NULL")
    op.create_index(
        "messages_platform_in",
        "messages",
        ["channel", "platform_id"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id")),
        sa.Column("helpful", sa.Integer),
        sa.Column("comment", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("created_at", sa.Text),
    )
    op.create_index("idx_feedback_message_id", "feedback", ["message_id"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("messages")
    op.drop_table("conversations")
