"""Kernel tables of the reports database: outbox, inbox, audit chain.

Revision ID: reports_0001
Revises:

Frozen: written out in full rather than calling a helper, so that changing the kernel
later never rewrites this revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "reports_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
    )
    op.create_index("ix_outbox_message_sent_at", "outbox_message", ["sent_at"])
    op.create_index("ix_outbox_message_position", "outbox_message", ["position"])
    op.create_table(
        "inbox_entry",
        sa.Column("consumer", sa.String(), primary_key=True),
        sa.Column("event_id", sa.String(), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "audit_entry",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("entity_id", sa.String(), nullable=False),
        sa.Column("record", sa.String(), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("correlation_id", sa.String(), nullable=True),
        sa.Column("prev_hash", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False, unique=True),
    )
    op.create_index("ix_audit_entry_action", "audit_entry", ["action"])
    op.create_index("ix_audit_entry_entity_id", "audit_entry", ["entity_id"])
    op.create_index("ix_audit_entry_record", "audit_entry", ["record"])
    # The audit chain is append-only in the database itself.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""CREATE OR REPLACE FUNCTION tailor_audit_entry_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN
              RAISE EXCEPTION 'audit_entry is append-only' USING ERRCODE = 'insufficient_privilege';
            END $$""")
        op.execute("""CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry
            FOR EACH ROW EXECUTE FUNCTION tailor_audit_entry_append_only()""")
        op.execute("""CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry
            FOR EACH STATEMENT EXECUTE FUNCTION tailor_audit_entry_append_only()""")
    else:
        op.execute("""CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry
            BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END""")
        op.execute("""CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry
            BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END""")


def downgrade() -> None:
    for table in ("audit_entry", "inbox_entry", "outbox_message"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tailor_audit_entry_append_only() CASCADE")
