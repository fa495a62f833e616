"""REDCap through PyCap, with the failure kinds the workers need: a transient failure
(5xx, timeout, connection refused) is retried with backoff; a refusal (4xx, a REDCap error
message) is permanent. PyCap hides HTTP status codes, so a response hook reads them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import requests
from redcap import Project, RedcapError

from services.core.protocol.redcap import RedcapProject

from .metrics import API_SECONDS
from .rights_check import Offender, check_project_rights


class RedcapUnavailable(RuntimeError):
    """Worth retrying: REDCap is slow, down or answered 5xx."""


class RedcapRefused(RuntimeError):
    """REDCap refused the request (bad token, bad value, unknown field): do not retry."""


class RedcapClient:
    def __init__(self, api_url: str, token: str, *, timeout: float = 10.0) -> None:
        self._local = threading.local()
        self._project = Project(api_url, token, timeout=timeout,
                                hooks={"response": [self._remember_status]})
        self._metadata: dict[str, list[str]] | None = None

    def _remember_status(self, response: requests.Response, *_a: Any, **_k: Any) -> None:
        self._local.status = response.status_code

    @contextmanager
    def _call(self, content: str, action: str) -> Iterator[None]:
        self._local.status = None
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except (requests.Timeout, requests.ConnectionError) as exc:
            outcome = "unavailable"
            raise RedcapUnavailable(f"REDCap {content}/{action}: {type(exc).__name__}") from None
        except (RedcapError, ValueError) as exc:  # ValueError: a 5xx page that is not JSON
            status = getattr(self._local, "status", None) or 0
            if status >= 500 or status == 0:
                outcome = "unavailable"
                raise RedcapUnavailable(f"REDCap {content}/{action}: HTTP {status}") from None
            outcome = "refused"
            raise RedcapRefused(f"REDCap {content}/{action}: HTTP {status}: {str(exc)[:300]}") from None
        finally:
            API_SECONDS.labels(content, action, outcome).observe(time.perf_counter() - started)

    def form_fields(self, instrument: str) -> list[str]:
        """Field names of an instrument (metadata, cached; refreshed when an instrument is new)."""
        if self._metadata is None or instrument not in self._metadata:
            with self._call("metadata", "export"):
                rows = self._project.export_metadata()
            forms: dict[str, list[str]] = {}
            for row in rows:
                forms.setdefault(row["form_name"], []).append(row["field_name"])
            self._metadata = forms
        return self._metadata.get(instrument, [])

    def event_rows(self, record: str, unique_event: str) -> list[dict[str, str]]:
        with self._call("record", "export"):
            return self._project.export_records(records=[record], events=[unique_event])  # type: ignore[return-value]

    def changed_since(self, begin: datetime, server_zone: str = "UTC") -> list[dict[str, str]]:
        """Rows changed since `begin` (aware); REDCap reads the bound in its server's zone."""
        begin = begin.astimezone(ZoneInfo(server_zone)).replace(tzinfo=None)
        with self._call("record", "export"):
            # Gray (never entered) forms export blank, not "0": only forms with data count.
            return self._project.export_records(  # type: ignore[return-value]
                date_begin=begin, export_blank_for_gray_form_status=True)

    def rights_offenders(self, redcap: RedcapProject, service_user: str, *,
                         personalized: bool = True,
                         module_forms: Collection[str] = ()) -> list[Offender]:
        """Users and roles who could see both the allocation (or a form only one module's
        participants fill in) and baseline MPI-D answers."""
        with self._call("user", "export"):
            return check_project_rights(self._project, redcap, service_user=service_user,
                                        personalized=personalized, module_forms=module_forms)

    def import_rows(self, rows: list[dict[str, str]]) -> int:
        with self._call("record", "import"):
            result = self._project.import_records(rows, overwrite="normal", return_content="count")
        return int(result["count"]) if isinstance(result, dict) else int(result)

    def survey_link(self, record: str, instrument: str, event: str,
                    repeat_instance: int = 1) -> str:
        """The participant's own link to `instrument` in `event` (REDCap makes it once per
        instance; a repeating survey's later instances have links before they have data)."""
        with self._call("surveyLink", "export"):
            return self._link(self._project.export_survey_link(
                record=record, instrument=instrument, event=event,
                repeat_instance=repeat_instance))

    def survey_queue_link(self, record: str) -> str:
        with self._call("surveyQueueLink", "export"):
            return self._link(self._project.export_survey_queue_link(record=record))

    def _link(self, answer: object) -> str:
        # PyCap hands a text answer back whatever the status: an error is not a link.
        text = answer.strip() if isinstance(answer, str) else ""
        status = getattr(self._local, "status", None) or 0
        if status != 200 or not text.startswith(("https://", "http://")) or any(
                c.isspace() for c in text):
            raise RedcapError(text[:300] or f"HTTP {status}")
        return text


ClientFactory = Callable[[], RedcapClient]
