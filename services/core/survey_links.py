"""The contract between notifications and the gateway for a participant's REDCap survey links.

Only the gateway holds the REDCap token, so notifications asks it, at send time, for the
link REDCap made for one participant (`GET /internal/redcap/survey-link`, or the
survey-queue link when a timepoint has several surveys). The caller proves who it is with
a shared secret in a header: one secret, loaded through the secret store by both
processes, that opens these internal routes only. A survey link's hash lets anyone holding
it answer as the participant, so neither side logs a link.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .secret_store import Secret, load_secret

HEADER = "X-Tailor-Survey-Link-Secret"
ENV_SECRET = "TAILOR_SURVEY_LINK_SECRET"  # noqa: S105 (a variable name)
SECRET_FILE = "survey-link.secret"  # noqa: S105 (a file name, embedded stack only)
SURVEY_LINK_PATH = "/internal/redcap/survey-link"
QUEUE_LINK_PATH = "/internal/redcap/survey-queue-link"
CALLER = "service:notifications"  # who the gateway records as the reader


class SurveyLink(BaseModel):
    """The gateway's answer: the link REDCap gave for this participant."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    record: str
    link: str


def load_survey_link_secret(home: Path, *, embedded: bool) -> Secret:
    """`TAILOR_SURVEY_LINK_SECRET` (or `_FILE`); generated under TAILOR_HOME only for the
    embedded stack, where the gateway and notifications share the folder."""
    return load_secret(ENV_SECRET, home=home, embedded_file=SECRET_FILE, allow_generate=embedded,
                       generate=lambda: secrets.token_urlsafe(32).encode())


def survey_link_secret_once(home: Path, *, embedded: bool) -> Callable[[], bytes]:
    """The secret's bytes, read at first use and then kept (the gateway checks it, and
    notifications shows it, on every survey-link request)."""
    return functools.cache(lambda: load_survey_link_secret(home, embedded=embedded).value.strip())
