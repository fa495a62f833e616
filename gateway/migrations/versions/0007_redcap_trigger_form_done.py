"""Index of a form's done triggers: when it was last fetched (DET replay coalescing).

Revision ID: gateway_0007
Revises: gateway_0006
"""

from alembic import op

revision = "gateway_0007"
down_revision = "gateway_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_redcap_trigger_form_done", "redcap_trigger", ["form_key", "done_at"])


def downgrade() -> None:
    op.drop_index("ix_redcap_trigger_form_done", table_name="redcap_trigger")
