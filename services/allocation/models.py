"""Tables the allocation service owns.

The cluster is unblinding data: it is stored here (and travels only in
`cluster_assigned`, which only randomization reads), never in the audit trail.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from services.core.db import UtcDateTime


class ParticipantPrediction(SQLModel, table=True):
    """The one prediction of a participant: made once, never changed."""

    __tablename__ = "prediction"

    record: str = Field(primary_key=True)
    scales: dict[str, float] = Field(sa_column=Column(JSON, nullable=False))
    t_scores: dict[str, float] = Field(sa_column=Column(JSON, nullable=False))
    probabilities: dict[str, float] = Field(sa_column=Column(JSON, nullable=False))
    cluster: str
    low_confidence: bool
    age: float
    sex: int
    model_version: str
    model_sha256: str
    # Random per prediction and kept here only: with three possible clusters, an unsalted
    # digest in the audit trail could be reversed by trying each one.
    salt: str
    digest: str
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    correlation_id: str
    trigger_event_id: str


class WithdrawalSeen(SQLModel, table=True):
    """A participant marked withdrawn in REDCap: never allocated while the mark stands."""

    __tablename__ = "withdrawal"

    record: str = Field(primary_key=True)
    event: str | None = None
    seen_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    trigger_event_id: str


class ReviewRequest(SQLModel, table=True):
    """A baseline that cannot be scored (or holds an invalid value): one per problem."""

    __tablename__ = "review_request"
    __table_args__ = (UniqueConstraint("record", "reason", name="uq_review_request_record_reason"),)

    id: int | None = Field(default=None, primary_key=True)
    record: str = Field(index=True)
    reason: str
    field: str | None = None
    detail: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    correlation_id: str
    trigger_event_id: str
