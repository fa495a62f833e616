"""Request and response models of the allocation service.

Every response here is unblinded (cluster, probabilities): the permission table lets
only unblinded roles reach the routes that return them. The model summary is blinded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PredictionCreate(BaseModel):
    """Item answers or scale scores, with age and sex, for a what-if prediction."""

    model_config = ConfigDict(extra="forbid")

    items: dict[str, int | None] | None = Field(
        default=None, description="MPI-D answers keyed by item (`1_1` … `3_18`) or by REDCap "
        "field name (`mpid_1_1`): 0-6, -99 = not applicable (items 1_14 and 3_11), null = skipped")
    scales: dict[str, float] | None = Field(
        default=None, description="the nine scale means (PS, I, LC, AD, S, PR, SR, DR, GA), 0-6")
    age: float = Field(description="years")
    sex: int = Field(description="1 = female, 0 = male")


class PredictionResult(BaseModel):
    """Unblinded: a computed prediction."""

    scales: dict[str, float]
    t_scores: dict[str, float]
    probabilities: dict[str, float]
    cluster: str
    low_confidence: bool
    model_version: str
    audit_digest: str = Field(description="SHA-256 recorded in the audit trail for this read")
    salt: str = Field(description="with the fields above, reproduces audit_digest")


class StoredPredictionRead(BaseModel):
    """Unblinded: the participant's one prediction, as made from their baseline."""

    record: str
    scales: dict[str, float]
    t_scores: dict[str, float]
    probabilities: dict[str, float]
    cluster: str
    low_confidence: bool
    age: float
    sex: int
    model_version: str
    model_sha256: str
    digest: str
    salt: str
    created_at: datetime
    correlation_id: str
    trigger_event_id: str


class TrainingDataRead(BaseModel):
    source: str | None
    rows: int | None
    synthetic: bool


class ActiveModelRead(BaseModel):
    """Blinded: what the active model is and how well it did, never a participant."""

    model_version: str
    sha256: str
    synthetic: bool = Field(description="trained on a synthetic reference cohort")
    training_data: TrainingDataRead
    features: list[str]
    classes: list[str]
    metrics: dict[str, Any]
    seed: int | None
    library_versions: dict[str, str]
    low_confidence_threshold: float
