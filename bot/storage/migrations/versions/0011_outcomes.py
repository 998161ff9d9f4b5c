"""Business outcomes of Teller's replies (issue #16).

- ``outcomes``: what happened after a reply, by name (``adviser_call_booked``, ...), recorded by the
  customer's button press ("Book an adviser call") or by a bank's backend (``POST /api/outcomes``).
  One row per reply and outcome name; positioning counts a need resolved by an outcome when the
  bank's rule for it says so. Removed with their message (erasure, retention).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    op.create_index("idx_outcomes_message_id_name", "outcomes", ["message_id", "name"], unique=True)


def downgrade() -> None:
    op.drop_index("idx_outcomes_message_id_name", table_name="outcomes")
    op.drop_table("outcomes")
