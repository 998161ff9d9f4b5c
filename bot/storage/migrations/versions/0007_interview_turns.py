"""Interview turns: the reply each platform message of a positioning interview got, so that a
redelivered message (a retry reaching another replica) gets the same reply instead of being
applied to the interview a second time.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interview_turns",
        sa.Column("channel", sa.Text, primary_key=True),
        sa.Column("platform_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("interview_turns")
