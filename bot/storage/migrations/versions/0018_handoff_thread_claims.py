"""When a replica claimed posting a handoff's thread, so that a thread Slack refused is posted later,
once.

- ``handoffs``: ``thread_claimed_at`` (ISO time; None: nobody is posting it). The replica about to
  post a handoff's thread to the ops channel sets it with one conditional update (``WHERE
  thread_ts IS NULL`` and no claim younger than the lease), and only the one whose update took it
  posts (:meth:`bot.storage.handoffs.HandoffRepository.claim_thread`); a post the ops channel
  refuses gives the claim back, and every replica's handoff sweep posts the open handoffs left
  without a thread (:meth:`bot.ops_desk.OpsDesk.open_missing_threads`). Before this, a handoff
  whose first post failed (Slack down for longer than its client's retries) was never posted: the
  customer was told a colleague would reply, and their messages went nowhere. Existing rows keep
  None: an open handoff left without a thread by that defect is posted after the upgrade.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("handoffs", sa.Column("thread_claimed_at", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("thread_claimed_at")
