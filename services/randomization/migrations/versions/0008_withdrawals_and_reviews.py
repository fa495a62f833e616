"""Designs without a prediction step: withdrawals seen in any event, baselines to review.

Revision ID: randomization_0008
Revises: randomization_0007
"""

import sqlalchemy as sa
from alembic import op

revision = "randomization_0008"
down_revision = "randomization_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "withdrawal_seen",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("event", sa.String(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger_event_id", sa.String(), nullable=False),
    )
    op.create_table(
        "baseline_review",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("reason", sa.String(), primary_key=True),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger_event_id", sa.String(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("baseline_review")
    op.drop_table("withdrawal_seen")
