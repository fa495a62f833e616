"""Reports read model: participants' flow facts, form saves, completed timepoints, NEQ counts,
adverse events (counts and states only; never arm or cluster).

Revision ID: reports_0002
Revises: reports_0001
"""

import sqlalchemy as sa
from alembic import op

from services.core.migrations import utc_column as _utc

revision = "reports_0002"
down_revision = "reports_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reports_participant",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("first_seen", sa.Date(), nullable=False),
        sa.Column("screened_on", sa.Date()),
        sa.Column("site", sa.String()),
        sa.Column("eligible", sa.Boolean()),
        sa.Column("consent", sa.Boolean()),
        sa.Column("consented_on", sa.Date()),
        _utc("randomized_at", nullable=True),
        sa.Column("module", sa.String()),
        sa.Column("withdrawn_on", sa.Date()),
        sa.Column("withdrawal_event", sa.String()),
        sa.Column("withdrawal_reason", sa.String()),
        sa.Column("preventable", sa.Boolean()),
    )
    op.create_table(
        "reports_form",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("event", sa.String(), primary_key=True),
        sa.Column("instrument", sa.String(), primary_key=True),
        sa.Column("instance", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("complete_status", sa.Integer(), nullable=False),
        _utc("saved_at"),
    )
    op.create_table(
        "reports_timepoint",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("timepoint", sa.String(), primary_key=True),
        _utc("completed_at"),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
    )
    op.create_table(
        "reports_neq",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("timepoint", sa.String(), primary_key=True),
        sa.Column("effects", sa.Integer(), nullable=False),
        sa.Column("attributed_to_treatment", sa.Integer(), nullable=False),
    )
    op.create_table(
        "reports_adverse_event",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("serious", sa.Boolean(), nullable=False),
        sa.Column("reported_on", sa.Date(), nullable=False),
    )


def downgrade() -> None:
    for table in ("reports_adverse_event", "reports_neq", "reports_timepoint", "reports_form",
                  "reports_participant"):
        op.drop_table(table)
