"""Facts the allocation service publishes."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from .base import Event


class ClusterAssigned(Event):
    """For the randomization service only. The cluster and its probabilities (unblinding
    data: with the module they give the arm) travel in `sealed`, a `SealedCluster` sealed
    to randomization's bus key (services/core/sealing.py); what is in clear is blinded."""

    subject: ClassVar[str] = "trial.v1.allocation.cluster_assigned"
    record: str
    sealed: str
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


class SealedCluster(BaseModel):
    """The content of `ClusterAssigned.sealed`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cluster: str
    probabilities: dict[str, float]
