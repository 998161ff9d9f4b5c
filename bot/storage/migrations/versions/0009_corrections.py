"""Corrections that spread: each correction records where it came from (``origin_id``, the correction
it was proposed from; ``message_id``, the stored customer message it is about), and the proposals
Teller makes when an operator corrects a message (stored customer messages likely to share that
need), each open until an operator confirms or rejects it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("corrections") as batch:
        batch.add_column(sa.Column("origin_id", sa.Integer))
        batch.add_column(sa.Column("message_id", sa.Text))
    op.create_table(
        "correction_proposals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("correction_id", sa.Integer, nullable=False),
        sa.Column("message_id", sa.Text),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("kb_id", sa.Text),
        sa.Column("score", sa.Float),
        sa.Column("base_similarity", sa.Float),
        sa.Column("model_similarity", sa.Float),
        sa.Column("model_intent", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_at", sa.Text),
        sa.Column("result_id", sa.Integer),
    )
    op.create_index(
        "idx_correction_proposals_correction_id_key",
        "correction_proposals",
        ["correction_id", "key"],
        unique=True,
    )
    op.create_index("idx_correction_proposals_status_id", "correction_proposals", ["status", "id"])
    op.create_index("idx_correction_proposals_key", "correction_proposals", ["key"])


def downgrade() -> None:
    op.drop_index("idx_correction_proposals_key", table_name="correction_proposals")
    op.drop_index("idx_correction_proposals_status_id", table_name="correction_proposals")
    op.drop_index("idx_correction_proposals_correction_id_key", table_name="correction_proposals")
    op.drop_table("correction_proposals")
    with op.batch_alter_table("corrections") as batch:
        batch.drop_column("message_id")
        batch.drop_column("origin_id")
