"""When each review item was claimed for posting to the ops channel, so that it is posted once.

- ``review_items``: ``posted_at`` (ISO time; None: never posted). The replica about to post a new
  item sets it with one conditional update (``WHERE posted_at IS NULL``), and only the one whose
  update took it posts (:meth:`bot.storage.review.ReviewRepository.claim_post`); a post that fails
  gives the claim back. Before this, an item filed again for the same reply, or filed by two
  replicas at once, was posted to the ops channel again. Items stored before this revision count as
  posted when they were created (they were posted then, or left in the queue by the post limit or
  for want of an ops channel), so none is posted again after the upgrade. Nothing else changes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("review_items", sa.Column("posted_at", sa.Text, nullable=True))
    op.execute("UPDATE review_items SET posted_at = created_at")


def downgrade() -> None:
    """Teller never downgrades; on SQLite the table is rebuilt keeping its ids never reused (0012)."""
    with op.batch_alter_table("review_items", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("posted_at")
