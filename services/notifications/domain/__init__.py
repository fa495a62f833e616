"""Pure rules of the notifications service: no I/O, no framework, no database.

Inputs and outputs are timezone-aware UTC datetimes; a participant's IANA zone only
decides when to contact them. Trial specifics come in as protocol sections.
"""

from .clock import is_quiet, local_day, local_to_utc, next_allowed, participant_zone
from .delivery import (
    TERMINAL,
    DeliveryState,
    FailureKind,
    TaskOutcome,
    can_transition,
    classify_exception,
    classify_http_status,
    classify_smtp_reply,
    retry_delay,
    should_retry,
    task_path,
    transition,
)
from .diary import (
    DayAdherence,
    DiaryBatch,
    DiaryParticipant,
    DiaryPrompt,
    PromptOutcome,
    diary_adherence,
    diary_prompts,
    prompt_is_open,
    prompt_key,
)
from .errors import (
    ForbiddenContent,
    IllegalTransition,
    InvalidSignature,
    InvalidTimezone,
    NotificationError,
    TemplateMissing,
    UnknownTimepoint,
)
from .reminders import (
    CancelReason,
    DueCheck,
    ParticipantSnapshot,
    PlannedReminder,
    cancellations,
    is_still_due,
    plan_reminders,
    reminder_key,
)
from .rendering import (
    ContentGuard,
    MessageFacts,
    MessageKind,
    MessageRenderer,
    RenderedMessage,
    format_date,
    prompt_link,
)
from .reports import (
    ChannelReport,
    Proportion,
    TimepointRecord,
    TimepointReport,
    channel_report,
    proportion,
    timepoint_report,
    wilson_interval,
)
from .schedule import (
    TimepointProgress,
    TimepointSchedule,
    TimepointStatus,
    find_schedule,
    schedule_timepoints,
    timepoint_status,
)
from .webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    provider_state,
    sign_callback,
    verify_callback,
)

__all__ = [
    "SIGNATURE_HEADER", "TERMINAL", "TIMESTAMP_HEADER", "CancelReason", "ChannelReport",
    "ContentGuard", "DayAdherence", "DeliveryState", "DiaryBatch", "DiaryParticipant",
    "DiaryPrompt", "DueCheck", "FailureKind", "ForbiddenContent", "IllegalTransition",
    "InvalidSignature", "InvalidTimezone", "MessageFacts", "MessageKind", "MessageRenderer",
    "NotificationError", "ParticipantSnapshot", "PlannedReminder", "PromptOutcome",
    "Proportion", "RenderedMessage", "TaskOutcome", "TemplateMissing", "TimepointProgress",
    "TimepointRecord", "TimepointReport", "TimepointSchedule", "TimepointStatus",
    "UnknownTimepoint", "can_transition", "cancellations", "channel_report",
    "classify_exception", "classify_http_status", "classify_smtp_reply", "diary_adherence",
    "diary_prompts", "find_schedule", "format_date", "is_quiet", "is_still_due", "local_day",
    "local_to_utc", "next_allowed", "participant_zone", "plan_reminders", "prompt_is_open",
    "prompt_key", "prompt_link", "proportion", "provider_state", "reminder_key",
    "retry_delay", "schedule_timepoints", "should_retry", "sign_callback", "task_path",
    "timepoint_report", "timepoint_status", "transition", "verify_callback", "wilson_interval",
]
