"""Customer segments and the indexes retention and erasure read by.

- ``messages.segment``: the segment a bank's backend names with a customer's message (``retail``,
  ``premier``, ...), so positioning can measure P(D|U) per segment (issue #16).
- ``idx_messages_created_at``: the retention sweep deletes by age; ``idx_messages_channel_user_id``:
  erasure finds one customer's messages. Both were full scans.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("segment", sa.Text))
    op.create_index("idx_messages_created_at", "messages", ["created_at"])
    op.create_index("idx_messages_channel_user_id", "messages", ["channel", "user_id"])


def downgrade() -> None:
    op.drop_index("idx_messages_channel_user_id", table_name="messages")
    op.drop_index("idx_messages_created_at", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("segment")
