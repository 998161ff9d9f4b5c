"""An index for a customer's feedback.

- ``feedback``: ``user_id``. Erasure (``teller erase``, the web chat's "Delete my conversation")
  and ``teller access`` find a customer's feedback by its author; without an index each of them
  read the whole table (a review measured about 0.3 s per erasure at 200,000 feedback rows).
  Nothing else changes.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("idx_feedback_user_id", "feedback", ["user_id"])


def downgrade() -> None:
    op.drop_index("idx_feedback_user_id", table_name="feedback")
