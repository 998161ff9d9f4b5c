"""Feedback sent as a message's text, recorded once however often the message comes.

- ``feedback``: ``channel`` and ``platform_id`` of the message that carried the feedback, when a
  client sent a feedback value (``feedback:helpful``) as a message's text instead of pressing a
  button or calling ``POST /api/feedback`` (None for those). Unique per channel: a platform's
  redelivery, or a retry with the same ``client_message_id`` (stored as its keyed digest, as in
  ``messages``), is acknowledged as the first time instead of recorded again or refused as a second
  verdict. Removed with the feedback (erasure, retention).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("feedback", sa.Column("channel", sa.Text, nullable=True))
    op.add_column("feedback", sa.Column("platform_id", sa.Text, nullable=True))
    op.create_index(
        "feedback_platform",
        "feedback",
        ["channel", "platform_id"],
        unique=True,
        sqlite_where=sa.text("platform_id IS NOT NULL"),
        postgresql_where=sa.text("platform_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("feedback_platform", table_name="feedback")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("platform_id")
        batch.drop_column("channel")
