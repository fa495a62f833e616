"""The CONSORT 2010 participant flow, and the flow quantities criteria are defined on.

Every level of the diagram is a partition, so the boxes add up by construction:

- enrolment: assessed = excluded (not meeting criteria + declined + other)
  + awaiting randomization + randomized
- follow-up, per group: allocated = lost to follow-up + discontinued + continuing
- analysis, per group: allocated = analysed + not analysed (awaiting the primary
  timepoint, missed it, or withdrew before it)

"Received the allocated intervention" counts participants whose withdrawal form says they
started the allocated module (`reports.received_field`); without that field in the
protocol it is null, never guessed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from services.core.protocol import Timepoint
from services.core.protocol.reports import STAGES, quantity_timepoints

from .facts import ArmOf
from .status import Status, TimepointState


@dataclass(frozen=True)
class Excluded:
    not_meeting_criteria: int
    declined: int
    other: int

    @property
    def total(self) -> int:
        return self.not_meeting_criteria + self.declined + self.other


@dataclass(frozen=True)
class GroupFlow:
    """The boxes below randomization for one group (pooled, an arm, or cluster × module)."""

    group: str
    allocated: int
    received_intervention: int | None
    lost_to_follow_up: int
    lost_reasons: dict[str, int]
    discontinued: int
    discontinued_reasons: dict[str, int]
    continuing: int
    analysed: int
    not_analysed: int
    not_analysed_reasons: dict[str, int]


@dataclass(frozen=True)
class Flow:
    as_of: date
    assessed: int
    excluded: Excluded
    excluded_total: int
    awaiting_randomization: int
    randomized: int
    pooled: GroupFlow
    # Unblinded only: None in every blinded report (never an empty list that hints at arms).
    by_arm: list[GroupFlow] | None = None
    by_cluster_module: list[GroupFlow] | None = None
    notes: list[str] = field(default_factory=list)


def enrolment_box(s: Status) -> str:
    """Exactly one of: randomized, not_meeting_criteria, declined, other, awaiting."""
    if s.randomized:
        return "randomized"
    if s.eligible is False:
        return "not_meeting_criteria"
    if s.declined:
        return "declined"
    if s.withdrawn:
        return "other"
    return "awaiting"


def group_flow(group: str, members: Sequence[Status], *, lost_reasons: Iterable[str],
               primary: str, received_recorded: bool = False) -> GroupFlow:
    ltfu = set(lost_reasons)
    lost = Counter(s.reason for s in members if s.withdrawn and s.reason in ltfu)
    stopped = Counter(s.reason for s in members if s.withdrawn and s.reason not in ltfu)
    missing: Counter[str] = Counter()
    analysed = 0
    for s in members:
        state = s.states.get(primary, TimepointState.NOT_YET_DUE)
        if state is TimepointState.COMPLETE:
            analysed += 1
        else:
            missing[{TimepointState.LOST: "withdrawn",
                     TimepointState.OVERDUE: "missed_primary_timepoint"}.get(state, "awaiting")] += 1
    withdrawn = sum(lost.values()) + sum(stopped.values())
    return GroupFlow(
        group=group, allocated=len(members),
        received_intervention=sum(s.received for s in members) if received_recorded else None,
        lost_to_follow_up=sum(lost.values()), lost_reasons=dict(sorted(lost.items())),
        discontinued=sum(stopped.values()), discontinued_reasons=dict(sorted(stopped.items())),
        continuing=len(members) - withdrawn, analysed=analysed,
        not_analysed=sum(missing.values()), not_analysed_reasons=dict(sorted(missing.items())))


def _grouped(randomized: Sequence[Status], key: Callable[[Status], str], order: Sequence[str], *,
             lost_reasons: Sequence[str], primary: str, received_recorded: bool
             ) -> list[GroupFlow]:
    groups: dict[str, list[Status]] = {k: [] for k in order}
    for s in randomized:
        groups.setdefault(key(s), []).append(s)
    return [group_flow(g, members, lost_reasons=lost_reasons, primary=primary,
                       received_recorded=received_recorded)
            for g, members in groups.items()]


def consort_flow(cohort: Sequence[Status], *, as_of: date, primary: str,
                 lost_reasons: Iterable[str], arms: Sequence[str] = (),
                 arm_of: ArmOf | None = None, received_recorded: bool = False) -> Flow:
    """Pooled flow; with `arm_of` (unblinded callers only) also per arm and per
    cluster × module. A randomized participant the arm map lacks is grouped as
    `not_in_evaluation` (a pilot participant outside the comparison).
    `received_recorded`: the protocol records who started the allocated module (else
    "received intervention" is null)."""
    boxes = Counter(enrolment_box(s) for s in cohort)
    randomized = [s for s in cohort if s.randomized]
    excluded = Excluded(boxes["not_meeting_criteria"], boxes["declined"], boxes["other"])
    reasons = list(lost_reasons)
    flow = Flow(as_of=as_of, assessed=len(cohort), excluded=excluded,
                excluded_total=excluded.total, awaiting_randomization=boxes["awaiting"],
                randomized=boxes["randomized"],
                pooled=group_flow("all", randomized, lost_reasons=reasons, primary=primary,
                                  received_recorded=received_recorded),
                notes=[] if received_recorded
                else ["received the allocated intervention: not recorded on the bus"])
    if arm_of is None:
        return flow

    def arm(s: Status) -> str:
        return arm_of.arm.get(s.record) or "not_in_evaluation"

    def cell(s: Status) -> str:
        return f"{arm_of.cluster.get(s.record) or 'unknown'} / {s.facts.module or 'unknown'}"

    kw = {"lost_reasons": reasons, "primary": primary, "received_recorded": received_recorded}
    return dataclasses.replace(
        flow, by_arm=_grouped(randomized, arm, arms, **kw),  # type: ignore[arg-type]
        by_cluster_module=sorted(_grouped(randomized, cell, (), **kw),  # type: ignore[arg-type]
                                 key=lambda g: g.group))


def quantity(cohort: Sequence[Status], name: str, timepoints: Sequence[Timepoint]) -> set[str]:
    """The records a flow quantity counts (see services.core.protocol.reports)."""
    tps = quantity_timepoints(name)
    if not tps:
        assert name in STAGES
        match name:
            case "assessed":
                return {s.record for s in cohort}
            case "eligible":
                return {s.record for s in cohort if s.eligible}
            case "consented":
                return {s.record for s in cohort if s.consented}
            case _:
                return {s.record for s in cohort if s.randomized}
    baseline = {t.key for t in timepoints if t.anchor == "consent"}
    kind = name.split(":", 1)[0]
    out: set[str] = set()
    for s in cohort:
        for tp in tps:
            if tp in baseline:
                hit = (kind == "complete" and s.baseline_complete) or (kind == "due" and s.consented)
            elif kind == "complete":
                hit = s.states.get(tp) is TimepointState.COMPLETE
            else:
                hit = tp in s.targets and s.targets[tp] <= s.as_of
            if hit:
                out.add(s.record)
                break
    return out

