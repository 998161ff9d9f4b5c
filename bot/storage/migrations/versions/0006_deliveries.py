"""Deliveries: every message Teller pushes to a platform, with its delivery state; and why each
reply was given (``messages.reason``, the policy's reason: its rule, thresholds, and for a long
message the windows judged).

One row per outgoing message (a reply, an operator's relayed words, a notice): ``pending`` while it
is being sent, ``delivered`` with the platform's ids of the parts it was split into, or ``failed``
with the platform's reason. A failed reply is filed in the review queue (reason ``undelivered``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("parts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("platform_ids", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_index("idx_deliveries_state_updated_at", "deliveries", ["state", "updated_at"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("reason", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("reason")
    op.drop_table("deliveries")
