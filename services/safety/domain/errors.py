"""Typed domain errors of the safety service.

Every error names the offending field(s) so the API can answer with a 4xx (RFC 9457)
that tells a person what to fix. None of them means "something broke": they all mean
"this input or this request is wrong" and nothing was changed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    field: str  # dotted path in the input, e.g. "seriousness.death" or a REDCap field name
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SafetyError(ValueError):
    """Base of every safety domain error; `field` names the (first) offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidInput(SafetyError):
    """One or more fields are missing, malformed or contradict each other.

    `problems` lists every problem found, not just the first.
    """

    def __init__(self, what: str, problems: list[FieldProblem]) -> None:
        if not problems:
            raise ValueError("InvalidInput needs at least one problem")
        self.what = what
        self.problems = tuple(problems)
        joined = "; ".join(str(p) for p in problems)
        SafetyError.__init__(self, problems[0].field, f"invalid {what}: {joined}")
        self.args = (f"invalid {what}: {joined}",)

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


class InvalidAdverseEvent(InvalidInput):
    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("adverse event", problems)


class InvalidQuestionnaire(InvalidInput):
    def __init__(self, instrument: str, problems: list[FieldProblem]) -> None:
        super().__init__(f"{instrument} response", problems)


class InvalidFollowUp(SafetyError):
    """A follow-up cannot become a new case version (no reason, no change, wrong case...)."""


class ObligationStateError(SafetyError):
    """An obligation cannot make this transition (already sent, acknowledged twice...)."""


class IncompleteArmMap(SafetyError):
    """The unblinded report was given allocated participants without an arm."""
