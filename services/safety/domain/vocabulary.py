"""The controlled vocabulary of adverse-event reporting (values as stored and sent)."""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    """Intensity of the event; says nothing about seriousness (ICH E2A)."""

    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


class Relatedness(StrEnum):
    """Causal relationship to the study intervention, as judged by the investigator."""

    NOT = "not"
    UNLIKELY = "unlikely"
    POSSIBLY = "possibly"
    PROBABLY = "probably"
    DEFINITELY = "definitely"


class Outcome(StrEnum):
    """Outcome of the event at the time of the last observation (ICH E2B(R3) E.i.7)."""

    RECOVERED = "recovered"
    RECOVERING = "recovering"
    NOT_RECOVERED = "not_recovered"
    RECOVERED_WITH_SEQUELAE = "recovered_with_sequelae"
    FATAL = "fatal"
    UNKNOWN = "unknown"


class ActionTaken(StrEnum):
    """What was done with the participant's study treatment because of the event."""

    NONE = "none"
    TREATMENT_MODIFIED = "treatment_modified"
    TREATMENT_INTERRUPTED = "treatment_interrupted"
    TREATMENT_DISCONTINUED = "treatment_discontinued"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "not_applicable"


class ObligationStatus(StrEnum):
    OPEN = "open"                  # clock running, nobody has taken charge yet
    ACKNOWLEDGED = "acknowledged"  # a safety officer has taken charge; clock still running
    SENT = "sent"                  # report sent to the recipients: obligation met
    OVERDUE = "overdue"            # deadline passed and not sent


# The six ICH E2A seriousness criteria, in E2B(R3) E.i.3.2a–f order.
SERIOUSNESS_CRITERIA: tuple[str, ...] = (
    "death", "life_threatening", "hospitalisation", "disability",
    "congenital_anomaly", "medically_important",
)
