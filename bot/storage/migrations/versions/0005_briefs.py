"""Positioning briefs: every brief written, kept (its Markdown and its score), not only as files.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "briefs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("interview_id", sa.Text, sa.ForeignKey("interviews.id"), nullable=False),
        sa.Column("user_id", sa.Text),
        sa.Column("days", sa.Integer),
        sa.Column("markdown", sa.Text, nullable=False),
        sa.Column("score", sa.Text, nullable=False),
        sa.Column("written_at", sa.Text, nullable=False),
    )
    op.create_index("idx_briefs_interview_id_id", "briefs", ["interview_id", "id"])


def downgrade() -> None:
    op.drop_table("briefs")
