"""Notifications tables: participants, sealed contacts, form status, timepoints, messages,
staff tasks, and the reminder cap enforced by the database.

The cap (reminders.max_per_timepoint) is read from the protocol file when this migration
runs and written as a literal into a CHECK constraint, next to unique
(record, timepoint, attempt). Why a CHECK with a literal rather than a trigger reading a
settings table: a CHECK is the same portable SQL on SQLite and PostgreSQL, no writer
(not even this service) can bypass or change it at run time, and changing the number of
reminders participants may receive is a protocol amendment, which deserves a reviewed
migration. The number is also stored in `reminder_cap`; the service refuses to start when
the protocol and the database disagree, naming `reminders.max_per_timepoint`.

Revision ID: notifications_0002
Revises: notifications_0001
"""

import sqlalchemy as sa
from alembic import op

from services.core.settings import settings

revision = "notifications_0002"
down_revision = "notifications_0001"
branch_labels = None
depends_on = None

STATES = ("scheduled", "claimed", "sent", "delivered", "failed", "undelivered", "cancelled",
          "unknown")


def upgrade() -> None:
    cap = settings().protocol().reminders.max_per_timepoint
    op.create_table(
        "reminder_cap",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("max_per_timepoint", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_reminder_cap_single_row"),
    )
    op.bulk_insert(sa.table("reminder_cap", sa.column("id", sa.Integer),
                            sa.column("max_per_timepoint", sa.Integer)),
                   [{"id": 1, "max_per_timepoint": cap}])
    op.create_table(
        "participant",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("allocation_number", sa.String(), nullable=False),
        sa.Column("allocated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("diary", sa.Boolean(), nullable=False),
        sa.Column("diary_first_day", sa.Date(), nullable=True),
        sa.Column("diary_horizon", sa.Integer(), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "contact",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "form_status",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("event", sa.String(), primary_key=True),
        sa.Column("form", sa.String(), primary_key=True),
        sa.Column("complete", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "timepoint",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("record", sa.String(), nullable=False, index=True),
        sa.Column("timepoint", sa.String(), nullable=False),
        sa.Column("redcap_event", sa.String(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("record", "timepoint", name="uq_timepoint_record"),
    )
    _create_message(cap)
    op.create_table(
        "staff_task",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_key", sa.String(), sa.ForeignKey("message.key"), nullable=False,
                  unique=True),
        sa.Column("record", sa.String(), nullable=False, index=True),
        sa.Column("timepoint", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(), nullable=False, index=True),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("channel IN ('phone', 'letter')", name="ck_staff_task_channel"),
        sa.CheckConstraint("state IN ('open', 'claimed', 'done', 'cancelled')",
                           name="ck_staff_task_state"),
    )


def _create_message(cap: int) -> None:
    states = ", ".join(f"'{s}'" for s in STATES)
    op.create_table(
        "message",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("record", sa.String(), nullable=False, index=True),
        sa.Column("timepoint", sa.String(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=True),
        sa.Column("ref", sa.String(), nullable=True),
        sa.Column("facts", sa.Text(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_ref", sa.String(), nullable=True, index=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("cancel_reason", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("record", "timepoint", "attempt", name="uq_message_reminder_attempt"),
        sa.CheckConstraint(f"attempt IS NULL OR (attempt BETWEEN 1 AND {int(cap)})",
                           name="ck_message_reminder_cap"),
        sa.CheckConstraint(
            "kind <> 'reminder' OR (attempt IS NOT NULL AND timepoint IS NOT NULL)",
            name="ck_message_reminder_numbered"),
        sa.CheckConstraint("kind IN ('reminder', 'diary_prompt', 'safety_notice')",
                           name="ck_message_kind"),
        sa.CheckConstraint("channel IN ('email', 'sms', 'phone', 'letter')",
                           name="ck_message_channel"),
        sa.CheckConstraint(f"state IN ({states})", name="ck_message_state"),
    )
    op.create_index("ix_message_due", "message", ["state", "not_before"])


def downgrade() -> None:
    for table in ("staff_task", "message", "timepoint", "form_status", "contact",
                  "participant", "reminder_cap"):
        op.drop_table(table)
