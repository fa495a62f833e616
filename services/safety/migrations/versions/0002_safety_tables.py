"""Safety tables: cases and their append-only versions, REDCap instances, obligations,
candidate AEs, questionnaire scores, allocated participants (module, never arm).

Revision ID: safety_0002
Revises: safety_0001
"""

import sqlalchemy as sa
from alembic import op

from services.core.migrations import make_append_only
from services.core.migrations import utc_column as _utc

revision = "safety_0002"
down_revision = "safety_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "safety_case",
        sa.Column("case_id", sa.String(), primary_key=True),
        sa.Column("record", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        _utc("created_at"),
        _utc("updated_at"),
    )
    op.create_index("ix_safety_case_record", "safety_case", ["record"])
    op.create_table(
        "safety_case_version",
        sa.Column("case_id", sa.String(), sa.ForeignKey("safety_case.case_id"), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("event_sha256", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        _utc("received_at"),
        sa.Column("recorded_by", sa.String(), nullable=False),
        sa.Column("recorded_role", sa.String(), nullable=False),
        _utc("recorded_at"),
    )
    op.create_table(
        "safety_redcap_instance",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("redcap_event", sa.String(), primary_key=True),
        sa.Column("repeat_instance", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("case_id", sa.String(), sa.ForeignKey("safety_case.case_id"), nullable=False,
                  unique=True),
    )
    op.create_table(
        "safety_obligation",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("key", sa.String(), nullable=False, unique=True),
        sa.Column("case_id", sa.String(), sa.ForeignKey("safety_case.case_id"), nullable=False),
        sa.Column("record", sa.String(), nullable=False),
        sa.Column("rule_key", sa.String(), nullable=False),
        sa.Column("recipients", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("follow_up", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        _utc("started_at"),
        _utc("deadline_at"),
        _utc("escalate_at"),
        _utc("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.String(), nullable=True),
        _utc("sent_at", nullable=True),
        sa.Column("sent_by", sa.String(), nullable=True),
        _utc("escalated_at", nullable=True),
        _utc("overdue_at", nullable=True),
        _utc("created_at"),
    )
    op.create_index("ix_safety_obligation_case_id", "safety_obligation", ["case_id"])
    op.create_index("ix_safety_obligation_record", "safety_obligation", ["record"])
    op.create_index("ix_safety_obligation_status", "safety_obligation", ["status"])
    op.create_table(
        "safety_candidate",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("key", sa.String(), nullable=False, unique=True),
        sa.Column("record", sa.String(), nullable=False),
        sa.Column("instrument", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("effects", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        _utc("created_at"),
        _utc("updated_at"),
        sa.Column("triaged_by", sa.String(), nullable=True),
        _utc("triaged_at", nullable=True),
        sa.Column("triage_note", sa.String(), nullable=True),
        sa.Column("case_id", sa.String(), sa.ForeignKey("safety_case.case_id"), nullable=True),
    )
    op.create_index("ix_safety_candidate_record", "safety_candidate", ["record"])
    op.create_index("ix_safety_candidate_status", "safety_candidate", ["status"])
    op.create_table(
        "safety_questionnaire_score",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("record", sa.String(), nullable=False),
        sa.Column("instrument", sa.String(), nullable=False),
        sa.Column("redcap_event", sa.String(), nullable=False),
        sa.Column("repeat_instance", sa.Integer(), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.Column("scores", sa.Text(), nullable=False),
        _utc("scored_at"),
        sa.UniqueConstraint("record", "instrument", "redcap_event", "repeat_instance",
                            name="uq_safety_questionnaire_score_instance"),
    )
    op.create_index("ix_safety_questionnaire_score_record", "safety_questionnaire_score", ["record"])
    op.create_table(
        "safety_participant",
        sa.Column("record", sa.String(), primary_key=True),
        sa.Column("module", sa.String(), nullable=False),
        sa.Column("allocation_number", sa.String(), nullable=False),
        _utc("allocated_at"),
        _utc("updated_at"),
    )
    make_append_only("safety_case_version")  # history: never updated, never deleted


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tailor_safety_case_version_append_only() CASCADE")
    for table in ("safety_participant", "safety_questionnaire_score", "safety_candidate",
                  "safety_obligation", "safety_redcap_instance", "safety_case_version",
                  "safety_case"):
        op.drop_table(table)
