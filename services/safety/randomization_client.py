"""The one synchronous question safety asks another service: who is in which arm.

Only the DSMB report asks, at report time, forwarding the DSMB member's own internal
token (the gateway signs it for safety and randomization); the answer is used for that
one report and never stored. Cluster, if present in the answer, is not even parsed.
"""

from __future__ import annotations

import httpx
from pydantic import AwareDatetime, BaseModel, ConfigDict, TypeAdapter, ValidationError

from services.core.errors import DomainError
from services.core.internal_token import HEADER

PATH = "/v1/allocations/unblinded"


class RandomizationUnavailable(DomainError):
    status = 503
    title = "Randomization service unavailable"


class RandomizationBadAnswer(DomainError):
    status = 502
    title = "Unusable answer from the randomization service"


class UnblindedAllocation(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    record: str
    module: str
    arm: str | None
    allocated_at: AwareDatetime
    pilot: bool = False


_ANSWER = TypeAdapter(list[UnblindedAllocation])


def fetch_unblinded_allocations(base_url: str | None, *, token: str | None,
                                timeout: float, request_id: str | None = None
                                ) -> list[UnblindedAllocation]:
    if not base_url:
        raise RandomizationUnavailable(
            "the randomization service's address is not configured (TAILOR_RANDOMIZATION_URL)",
            field="randomization")
    headers = {HEADER: token or ""}
    if request_id:
        headers["x-request-id"] = request_id
    url = base_url.rstrip("/") + PATH
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RandomizationUnavailable(
            f"the randomization service at {base_url} cannot be reached ({type(exc).__name__}); "
            "the unblinded report needs it for the arms", field="randomization") from None
    if response.status_code >= 500:
        raise RandomizationUnavailable(
            f"the randomization service answered {response.status_code}", field="randomization")
    if response.status_code != 200:
        raise RandomizationBadAnswer(
            f"the randomization service refused the unblinded query ({response.status_code}); "
            "the caller's token must be addressed to safety and randomization",
            field="randomization")
    try:
        return _ANSWER.validate_json(response.content)
    except ValidationError as exc:
        raise RandomizationBadAnswer(
            f"the randomization service's answer is not a list of allocations: "
            f"{exc.errors()[0]['msg']}", field="randomization") from None
