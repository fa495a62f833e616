"""The participant's REDCap survey link for a reminder or a diary prompt, asked of the
gateway at send time.

A timepoint with one survey gets that survey's link; with several, the participant's
survey-queue link (REDCap's one page listing their surveys). A diary prompt gets its own
instance of the diary's answer survey (`diary.answer_form`). The link is never stored
and never logged: its hash lets whoever holds it answer as the participant.

`SurveyLinkUnavailable` (gateway or REDCap down, slow, not configured) means "not now":
the dispatcher puts the reminder back and retries it with the usual backoff, so a
reminder never goes out without its link. A refusal (4xx: the record is not in REDCap,
the form is not a survey) is a `NotificationError`: retrying would only repeat it.
"""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from services.core.errors import DomainError
from services.core.protocol import Timepoint
from services.core.secret_store import SecretMissing
from services.core.survey_links import (
    HEADER,
    QUEUE_LINK_PATH,
    SURVEY_LINK_PATH,
    SurveyLink,
)

from .domain import NotificationError
from .runtime import Runtime


class SurveyLinkUnavailable(DomainError):
    status = 503
    title = "Survey link unavailable"


def survey_link(rt: Runtime, record: str, timepoint: Timepoint) -> str:
    if not timepoint.surveys:
        raise NotificationError(f"timepoint {timepoint.key!r} has no surveys to link to",
                                field="surveys")
    if len(timepoint.surveys) > 1:
        return _ask(rt, QUEUE_LINK_PATH, {"record": record})
    event = rt.protocol.redcap.unique_event_name(timepoint.redcap_event)
    return _ask(rt, SURVEY_LINK_PATH, {"record": record, "instrument": timepoint.surveys[0],
                                       "event": event})


def diary_link(rt: Runtime, record: str, day: int, index: int) -> str:
    """The participant's link to the diary answer survey's instance of prompt `index` of
    diary `day` (one instance per prompt, so the saved answer names its prompt)."""
    policy = rt.protocol.diary_policy
    answers = rt.protocol.diary_answers
    if answers is None:
        raise NotificationError("the diary records no answers in REDCap (diary.answer_form)",
                                field="answer_form")
    return _ask(rt, SURVEY_LINK_PATH, {
        "record": record, "instrument": answers[0],
        "event": rt.protocol.redcap.unique_event_name(answers[1]),
        "repeat_instance": str(policy.instance_of(day, index))})


def _secret(rt: Runtime) -> bytes:
    try:
        return rt.survey_link_secret()
    except SecretMissing as exc:
        raise SurveyLinkUnavailable(str(exc), field=exc.source) from None


def _ask(rt: Runtime, path: str, params: dict[str, str]) -> str:
    base = rt.settings.gateway_url
    if not base:
        raise SurveyLinkUnavailable("the gateway's address is not configured "
                                    "(TAILOR_GATEWAY_URL)", field="gateway_url")
    headers = {HEADER: _secret(rt).decode()}
    try:
        response = httpx.get(base.rstrip("/") + path, params=params, headers=headers,
                             timeout=rt.settings.gateway_timeout_seconds)
    except httpx.HTTPError as exc:
        raise SurveyLinkUnavailable(f"the gateway cannot be reached ({type(exc).__name__})",
                                    field="gateway") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise SurveyLinkUnavailable(f"the gateway answered {response.status_code} "
                                    f"({_detail(response)})", field="redcap")
    if response.status_code != 200:
        raise NotificationError(f"the gateway refused the survey link ({response.status_code}: "
                                f"{_detail(response)})", field="survey_link")
    try:
        return SurveyLink.model_validate_json(response.content).link
    except ValidationError:
        raise NotificationError("the gateway's answer holds no survey link",
                                field="survey_link") from None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "no detail"
    return str(body.get("detail", ""))[:200] if isinstance(body, dict) else "no detail"
