"""Where erased customers' open handoffs were relayed, so an operator's later reply is not lost
without a word.

- ``erased_threads``: the ops-channel thread (channel id and thread ts) of each handoff that was
  open when its customer was erased (:mod:`bot.privacy.erasure`), and when. Nothing of the
  customer's: no id, pseudonym, conversation or words. An operator who replies in the thread
  afterwards is told there that the reply was not delivered because the customer's data was erased
  (:meth:`bot.ops_desk.OpsDesk.operator_reply`); retention removes a row after its cutoff.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_threads",
        sa.Column("ops_channel", sa.Text, primary_key=True),
        sa.Column("thread_ts", sa.Text, primary_key=True),
        sa.Column("erased_at", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erased_threads")
