"""Survey participants: each (record, event, instrument, instance) of a survey has a link
hash, an access code and a return code, made once and kept (REDCap's participant table).

Stored as project objects: kind "survey_participant" keyed by the place, "survey_hash"
keyed by hash (-> place), "survey_queue" keyed by record (-> queue hash).
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

from .context import ProjectContext
from .params import ApiError

_LINK_ALPHABET = string.ascii_uppercase + string.digits
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRTUVWXY3469"  # REDCap leaves out look-alikes


@dataclass(frozen=True)
class Place:
    record: str
    event: str
    instrument: str
    instance: int

    @property
    def key(self) -> str:
        return f"{self.record}\x1f{self.event}\x1f{self.instrument}\x1f{self.instance}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Place:
        return cls(data["record"], data["event"], data["instrument"], int(data["instance"]))


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def place_of(ctx: ProjectContext, record: str, instrument: str, event: str,
             repeat_instance: str) -> Place:
    """Check the parameters as REDCap does and name the survey's place."""
    design = ctx.design
    if not record:
        raise ApiError(400, 'The parameter "record" is missing')
    if not instrument:
        raise ApiError(400, 'The parameter "instrument" is missing')
    if instrument not in design.forms:
        raise ApiError(400, f"The instrument '{instrument}' does not exist in the project")
    if instrument not in design.surveys:
        raise ApiError(400, f"The instrument '{instrument}' is not enabled as a survey")
    if design.longitudinal and not event:
        raise ApiError(400, 'The parameter "event" is missing (required for longitudinal '
                       "projects)")
    event = event or design.event_names()[0]
    if event not in design.event_names():
        raise ApiError(400, f"The event '{event}' is not a valid unique event name")
    if instrument not in design.forms_in_event(event):
        raise ApiError(400, f"The instrument '{instrument}' is not designated for the event "
                       f"'{event}'")
    if record not in {r.record for r in ctx.store.records(ctx.pid)}:
        raise ApiError(400, f"The record '{record}' does not exist")
    instance = int(repeat_instance) if repeat_instance.isdigit() else 1
    return Place(record, event, instrument, max(instance, 1))


def participant(ctx: ProjectContext, place: Place) -> dict[str, Any]:
    """The place's participant entry, made on first use."""
    found = ctx.store.get_object(ctx.pid, "survey_participant", place.key)
    if found is not None:
        return found
    entry: dict[str, Any] = {"record": place.record, "event": place.event, "instrument": place.instrument,
             "instance": place.instance, "hash": _random(_LINK_ALPHABET, 10),
             "access_code": _random(_CODE_ALPHABET, 9), "return_code": _random(_CODE_ALPHABET, 8),
             "response": 0}
    with ctx.store.transaction():
        ctx.store.put_object(ctx.pid, "survey_participant", place.key, entry)
        ctx.store.put_object(ctx.pid, "survey_hash", str(entry["hash"]), {"key": place.key})
    return entry


def queue_hash(ctx: ProjectContext, record: str) -> str:
    found = ctx.store.get_object(ctx.pid, "survey_queue", record)
    if found is not None:
        return str(found["hash"])
    value = _random(_LINK_ALPHABET, 10)
    with ctx.store.transaction():
        ctx.store.put_object(ctx.pid, "survey_queue", record, {"hash": value})
        ctx.store.put_object(ctx.pid, "survey_queue_hash", value, {"record": record})
    return value


def by_hash(ctx: ProjectContext, link_hash: str) -> dict[str, Any] | None:
    ref = ctx.store.get_object(ctx.pid, "survey_hash", link_hash)
    return ctx.store.get_object(ctx.pid, "survey_participant", ref["key"]) if ref else None


def mark_response(ctx: ProjectContext, entry: dict[str, Any], status: int) -> None:
    place = Place.from_json(entry)
    ctx.store.put_object(ctx.pid, "survey_participant", place.key, {**entry, "response": status})


def survey_url(base: str, link_hash: str) -> str:
    return f"{base.rstrip('/')}/surveys/?s={link_hash}"


def queue_url(base: str, link_hash: str) -> str:
    return f"{base.rstrip('/')}/surveys/?sq={link_hash}"
