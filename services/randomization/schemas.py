"""Request and response models. Blinded and unblinded shapes are separate classes (none
inherits from another), chosen by the caller's role before anything is read."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]
RecordId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                                            pattern=r"^[A-Za-z0-9_.:-]+$")]


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ── lists ───────────────────────────────────────────────────────────────────────────


class ListGenerate(Schema):
    slots_per_stratum: int | None = Field(
        default=None, gt=0, le=100_000,
        description="rounded up to whole blocks; default: the protocol's initial_slots_per_stratum")


class ListExtend(Schema):
    stratum: Text = Field(description="stratum key, e.g. `DYS` or `DYS|site-a`")
    slots: int = Field(gt=0, le=100_000, description="at least this many new slots (whole blocks)")


class StratumFlagRead(Schema):
    stratum: str
    running_low: bool = Field(description="below the threshold at the last batched check")


class ListRead(Schema):
    """Statistician: the list with slot totals over all strata, and which strata ran low at
    the last batched check. Never used or free slots per stratum: polled across allocations,
    they would tell each new participant's stratum (= cluster)."""

    id: str
    status: str
    source: str
    key_id: str
    created_by: str
    created_at: datetime
    sealed_at: datetime | None
    closed_at: datetime | None
    unsealed_at: datetime | None
    unseal_requested_role: str | None
    low_slots_threshold: int
    low_slots_alarm_batch: int
    slots: int
    used: int
    free: int
    strata: list[StratumFlagRead]


class ListSummary(Schema):
    """Monitor and study manager: the list's life, no slot counts (they follow allocations)."""

    id: str
    status: str
    source: str
    key_id: str
    created_at: datetime
    sealed_at: datetime | None
    closed_at: datetime | None
    unsealed_at: datetime | None
    unseal_requested_role: str | None


class CloseAllocation(Schema):
    reason: Reason = Field(description="why allocation ends (recorded in the audit trail)")


class UnsealRequest(Schema):
    reason: Reason = Field(description="why the list is unsealed (each person gives one)")


class CommitmentRead(Schema):
    list_id: str
    digest: str = Field(description="SHA-256 of the statement as canonical JSON (in the audit chain)")
    statement: dict[str, Any]


class UnsealPendingRead(Schema):
    list_id: str
    status: Literal["awaiting_confirmation"] = "awaiting_confirmation"
    requested_by: str
    requested_role: str
    awaiting_roles: list[str]
    expires_at: datetime


class UnsealedDoneRead(Schema):
    """What the two unsealing persons learn: whether the list matches its commitment. The
    list itself (seed, arms) is read by unblinded roles at `GET /v1/lists/{id}/unsealed`."""

    list_id: str
    status: Literal["unsealed"] = "unsealed"
    commitment_digest: str
    verified: bool
    problems: int


class UnsealedSlotRead(Schema):
    stratum: str
    seq: int
    block: int
    block_length: int
    module: str
    arm: str
    salt: str
    batch: int
    used: bool


class UnsealedListRead(Schema):
    list_id: str
    status: Literal["unsealed"] = "unsealed"
    source: str
    seed: str = Field(description="hex; for a generated list it regenerates every slot")
    commitment_digest: str
    commitment: dict[str, Any]
    verified: bool
    problems: list[str]
    slots: list[UnsealedSlotRead]


# ── allocations ─────────────────────────────────────────────────────────────────────


class AllocationCreate(Schema):
    """Manual allocation (REDCap or the bus is down): the same guarantees as the event path."""

    record: RecordId
    cluster: Text | None = Field(None, description="the predicted cluster (personalized "
                                 "designs only)")
    site: Text | None = None
    levels: dict[Text, Text] | None = Field(
        None, description="the participant's level of each other stratification factor")
    pilot: bool = False
    reason: Reason


class EmergencyUnblinding(Schema):
    reason: Reason


class AllocationBlinded(Schema):
    record: str
    allocation_number: str
    module: str
    allocated_at: datetime


class SlotRef(Schema):
    seq: int
    batch: int


class MinimizationDecision(Schema):
    """One minimization decision as audited: its number, the participant's factor levels,
    the imbalance score each arm would have given, and whether the random element followed
    the preference (unblinded: the scores point at the arm)."""

    decision: int
    levels: dict[str, str]
    scores: dict[str, float]
    preferred: list[str]
    followed_preference: bool


class AllocationUnblinded(Schema):
    record: str
    allocation_number: str
    module: str
    allocated_at: datetime
    cluster: str | None
    arm: str
    stratum: str
    slot: SlotRef | None = Field(description="None for a pilot participant (no slot used) "
                                 "and under minimization (no list)")
    minimization: MinimizationDecision | None = None
    group: str | None = Field(default=None, description="group randomization: the member's "
                              "group, whose arm they inherit")
    pilot: bool
    list_id: str
    source: str


class UnblindedListItem(Schema):
    """One line of `GET /v1/allocations/unblinded` (read by the safety service's DSMB report)."""

    record: str
    module: str
    arm: str
    cluster: str | None
    allocated_at: datetime
    pilot: bool


# ── reports ─────────────────────────────────────────────────────────────────────────


class ModuleBalanceRead(Schema):
    module: str
    allocated: int


class StratumBalanceRead(Schema):
    stratum: str
    allocated: int
    by_module: dict[str, int]
    by_arm: dict[str, int]
    expected_by_module: dict[str, float]


class BalanceBlinded(Schema):
    list_id: str | None
    by_module: list[ModuleBalanceRead]


class BalanceUnblinded(Schema):
    list_id: str | None
    by_module: list[ModuleBalanceRead]
    by_stratum: list[StratumBalanceRead]


class StageAllocationBlinded(BaseModel):
    """A later-stage allocation as blinded roles see it: no option, outcome or arm."""

    record: str
    stage: str
    stage_number: str
    allocated_at: datetime


class StageAllocationUnblinded(StageAllocationBlinded):
    option: str
    outcome: str
    first_arm: str
    stratum: str
    seq: int
    batch: int
    list_id: str
    source: str


class StageBalanceRead(BaseModel):
    stage: str
    stratum: str
    allocated: int
    by_option: dict[str, int]
    expected: dict[str, float]


class EmergencyUnblindedRead(AllocationUnblinded):
    """Emergency unblinding: the first stage and every later stage's option (SMART)."""

    stages: list[StageAllocationUnblinded] = Field(default_factory=list)


class StageAllocationCreate(Schema):
    """Manual stage decision (REDCap or the bus is down): the same rule and guarantees as
    a save of the stage's form. `value`: the rule's field at the stage timepoint."""

    record: RecordId
    stage: Text
    # As REDCap holds it; blank or absent: the rule cannot score it (needs review).
    value: Annotated[str, StringConstraints(max_length=50)] | None = None
    reason: Reason


class StageDecisionRead(BaseModel):
    """What a manual stage decision did: allocated (or found), not reached, or needs review."""

    status: Literal["allocated", "existing", "not_reached", "needs_review"]
    detail: str | None = None
    field: str | None = None
    allocation: StageAllocationUnblinded | None = None


# ── groups (group randomization) ─────────────────────────────────────────────────────


class GroupClose(Schema):
    reason: Reason | None = Field(default=None, description="optional note (audited)")


class GroupAdmit(Schema):
    reason: Reason = Field(description="why the late member joins the group's arm (audited)")


class GroupMemberRead(Schema):
    record: str
    status: str = Field(description="member (waits for the close), allocated, or review "
                        "(joined late or does not fit the group: the study manager decides)")
    review_reason: str | None
    allocation_number: str | None


class GroupBlinded(Schema):
    """Blinded staff: the group, its members and what they receive; never arm or stratum."""

    group: str
    status: str
    opened_at: datetime
    closed_at: datetime | None
    module: str | None
    members: list[GroupMemberRead]


class GroupUnblinded(Schema):
    group: str
    status: str
    opened_at: datetime
    closed_at: datetime | None
    module: str | None
    members: list[GroupMemberRead]
    arm: str | None
    stratum: str | None
    slot: SlotRef | None
    list_id: str | None
