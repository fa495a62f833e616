"""Messages of kind `staff_alert`: the e-mail to the trial's contacts that goes with a
follow-up (an unscorable baseline, an emergency unblinding, ...).

Revision ID: notifications_0005
Revises: notifications_0004
"""

from alembic import op

revision = "notifications_0005"
down_revision = "notifications_0004"
branch_labels = None
depends_on = None

OLD = "kind IN ('reminder', 'diary_prompt', 'safety_notice')"
NEW = "kind IN ('reminder', 'diary_prompt', 'safety_notice', 'staff_alert')"


def _kinds(check: str) -> None:
    # SQLite cannot alter a CHECK: batch mode copies the table with its other constraints
    # (run_migrations turns SQLite's foreign keys off meanwhile and checks them after).
    with op.batch_alter_table("message") as batch:
        batch.drop_constraint("ck_message_kind", type_="check")
        batch.create_check_constraint("ck_message_kind", check)


def upgrade() -> None:
    _kinds(NEW)


def downgrade() -> None:
    _kinds(OLD)
