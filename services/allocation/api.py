"""Routes of the allocation service (behind the gateway at `/api/v1/allocation`).

Cluster is unblinding data: the prediction routes are open to unblinded roles only
(permission table in services/core/roles.py); the model summary names no participant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from services.core.auth import CallerDep
from services.core.http import SessionDep, deps_dependency

from . import service
from .bootstrap import AllocationDeps
from .schemas import (
    ActiveModelRead,
    PredictionCreate,
    PredictionResult,
    StoredPredictionRead,
    TrainingDataRead,
)

router = APIRouter(prefix="/v1", tags=["allocation"])


Deps = Annotated[AllocationDeps, Depends(deps_dependency(AllocationDeps))]


@router.post("/predictions", response_model=PredictionResult,
             summary="What-if: predict the cluster for given answers, without storing it")
def compute_prediction(body: PredictionCreate, caller: CallerDep, session: SessionDep,
                       deps: Deps) -> PredictionResult:
    kernel = deps.kernel
    result = service.compute_prediction(
        session, predictor=deps.predictor, caller=caller, items=body.items,
        scales=body.scales, age=body.age, sex=body.sex,
        item_prefix=kernel.protocol.redcap.fields.mpid_item_prefix)
    p = result.prediction
    return PredictionResult(scales=p.scales, t_scores=p.t_scores, probabilities=p.probabilities,
                            cluster=p.cluster, low_confidence=p.low_confidence,
                            model_version=p.model_version, audit_digest=result.digest,
                            salt=result.salt)


@router.get("/predictions/{record}", response_model=StoredPredictionRead,
            summary="A participant's prediction (unblinded; the read is audited)")
def read_prediction(record: str, caller: CallerDep, session: SessionDep) -> StoredPredictionRead:
    row = service.read_prediction(session, record=record, caller=caller)
    return StoredPredictionRead.model_validate(row, from_attributes=True)


@router.get("/models/active", response_model=ActiveModelRead,
            summary="The model in use: version, hash, provenance and training metrics")
def active_model(caller: CallerDep, deps: Deps) -> ActiveModelRead:
    del caller  # authorization only: the summary holds no participant data
    predictor = deps.predictor
    manifest = predictor.model.manifest
    training = manifest.get("training_data", {})
    return ActiveModelRead(
        model_version=predictor.model.version, sha256=predictor.model.sha256,
        synthetic=bool(manifest.get("synthetic")),
        training_data=TrainingDataRead(source=training.get("source"), rows=training.get("rows"),
                                       synthetic=bool(training.get("synthetic"))),
        features=list(manifest["features"]), classes=list(predictor.model.clusters),
        metrics=manifest.get("metrics", {}), seed=manifest.get("seed"),
        library_versions=manifest.get("library_versions", {}),
        low_confidence_threshold=predictor.threshold)
