"""At most one pending REDCap trigger per form: a form key, a merge counter and a partial
unique index on pending rows. Duplicates already pending are collapsed first (the oldest
stays; the others are marked `merged`), so the index can be built.

Revision ID: gateway_0004
Revises: gateway_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0004"
down_revision = "gateway_0003"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("redcap_trigger") as batch:
        batch.add_column(sa.Column("form_key", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT id, project_id, record, event, instrument, repeat_instance, status "
        "FROM redcap_trigger ORDER BY received_at")).all()
    seen: set[str] = set()
    for row in rows:
        key = f"{row.project_id}|{row.record}|{row.event or ''}|{row.instrument}|{row.repeat_instance or 0}"
        status = row.status
        if status == "pending":
            status = "merged" if key in seen else status
            seen.add(key)
        conn.execute(sa.text("UPDATE redcap_trigger SET form_key = :k, status = :s WHERE id = :id"),
                     {"k": key, "s": status, "id": row.id})
    op.create_index("ux_redcap_trigger_pending_form", "redcap_trigger", ["form_key"], unique=True,
                    sqlite_where=PENDING, postgresql_where=PENDING)


def downgrade() -> None:
    op.drop_index("ux_redcap_trigger_pending_form", "redcap_trigger")
    with op.batch_alter_table("redcap_trigger") as batch:
        batch.drop_column("revision")
        batch.drop_column("form_key")
