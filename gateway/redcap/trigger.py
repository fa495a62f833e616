"""The Data Entry Trigger body, validated (pure). A trigger is a notification, never data:
only which form of which record was saved; the data is re-fetched through the API."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.core.errors import InvalidInput
from services.core.protocol import TrialProtocol

RECORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


@dataclass(frozen=True)
class Trigger:
    project_id: int
    record: str
    instrument: str
    event: str | None  # protocol event key (REDCap's unique name without the arm suffix)
    repeat_instance: int | None


def known_instruments(protocol: TrialProtocol) -> set[str]:
    r = protocol.redcap
    forms = {f for t in protocol.timepoints for f in t.forms}
    answers = protocol.diary_answers  # the diary's answers: their saves count adherence
    forms |= {answers[0]} if answers else set()
    return forms | set(r.baseline_forms) | {r.withdrawal_form, r.adverse_event_form, r.allocation_form}


def parse_trigger(form: Mapping[str, str], protocol: TrialProtocol) -> Trigger:
    """Refuse what REDCap would never send for this project, naming the field."""
    for name in ("project_id", "record", "instrument"):
        if not (form.get(name) or "").strip():
            raise InvalidInput(f"{name} is missing", field=name)
    try:
        project_id = int(form["project_id"])
    except ValueError:
        raise InvalidInput("project_id must be a number", field="project_id") from None
    record = form["record"].strip()
    if not RECORD.match(record):
        raise InvalidInput("record is not a REDCap record name", field="record")
    instrument = form["instrument"].strip()
    if instrument not in known_instruments(protocol):
        raise InvalidInput(f"unknown instrument {instrument!r}", field="instrument")
    unique_event = (form.get("redcap_event_name") or "").strip()
    if not unique_event:
        raise InvalidInput("redcap_event_name is missing (the project is longitudinal)",
                           field="redcap_event_name")
    event = protocol.redcap.event_of(unique_event)
    if event not in protocol.redcap_events:
        raise InvalidInput(f"unknown event {unique_event!r}", field="redcap_event_name")
    instance_raw = (form.get("redcap_repeat_instance") or "").strip()
    instance: int | None = None
    if instance_raw:
        if not instance_raw.isdigit() or int(instance_raw) < 1:
            raise InvalidInput("redcap_repeat_instance must be a positive number",
                               field="redcap_repeat_instance")
        instance = int(instance_raw)
    complete = (form.get(f"{instrument}_complete") or "").strip()
    if complete and complete not in {"0", "1", "2"}:
        raise InvalidInput("completion status must be 0, 1 or 2", field=f"{instrument}_complete")
    return Trigger(project_id, record, instrument, event, instance)
