"""Diary prompts per participant and ISO week: sent, answered in time (diary adherence).

Revision ID: reports_0006
Revises: reports_0005

Frozen: written out in full rather than calling a helper.
"""

import sqlalchemy as sa
from alembic import op

revision = "reports_0006"
down_revision = "reports_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reports_diary_week",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("week", sa.String(), primary_key=True),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("prompts_sent", sa.Integer(), nullable=False),
        sa.Column("answered_in_time", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reports_diary_week")
