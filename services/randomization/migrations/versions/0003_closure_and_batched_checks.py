"""Closing allocation before unsealing (who, when, why), the reasons of the two unsealing
persons, and where the batched low-slot check last looked.

Revision ID: randomization_0003
Revises: randomization_0002
"""

import sqlalchemy as sa
from alembic import op

from services.core.migrations import utc_column as _utc

revision = "randomization_0003"
down_revision = "randomization_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("randomization_list") as table:
        table.add_column(sa.Column("closed_by", sa.String(), nullable=True))
        table.add_column(_utc("closed_at", True))
        table.add_column(sa.Column("close_reason", sa.Text(), nullable=True))
        table.add_column(sa.Column("unseal_request_reason", sa.Text(), nullable=True))
        table.add_column(sa.Column("unseal_confirm_reason", sa.Text(), nullable=True))
        table.add_column(sa.Column("low_check_used", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("randomization_list") as table:
        for name in ("low_check_used", "unseal_confirm_reason", "unseal_request_reason",
                     "close_reason", "closed_at", "closed_by"):
            table.drop_column(name)
