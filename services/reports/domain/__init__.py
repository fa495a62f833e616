"""Pure rules of the reports service: participant status on a date, the CONSORT flow,
feasibility verdicts with Wilson CIs, recruitment projections, retention, acceptability.
No I/O, no framework: facts in, figures out."""

from .acceptability import Acceptability, acceptability
from .diary import DiaryAdherence, DiaryWeekFigures, diary_adherence
from .facts import (
    AdverseEventFact,
    ArmOf,
    DiaryWeek,
    Facts,
    NeqAnswer,
    ParticipantFacts,
    TimepointDone,
)
from .feasibility import CriterionResult, evaluate, feasibility, verdict_for
from .flow import Flow, GroupFlow, consort_flow, enrolment_box, quantity
from .recruitment import Recruitment, recruitment
from .retention import Retention, retention
from .stats import wilson
from .status import Status, TimepointState, cohort_on, target_dates, timepoint_state

__all__ = [
    "Acceptability",
    "AdverseEventFact",
    "ArmOf",
    "CriterionResult",
    "DiaryAdherence",
    "DiaryWeek",
    "DiaryWeekFigures",
    "Facts",
    "Flow",
    "GroupFlow",
    "NeqAnswer",
    "ParticipantFacts",
    "Recruitment",
    "Retention",
    "Status",
    "TimepointDone",
    "TimepointState",
    "acceptability",
    "cohort_on",
    "consort_flow",
    "diary_adherence",
    "enrolment_box",
    "evaluate",
    "feasibility",
    "quantity",
    "recruitment",
    "retention",
    "target_dates",
    "timepoint_state",
    "verdict_for",
    "wilson",
]
