"""Whether a participant started the allocated module ("received allocated intervention").

Revision ID: reports_0004
Revises: reports_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "reports_0004"
down_revision = "reports_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reports_participant", sa.Column("received_on", sa.Date()))
    op.add_column("reports_participant", sa.Column("received_event", sa.String()))


def downgrade() -> None:
    op.drop_column("reports_participant", "received_event")
    op.drop_column("reports_participant", "received_on")
