"""Outbox positions from a database sequence on PostgreSQL.

`MAX(position) + 1` gave two concurrent transactions the same position; a sequence never
does. SQLite serialises writers, so the service keeps numbering rows itself there.

Revision ID: reports_0003
Revises: reports_0002
"""

from alembic import op

revision = "reports_0003"
down_revision = "reports_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE outbox_message_position_seq OWNED BY outbox_message.position")
    op.execute("SELECT setval('outbox_message_position_seq', "
               "COALESCE((SELECT MAX(position) FROM outbox_message), 0) + 1, false)")
    op.execute("ALTER TABLE outbox_message ALTER COLUMN position "
               "SET DEFAULT nextval('outbox_message_position_seq')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE outbox_message ALTER COLUMN position DROP DEFAULT")
    op.execute("DROP SEQUENCE outbox_message_position_seq")
