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
    subject: ClassVar[str] = "trial.v1.allocation.needs_review"
    record: str
    reason: str
