"""Allocation tables: predictions, withdrawals seen, review requests.

Revision ID: allocation_0002
Revises: allocation_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "allocation_0002"
down_revision = "allocation_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction",
        # the primary key makes "one prediction per participant" a database fact
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("scales", sa.JSON(), nullable=False),
        sa.Column("t_scores", sa.JSON(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("cluster", sa.String(), nullable=False),
        sa.Column("low_confidence", sa.Boolean(), nullable=False),
        sa.Column("age", sa.Float(), nullable=False),
        sa.Column("sex", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("correlation_id", sa.String(), nullable=False),
        sa.Column("trigger_event_id", sa.String(), nullable=False),
    )
    op.create_table(
        "withdrawal",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("event", sa.String(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger_event_id", sa.String(), nullable=False),
    )
    op.create_table(
        "review_request",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("record", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("correlation_id", sa.String(), nullable=False),
        sa.Column("trigger_event_id", sa.String(), nullable=False),
        sa.UniqueConstraint("record", "reason", name="uq_review_request_record_reason"),
    )
    op.create_index("ix_review_request_record", "review_request", ["record"])


def downgrade() -> None:
    op.drop_index("ix_review_request_record", table_name="review_request")
    op.drop_table("review_request")
    op.drop_table("withdrawal")
    op.drop_table("prediction")
