"""Typed errors of the randomization domain.

Every error is a ValueError carrying `field`, the name of the input that is wrong, so an
API can answer with a 4xx that names it.
"""

from __future__ import annotations

from dataclasses import dataclass


class RandomizationError(ValueError):
    """Base of every randomization domain error."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DesignError(RandomizationError):
    """The protocol's randomization section cannot make a list design."""


class NotInDesignError(RandomizationError):
    """A cluster, site, stratum or module key that the list design does not have."""


class SecretError(RandomizationError):
    """A seed or key of the wrong size (never echoes the secret)."""


class ExtensionError(RandomizationError):
    """A stratum cannot be extended as asked, or an extension does not continue the list."""


class SealError(RandomizationError):
    """A sealed slot cannot be opened: wrong key, altered, or moved to another slot."""

    def __init__(self, message: str, *, stratum: str | None = None, seq: int | None = None,
                 field: str = "ciphertext") -> None:
        super().__init__(message, field=field)
        self.stratum = stratum
        self.seq = seq


class CommitmentError(RandomizationError):
    """Slots do not match a published commitment, or a commitment statement is malformed."""

    def __init__(self, message: str, *, field: str | None = None,
                 problems: tuple[str, ...] = ()) -> None:
        super().__init__(message, field=field)
        self.problems = problems


@dataclass(frozen=True)
class ImportProblem:
    """One defect of an imported list. `row` is the spreadsheet row (header = row 1)."""

    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = ", ".join(p for p in (
            f"row {self.row}" if self.row is not None else "",
            f"column {self.column}" if self.column else "") if p)
        return f"{where}: {self.message}" if where else self.message


class ListImportError(RandomizationError):
    """An imported list has defects; `problems` holds every one, in row order."""

    SHOWN = 20

    def __init__(self, problems: list[ImportProblem]) -> None:
        self.problems = tuple(problems)
        lines = [str(p) for p in self.problems[: self.SHOWN]]
        more = len(self.problems) - self.SHOWN
        if more > 0:
            lines.append(f"… and {more} more")
        first = self.problems[0].column if self.problems else None
        super().__init__(
            f"the randomization list has {len(self.problems)} problem(s):\n  " + "\n  ".join(lines),
            field=first,
        )
