"""Parked allocation requests: participants who wait for a sealed list or a free slot.

Revision ID: randomization_0004
Revises: randomization_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "randomization_0004"
down_revision = "randomization_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parked_allocation",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("sealed_request", sa.LargeBinary(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("parked_allocation")
