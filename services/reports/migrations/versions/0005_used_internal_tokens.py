"""Internal-token ids already accepted, shared by every replica on this database.

Revision ID: reports_0005
Revises: reports_0004

Frozen: written out in full rather than calling a helper.
"""

import sqlalchemy as sa
from alembic import op

revision = "reports_0005"
down_revision = "reports_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_internal_token",
        sa.Column("jti", sa.String(), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_used_internal_token_expires_at", "used_internal_token", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_internal_token_expires_at", table_name="used_internal_token")
    op.drop_table("used_internal_token")
