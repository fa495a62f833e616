"""REDCap integration: durable Data Entry Triggers, snapshots for duplicate suppression,
write-backs to REDCap, reconciliation sweep state.

Revision ID: gateway_0003
Revises: gateway_0002
"""

import sqlalchemy as sa
from alembic import op

from services.core.migrations import utc_column

revision = "gateway_0003"
down_revision = "gateway_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "redcap_trigger",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("source", sa.String(), nullable=False),  # det | sweep
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("record", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=True),
        sa.Column("instrument", sa.String(), nullable=False),
        sa.Column("repeat_instance", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        utc_column("received_at", nullable=False),
        sa.Column("status", sa.String(), nullable=False),  # pending | published | unchanged | failed
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        utc_column("next_attempt_at", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        utc_column("done_at", nullable=True),
    )
    op.create_index("ix_redcap_trigger_due", "redcap_trigger", ["status", "next_attempt_at"])
    op.create_table(
        "redcap_snapshot",
        sa.Column("project_id", sa.Integer(), primary_key=True),
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("event", sa.String(), primary_key=True),
        sa.Column("instrument", sa.String(), primary_key=True),
        sa.Column("repeat_instance", sa.Integer(), primary_key=True),
        sa.Column("data_hash", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        utc_column("updated_at", nullable=False),
    )
    op.create_table(
        "redcap_write",
        sa.Column("id", sa.String(), primary_key=True),  # the source event's id
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("record", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=True),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),  # pending | written | failed
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        utc_column("next_attempt_at", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        utc_column("created_at", nullable=False),
        utc_column("written_at", nullable=True),
        sa.Column("correlation_id", sa.String(), nullable=True),
    )
    op.create_index("ix_redcap_write_due", "redcap_write", ["status", "next_attempt_at"])
    op.create_table(
        "redcap_sweep",
        sa.Column("project_id", sa.Integer(), primary_key=True),
        utc_column("swept_until", nullable=False),
        utc_column("last_run_at", nullable=False),
    )


def downgrade() -> None:
    for table in ("redcap_sweep", "redcap_write", "redcap_snapshot", "redcap_trigger"):
        op.drop_table(table)
