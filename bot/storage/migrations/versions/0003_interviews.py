"""Positioning interviews move into the one store (they were a file of their own, ``positioning.db``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interviews",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text),
        sa.Column("script_id", sa.Text),
        sa.Column("status", sa.Text),
        sa.Column("state", sa.Text),
        sa.Column("created_at", sa.Text),
        sa.Column("updated_at", sa.Text),
    )
    op.create_index("idx_interviews_user_id_updated_at", "interviews", ["user_id", "updated_at"])


def downgrade() -> None:
    op.drop_table("interviews")
