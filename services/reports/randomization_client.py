"""The one question reports asks another service: which arm (and cluster) each randomized
participant is in — only for an unblinded caller, with that caller's own internal token
(the gateway addresses it to reports and randomization), at report time. The answer is used
for that one report and stored nowhere."""

from __future__ import annotations

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from services.core.errors import DomainError
from services.core.internal_token import HEADER

from .domain import ArmOf

PATH = "/v1/allocations/unblinded"


class RandomizationUnavailable(DomainError):
    status = 503
    title = "Randomization service unavailable"


class RandomizationBadAnswer(DomainError):
    status = 502
    title = "Unusable answer from the randomization service"


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    record: str
    arm: str | None = None
    cluster: str | None = None


_ANSWER = TypeAdapter(list[_Row])


def fetch_arm_map(base_url: str | None, *, token: str | None, timeout: float,
                  request_id: str | None = None) -> ArmOf:
    if not base_url:
        raise RandomizationUnavailable(
            "the randomization service's address is not configured (TAILOR_RANDOMIZATION_URL)",
            field="randomization")
    headers = {HEADER: token or ""}
    if request_id:
        headers["x-request-id"] = request_id
    try:
        response = httpx.get(base_url.rstrip("/") + PATH, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RandomizationUnavailable(
            f"the randomization service cannot be reached ({type(exc).__name__}); "
            "per-arm figures need it", field="randomization") from None
    if response.status_code >= 500:
        raise RandomizationUnavailable(
            f"the randomization service answered {response.status_code}", field="randomization")
    if response.status_code != 200:
        raise RandomizationBadAnswer(
            f"the randomization service refused the unblinded query ({response.status_code})",
            field="randomization")
    try:
        rows = _ANSWER.validate_json(response.content)
    except ValidationError as exc:
        raise RandomizationBadAnswer(
            f"not a list of allocations: {exc.errors()[0]['msg']}", field="randomization") from None
    return ArmOf(arm={r.record: r.arm for r in rows}, cluster={r.record: r.cluster for r in rows})
