"""Randomization tables: lists, sealed slots, stratum counters, commitments, allocations.

Revision ID: randomization_0002
Revises: randomization_0001
"""

import sqlalchemy as sa
from alembic import op

from services.core.migrations import utc_column as _utc

revision = "randomization_0002"
down_revision = "randomization_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "randomization_list",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("design", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("seed_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_role", sa.String(), nullable=False),
        _utc("created_at"),
        sa.Column("sealed_by", sa.String(), nullable=True),
        _utc("sealed_at", True),
        sa.Column("unseal_requested_by", sa.String(), nullable=True),
        sa.Column("unseal_requested_role", sa.String(), nullable=True),
        _utc("unseal_requested_at", True),
        sa.Column("unsealed_by", sa.String(), nullable=True),
        _utc("unsealed_at", True),
    )
    # At most one list allocates at a time: the sealed one.
    op.create_index("uq_randomization_list_one_sealed", "randomization_list", ["status"], unique=True,
                    postgresql_where=sa.text("status = 'sealed'"),
                    sqlite_where=sa.text("status = 'sealed'"))
    op.create_table(
        "sealed_slot",
        sa.Column("list_id", sa.String(), sa.ForeignKey("randomization_list.id"), nullable=False),
        sa.Column("stratum_ref", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.Column("used_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("list_id", "stratum_ref", "seq", name="pk_sealed_slot"),
        sa.UniqueConstraint("list_id", "used_by", name="uq_sealed_slot_one_per_participant"),
    )
    op.create_table(
        "stratum_counter",
        sa.Column("list_id", sa.String(), sa.ForeignKey("randomization_list.id"), nullable=False),
        sa.Column("stratum_ref", sa.String(), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("low_alarm", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("list_id", "stratum_ref", name="pk_stratum_counter"),
    )
    op.create_table(
        "list_commitment",
        sa.Column("list_id", sa.String(), sa.ForeignKey("randomization_list.id"), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        _utc("created_at"),
        sa.PrimaryKeyConstraint("list_id", "batch", name="pk_list_commitment"),
    )
    op.create_table(
        "allocation",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("allocation_number", sa.String(), nullable=False, unique=True),
        sa.Column("module", sa.String(), nullable=False),
        sa.Column("list_id", sa.String(), sa.ForeignKey("randomization_list.id"), nullable=False),
        sa.Column("pilot", sa.Boolean(), nullable=False),
        sa.Column("sealed_detail", sa.LargeBinary(), nullable=False),
        sa.Column("detail_digest", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("allocated_by", sa.String(), nullable=False),
        _utc("allocated_at"),
        sa.Column("correlation_id", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
    )
    op.create_index("ix_allocation_allocated_at", "allocation", ["allocated_at"])
    op.create_table(
        "randomization_counter",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False),
    )
    op.bulk_insert(sa.table("randomization_counter", sa.column("name", sa.String()),
                            sa.column("value", sa.Integer())),
                   [{"name": "allocation_number", "value": 0}])


def downgrade() -> None:
    for table in ("randomization_counter", "allocation", "list_commitment", "stratum_counter",
                  "sealed_slot"):
        op.drop_table(table)
    op.drop_index("uq_randomization_list_one_sealed", table_name="randomization_list")
    op.drop_table("randomization_list")
