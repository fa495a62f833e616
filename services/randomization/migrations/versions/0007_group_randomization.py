"""Group randomization: pre-formed groups and their members.

Revision ID: randomization_0007
Revises: randomization_0006

Frozen: written out in full rather than calling a helper.
"""

import sqlalchemy as sa
from alembic import op

revision = "randomization_0007"
down_revision = "randomization_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "randomization_group",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("sealed_levels", sa.LargeBinary(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("list_id", sa.String(), sa.ForeignKey("randomization_list.id"), nullable=True),
        sa.Column("module", sa.String(), nullable=True),
        sa.Column("sealed_detail", sa.LargeBinary(), nullable=True),
        sa.Column("detail_digest", sa.String(), nullable=True),
        sa.Column("closed_by", sa.String(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
    )
    op.create_table(
        "group_member",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("group_id", sa.String(), sa.ForeignKey("randomization_group.id"),
                  nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("review_reason", sa.String(), nullable=True),
    )
    op.create_index("ix_group_member_group", "group_member", ["group_id"])


def downgrade() -> None:
    op.drop_index("ix_group_member_group", table_name="group_member")
    op.drop_table("group_member")
    op.drop_table("randomization_group")
