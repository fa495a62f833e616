"""Tables the randomization service owns.

What a reader of the database learns without the list key: each record's module and
allocation number (what blinded staff see anyway), when lists were made and sealed, and
how many slots each *opaque* stratum has and has used. Everything that unblinds is either
sealed with the key (slots, each allocation's cluster/arm/stratum/slot, the seed) or keyed
by an HMAC of it (stratum names, which participant used a slot), because a stratum is a
cluster and cluster + module reveals the arm. Slots carry no use time, so a slot cannot be
matched to an allocation by its timestamp.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from services.core.db import UtcDateTime


class ListStatus(StrEnum):
    GENERATED = "generated"  # encrypted at rest, commitment computed, not yet published
    SEALED = "sealed"  # commitment in the audit chain; the list allocates
    CLOSED = "closed"  # the study manager closed allocation (with a reason); may be unsealed
    UNSEALED = "unsealed"  # opened after closure by two persons; allocates no more


class ListSource(StrEnum):
    GENERATED = "generated"
    IMPORTED = "imported"


def _utc(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UtcDateTime(), nullable=nullable)


class RandomizationList(SQLModel, table=True):
    __tablename__ = "randomization_list"
    __table_args__ = (  # one list allocates at a time: at most one row is sealed
        Index("uq_randomization_list_one_sealed", "status", unique=True,
              postgresql_where=text("status = 'sealed'"), sqlite_where=text("status = 'sealed'")),
    )

    id: str = Field(primary_key=True)
    status: str
    source: str
    design: str = Field(sa_column=Column(Text, nullable=False))  # JSON snapshot of the protocol
    key_id: str  # fingerprint of the list key that sealed it
    seed_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_by: str
    created_role: str
    created_at: datetime = Field(sa_column=_utc())
    sealed_by: str | None = None
    sealed_at: datetime | None = Field(default=None, sa_column=_utc(True))
    unseal_requested_by: str | None = None
    unseal_requested_role: str | None = None
    unseal_requested_at: datetime | None = Field(default=None, sa_column=_utc(True))
    unsealed_by: str | None = None
    unsealed_at: datetime | None = Field(default=None, sa_column=_utc(True))
    closed_by: str | None = None
    closed_at: datetime | None = Field(default=None, sa_column=_utc(True))
    close_reason: str | None = Field(default=None, sa_column=Column(Text))
    unseal_request_reason: str | None = Field(default=None, sa_column=Column(Text))
    unseal_confirm_reason: str | None = Field(default=None, sa_column=Column(Text))
    # Slots used (all strata) when the batched low-slot check last looked at the strata.
    low_check_used: int = 0


class SealedSlotRow(SQLModel, table=True):
    __tablename__ = "sealed_slot"
    __table_args__ = (  # each participant uses one slot of a list
        UniqueConstraint("list_id", "used_by", name="uq_sealed_slot_one_per_participant"),
    )

    list_id: str = Field(primary_key=True, foreign_key="randomization_list.id")
    stratum_ref: str = Field(primary_key=True)  # ListKey.stratum_ref
    seq: int = Field(primary_key=True)
    batch: int
    nonce: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    used_by: str | None = None  # ListKey.participant_tag; unique per list


class StratumCounter(SQLModel, table=True):
    """One row per stratum of a list: the row allocation locks to take the next slot."""

    __tablename__ = "stratum_counter"

    list_id: str = Field(primary_key=True, foreign_key="randomization_list.id")
    stratum_ref: str = Field(primary_key=True)
    next_seq: int  # the slot the next participant of this stratum takes
    last_seq: int  # the stratum's last sealed slot
    low_alarm: bool = False  # raised since the last extension


class ListCommitmentRow(SQLModel, table=True):
    __tablename__ = "list_commitment"

    list_id: str = Field(primary_key=True, foreign_key="randomization_list.id")
    batch: int = Field(primary_key=True)
    root: str  # hex
    statement: str = Field(sa_column=Column(Text, nullable=False))  # BatchCommitment.statement()
    created_by: str
    created_at: datetime = Field(sa_column=_utc())


class AllocationRow(SQLModel, table=True):
    __tablename__ = "allocation"
    __table_args__ = (Index("ix_allocation_allocated_at", "allocated_at"),)

    record: str = Field(primary_key=True)
    allocation_number: str = Field(unique=True)
    module: str
    list_id: str = Field(foreign_key="randomization_list.id")
    pilot: bool
    # cluster, arm, stratum, seq, batch and a salt, sealed with the list key (AAD: record)
    sealed_detail: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    detail_digest: str  # SHA-256 of the salted detail: what the audit chain holds
    source: str  # event | manual
    allocated_by: str
    allocated_at: datetime = Field(sa_column=_utc())
    correlation_id: str | None = None
    reason: str | None = None


class NamedCounter(SQLModel, table=True):
    """Trial-wide counters (the allocation number), locked row by row."""

    __tablename__ = "randomization_counter"

    name: str = Field(primary_key=True)
    value: int


class ParkedAllocation(SQLModel, table=True):
    """An allocation request that waits for a sealed list or a free slot in its stratum.
    The request (it holds the cluster) is sealed like an allocation's detail; the row says
    only that the record waits, never why (an exhausted stratum beside a record would
    tell its cluster)."""

    __tablename__ = "parked_allocation"

    record: str = Field(primary_key=True)
    sealed_request: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    parked_at: datetime = Field(sa_column=_utc())
    attempts: int = 1


class StageAllocationRow(SQLModel, table=True):
    """A later-stage (SMART) allocation: one per participant and stage. Its option, outcome,
    first-stage arm, stratum and slot are sealed with the list key (the option is blinded)."""

    __tablename__ = "stage_allocation"

    record: str = Field(primary_key=True)
    stage: str = Field(primary_key=True)
    stage_number: str = Field(unique=True)
    list_id: str = Field(foreign_key="randomization_list.id")
    sealed_detail: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    detail_digest: str  # SHA-256 of the salted detail: what the audit chain holds
    source: str  # event | manual
    allocated_by: str
    allocated_at: datetime = Field(sa_column=_utc())
    correlation_id: str | None = None


class StageParticipant(SQLModel, table=True):
    """What the stage rules need from other REDCap events than the stage's own: the
    baseline value of each rule's baseline field (latest save) and the withdrawal flag."""

    __tablename__ = "stage_participant"

    record: str = Field(primary_key=True)
    baseline: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON field → value
    withdrawn: bool = False
    updated_at: datetime = Field(sa_column=_utc())


class ParkedStage(SQLModel, table=True):
    """A stage decision that waits for a sealed list or a free slot in its stage stratum;
    the request (it holds the participant's value) is sealed with the list key."""

    __tablename__ = "parked_stage"

    record: str = Field(primary_key=True)
    stage: str = Field(primary_key=True)
    sealed_request: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    parked_at: datetime = Field(sa_column=_utc())
    attempts: int = 1


class RandomizationGroup(SQLModel, table=True):
    """A pre-formed group (group randomization): open while members join, closed once
    randomized. Its stratum levels (what its first member's baseline said) are sealed like
    a parked request; once closed, its arm, stratum and slot are sealed like an
    allocation's detail, and `detail_digest` is what the audit chain holds."""

    __tablename__ = "randomization_group"

    id: str = Field(primary_key=True)  # the REDCap group field's value
    status: str  # domain.group.GroupStatus
    sealed_levels: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    opened_at: datetime = Field(sa_column=_utc())
    list_id: str | None = Field(default=None, foreign_key="randomization_list.id")
    module: str | None = None  # what every member receives (as blinded staff see it)
    sealed_detail: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    detail_digest: str | None = None
    closed_by: str | None = None
    closed_at: datetime | None = Field(default=None, sa_column=_utc(True))
    close_reason: str | None = Field(default=None, sa_column=Column(Text))


class GroupMember(SQLModel, table=True):
    """A participant's membership: one group per record, whatever is redelivered."""

    __tablename__ = "group_member"
    __table_args__ = (Index("ix_group_member_group", "group_id"),)

    record: str = Field(primary_key=True)
    group_id: str = Field(foreign_key="randomization_group.id")
    status: str  # domain.group.MemberStatus
    joined_at: datetime = Field(sa_column=_utc())
    review_reason: str | None = None  # domain.group.JoinOutcome for a held member


class WithdrawalSeen(SQLModel, table=True):
    """A design without a prediction step: a participant marked withdrawn in REDCap (in any
    event) is never allocated while the mark stands, as the allocation service keeps it
    for a personalized design."""

    __tablename__ = "withdrawal_seen"

    record: str = Field(primary_key=True)
    event: str | None = None
    seen_at: datetime = Field(sa_column=_utc())
    trigger_event_id: str


class BaselineReview(SQLModel, table=True):
    """A complete baseline whose stratification value is no level of its factor: staff
    must correct it in REDCap. One per (record, reason); the reason names the field."""

    __tablename__ = "baseline_review"

    record: str = Field(primary_key=True)
    reason: str = Field(primary_key=True)
    field: str
    detail: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=_utc())
    trigger_event_id: str
