"""`/api/v1/keys`: the platform admin lists, issues and revokes API keys.

An admin holds no participant data; a key's secret is returned once, at creation."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from gateway.auth.key_repository import KeyNotFoundError, KeyRequestError
from services.core.errors import InvalidInput, NotFound
from services.core.http import SessionDep, problem

from . import key_service
from .schemas import ApiKeyCreate, ApiKeyIssued, ApiKeyRead
from .security import GatewayCallerDep

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="the key's id (not its secret)")]


def _request_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("request_id")


@router.get("", response_model=list[ApiKeyRead], summary="Every API key (never a secret)")
def list_api_keys(session: SessionDep, caller: GatewayCallerDep,
                  include_revoked: bool = True) -> list[ApiKeyRead]:
    del caller  # authorization only
    return key_service.all_keys(session, include_revoked=include_revoked)


@router.post("", status_code=201, response_model=ApiKeyIssued,
             summary="Issue a key for one role; its secret is shown only in this answer",
             responses={403: {"description": "an unblinded or two-person role: "
                                             "`tailor keys create` on the server only"}})
def create_api_key(body: ApiKeyCreate, session: SessionDep,
                   caller: GatewayCallerDep) -> ApiKeyIssued | JSONResponse:
    if key_service.is_privileged(body.role.value):
        # Returned, not raised: the refusal's audit entry commits with this transaction.
        key_service.refuse_privileged(session, name=body.name, role=body.role.value,
                                      actor=caller.subject, actor_role=caller.role.value,
                                      correlation_id=_request_id())
        return problem(403, "Forbidden",
                       f"keys for role {body.role.value} (unblinded, or part of a two-person "
                       "rule) are issued only on the server with `tailor keys create`, "
                       "never by one admin over the API", field="role")
    try:
        issued = key_service.issue_key(session, name=body.name, role=body.role.value,
                                       expires_in_days=body.expires_in_days, actor=caller.subject,
                                       actor_role=caller.role.value, correlation_id=_request_id())
    except KeyRequestError as exc:
        raise InvalidInput(str(exc), field=exc.field) from None
    return key_service.issued_read(issued)


@router.post("/{key_id}/revoke", response_model=ApiKeyRead,
             summary="Revoke a key at once (revoking again changes nothing)")
def revoke_api_key(key_id: KeyId, session: SessionDep, caller: GatewayCallerDep) -> ApiKeyRead:
    try:
        info = key_service.revoke(session, key_id, actor=caller.subject,
                                  actor_role=caller.role.value, correlation_id=_request_id())
    except KeyNotFoundError as exc:
        raise NotFound(str(exc), field="key_id") from None
    return key_service.key_read(info)
