"""Pure domain of the safety service: no I/O, no framework, no clock of its own.

Every function that depends on time takes `now`; every trial specific comes from
`services.core.protocol.safety.SafetyRules` (`protocol.safety`).
"""

from .cases import (
    INITIAL_REASON,
    Case,
    CaseVersion,
    FieldChange,
    audit_entry,
    diff,
    follow_up,
    open_case,
    redcap_case_id,
    significant_changes,
)
from .clocks import (
    Obligation,
    acknowledge,
    due_for_escalation,
    earliest_open_deadline,
    mark_escalated,
    mark_sent,
    plan_obligations,
    sent_late,
    status,
)
from .e2b import e2b_case
from .errors import (
    FieldProblem,
    IncompleteArmMap,
    InvalidAdverseEvent,
    InvalidFollowUp,
    InvalidInput,
    InvalidQuestionnaire,
    ObligationStateError,
    SafetyError,
)
from .events import (
    AdverseEvent,
    Assessment,
    MeddraCoding,
    Seriousness,
    assess,
    is_expected,
    is_related,
    parse_adverse_event,
)
from .redcap_form import (
    RedcapAdverseEvent,
    adverse_event_from_redcap,
    inep_from_redcap,
    neq_from_redcap,
)
from .reports import (
    Allocation,
    BlindedReport,
    EventCounts,
    GroupSummary,
    ObligationLine,
    ObligationSummary,
    SaeLine,
    UnblindedReport,
    blinded_report,
    unblinded_report,
)
from .screening import (
    Attribution,
    CandidateAdverseEvent,
    CandidateEffect,
    InepAnswer,
    InepScaleScore,
    InepScore,
    NeqAnswer,
    NeqScore,
    score_inep,
    score_neq,
    screen_neq,
    validate_inep,
    validate_neq,
)
from .vocabulary import (
    SERIOUSNESS_CRITERIA,
    ActionTaken,
    ObligationStatus,
    Outcome,
    Relatedness,
    Severity,
)

__all__ = [
    "INITIAL_REASON", "SERIOUSNESS_CRITERIA", "ActionTaken", "AdverseEvent", "Allocation",
    "Assessment", "Attribution", "BlindedReport", "CandidateAdverseEvent", "CandidateEffect",
    "Case", "CaseVersion", "EventCounts", "FieldChange", "FieldProblem", "GroupSummary",
    "IncompleteArmMap", "InepAnswer", "InepScaleScore", "InepScore", "InvalidAdverseEvent",
    "InvalidFollowUp", "InvalidInput", "InvalidQuestionnaire", "MeddraCoding", "NeqAnswer",
    "NeqScore", "Obligation", "ObligationLine", "ObligationStateError", "ObligationStatus",
    "ObligationSummary", "Outcome", "RedcapAdverseEvent", "Relatedness", "SaeLine",
    "SafetyError", "Seriousness", "Severity", "UnblindedReport", "acknowledge",
    "adverse_event_from_redcap", "assess", "audit_entry", "blinded_report", "diff",
    "due_for_escalation", "e2b_case", "earliest_open_deadline", "follow_up",
    "inep_from_redcap", "is_expected", "is_related", "mark_escalated", "mark_sent",
    "neq_from_redcap", "open_case", "parse_adverse_event", "plan_obligations",
    "redcap_case_id", "score_inep", "score_neq", "screen_neq", "sent_late",
    "significant_changes", "status", "unblinded_report", "validate_inep", "validate_neq",
]
