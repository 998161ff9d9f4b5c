"""Replicas: the active model, the knowledge base's change log and background jobs live in the database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployment",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text),
        sa.Column("updated_at", sa.Text),
        sa.Column("updated_by", sa.Text),
    )
    op.create_table(
        "kb_changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("payload", sa.Text),
        sa.Column("origin", sa.Text),
        sa.Column("at", sa.Text),
    )
    op.create_index("idx_kb_changes_kind_item_id", "kb_changes", ["kind", "item_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("params", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text),
        sa.Column("worker", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("created_at", sa.Text),
        sa.Column("started_at", sa.Text),
        sa.Column("finished_at", sa.Text),
    )
    op.create_index("idx_jobs_status_id", "jobs", ["status", "id"])


def downgrade() -> None:
    for table in ("jobs", "kb_changes", "deployment"):
        op.drop_table(table)
