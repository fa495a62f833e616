"""The Data Entry Trigger: REDCap's one-shot, form-encoded POST after a form is saved.

REDCap sends it once, never retries, and ignores the answer; the emulator does the
same but records every attempt (status or error) so tests can inspect deliveries.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from .context import ProjectContext
from .layout import complete_field


def det_payload(ctx: ProjectContext, *, instrument: str, record: str, event: str,
                repeat_instance: int, complete: str, dag: str, username: str,
                redcap_url: str) -> dict[str, str]:
    """The form fields REDCap posts: event only for longitudinal projects, DAG only when
    the record is in one, repeat fields only for a repeating instrument or event."""
    design = ctx.design
    payload = {"project_id": str(ctx.pid), "username": username, "instrument": instrument,
               "record": record}
    if design.longitudinal:
        payload["redcap_event_name"] = event
    if dag:
        payload["redcap_data_access_group"] = dag
    payload[complete_field(instrument)] = complete
    if design.is_repeating_form(event, instrument) or design.is_repeating_event(event):
        payload["redcap_repeat_instance"] = str(repeat_instance)
        payload["redcap_repeat_instrument"] = (
            instrument if design.is_repeating_form(event, instrument) else "")
    base = redcap_url.rstrip("/") + "/"
    payload["redcap_url"] = base
    payload["project_url"] = f"{base}redcap_v{ctx.config.redcap_version}/index.php?pid={ctx.pid}"
    return payload


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _shared_client() -> httpx.Client:
    """One client for every trigger: a client per POST builds a TLS context each time (a
    third of the emulator's CPU per save in bench/e2e.py) and opens a new connection."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client()
        return _client


def fire_det(ctx: ProjectContext, url: str, payload: dict[str, str]) -> dict[str, Any]:
    """One POST, no retry; failures are recorded and otherwise ignored, as in REDCap."""
    status: int | None = None
    error = ""
    try:
        response = _shared_client().post(url, data=payload, timeout=ctx.config.det_timeout_seconds)
        status = response.status_code
    except httpx.HTTPError as err:
        error = f"{type(err).__name__}: {err}"
    ctx.store.record_det(ctx.pid, url, payload, status, error)
    return {"url": url, "payload": payload, "status_code": status, "error": error}
