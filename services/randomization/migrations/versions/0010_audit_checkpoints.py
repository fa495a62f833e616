"""Audit checkpoints (signed verified heads) and keyset indexes for filtered listings.

Revision ID: randomization_0010
Revises: randomization_0009

Frozen: written out in full rather than calling a helper.
"""

import sqlalchemy as sa
from alembic import op

revision = "randomization_0010"
down_revision = "randomization_0009"
branch_labels = None
depends_on = None

# Each listing filter followed by seq: `WHERE col = ? AND seq > ? ORDER BY seq LIMIT n`.
KEYSET = ("action", "actor", "entity_type", "entity_id", "record")
REPLACED = ("action", "entity_id", "record")  # single-column indexes the pairs start with


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("signature", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    for name in REPLACED:
        op.drop_index(f"ix_audit_entry_{name}", table_name="audit_entry")
    for name in KEYSET:
        op.create_index(f"ix_audit_entry_{name}_seq", "audit_entry", [name, "seq"])
    op.create_index("ix_audit_entry_at", "audit_entry", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_entry_at", table_name="audit_entry")
    for name in KEYSET:
        op.drop_index(f"ix_audit_entry_{name}_seq", table_name="audit_entry")
    for name in REPLACED:
        op.create_index(f"ix_audit_entry_{name}", "audit_entry", [name])
    op.drop_table("audit_checkpoint")
