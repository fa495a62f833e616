"""Typed errors of the allocation domain; each names the input at fault in `field`."""

from __future__ import annotations

from dataclasses import dataclass

from services.core.errors import DomainError


class AllocationError(DomainError):
    """Base of every error the allocation domain raises."""


class InvalidAnswer(AllocationError):
    """An MPI-D item value outside 0-6 (or -99 where not applicable is not allowed)."""

    title = "Invalid MPI-D answer"


class InvalidScaleScore(AllocationError):
    """A scale score given directly is missing, not a number, or outside 0-6."""

    title = "Invalid MPI-D scale score"


class InvalidCovariate(AllocationError):
    """Age or sex is missing or not usable by the classifier."""

    title = "Invalid age or sex"


@dataclass(frozen=True)
class UnscorableScale:
    scale: str
    reason: str


class UnscorableBaseline(AllocationError):
    """Too many skipped items: no prediction is possible; staff must review the baseline."""

    title = "MPI-D baseline unscorable"

    def __init__(self, problems: tuple[UnscorableScale, ...]) -> None:
        detail = "; ".join(f"scale {p.scale}: {p.reason}" for p in problems)
        super().__init__(f"MPI-D baseline is unscorable: {detail}", field=problems[0].scale)
        self.problems = problems

    @property
    def scales(self) -> tuple[str, ...]:
        return tuple(p.scale for p in self.problems)


class TrainingDataError(AllocationError):
    """The reference data cannot train a model (columns, values or too few patients)."""

    title = "Unusable training data"


class AmbiguousClusterNaming(AllocationError):
    """The soft k-means components cannot be named by the protocol's profile rules."""

    title = "Clusters cannot be named unambiguously"


class ModelArtifactError(AllocationError):
    """A model artifact or its manifest is unusable; the service must not start with it."""

    status = 500
    title = "Model artifact refused"


class ArtifactIntegrityError(ModelArtifactError):
    """The artifact's SHA-256 differs from the one the protocol names."""

    title = "Model artifact hash mismatch"
