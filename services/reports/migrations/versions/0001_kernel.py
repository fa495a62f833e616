"""Kernel tables of the reports database: outbox, inbox, audit chain.

Revision ID: reports_0001
Revises:
"""

from services.core.migrations import create_kernel_tables, drop_kernel_tables

revision = "reports_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_tables()


def downgrade() -> None:
    drop_kernel_tables()
