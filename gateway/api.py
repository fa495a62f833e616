"""The gateway's own routes."""

from __future__ import annotations

from fastapi import APIRouter

from services.core.http import SessionDep

from . import repository
from .schemas import WitnessedHeadRead

router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/audit/heads", response_model=list[WitnessedHeadRead],
            summary="Audit-chain heads announced by each service and witnessed by the gateway")
def audit_heads(session: SessionDep) -> list[WitnessedHeadRead]:
    return [WitnessedHeadRead.model_validate(h, from_attributes=True)
            for h in repository.witnessed_heads(session)]
