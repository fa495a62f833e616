"""Multi-stage (SMART) designs: later-stage allocations, what their rules read, and the
decisions that wait for a list or a free slot.

Revision ID: randomization_0009
Revises: randomization_0008

Frozen: written out in full rather than calling a helper.
"""

import sqlalchemy as sa
from alembic import op

revision = "randomization_0009"
down_revision = "randomization_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_allocation",
        sa.Column("record", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("stage_number", sa.String(), nullable=False, unique=True),
        sa.Column("list_id", sa.String(), sa.ForeignKey("randomization_list.id"), nullable=False),
        sa.Column("sealed_detail", sa.LargeBinary(), nullable=False),
        sa.Column("detail_digest", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("allocated_by", sa.String(), nullable=False),
        sa.Column("allocated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("correlation_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("record", "stage", name="pk_stage_allocation"),
    )
    op.create_table(
        "stage_participant",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("baseline", sa.Text(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "parked_stage",
        sa.Column("record", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("sealed_request", sa.LargeBinary(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("record", "stage", name="pk_parked_stage"),
    )


def downgrade() -> None:
    op.drop_table("parked_stage")
    op.drop_table("stage_participant")
    op.drop_table("stage_allocation")
