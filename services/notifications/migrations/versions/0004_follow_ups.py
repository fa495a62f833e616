"""Follow-ups: staff tasks for an e-mail of unknown outcome and for alarms other services
publish (unscorable baseline, emergency unblinding, stratum running low, ...).

Revision ID: notifications_0004
Revises: notifications_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "notifications_0004"
down_revision = "notifications_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "follow_up",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(), nullable=False, unique=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("record", sa.String(), nullable=True),
        sa.Column("message_key", sa.String(), nullable=True),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("resolution", sa.String(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("resolved_by", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_follow_up_record", "follow_up", ["record"])
    op.create_index("ix_follow_up_state", "follow_up", ["state"])


def downgrade() -> None:
    op.drop_table("follow_up")
