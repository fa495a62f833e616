"""Facts the allocation service publishes."""

from __future__ import annotations

from typing import ClassVar

from .base import Event


class ClusterAssigned(Event):
    """Unblinding data: read by the randomization service only."""

    subject: ClassVar[str] = "trial.v1.allocation.cluster_assigned"
    record: str
    cluster: str
    probabilities: dict[str, float]
    model_version: str
    low_confidence: bool
    site: str | None = None
    pilot: bool = False


class AllocationNeedsReview(Event):
    """Blinded: the baseline cannot be scored (or a value is invalid); staff must review it.
    `reason` is stable per problem (it names the scale or field); `detail` says what to fix."""

    subject: ClassVar[str] = "trial.v1.allocation.needs_review"
    record: str
    reason: str
    field: str | None = None
    detail: str | None = None
