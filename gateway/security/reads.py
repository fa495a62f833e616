"""Every access to participant data through the gateway leaves an entry in the gateway's
own audit chain: who (subject and role), which participant (the `{record}` in the path,
or a `record`/`participant` query parameter), through which route, when, with what outcome.

Recorded when the route's rule says `participant_data`, and also whenever the request
names a participant in its query (an audit trail filtered by participant is itself a
read of that participant's history). Only the route, its path parameters and the record
are kept: never a query string or a body (they could carry unblinding facts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from sqlalchemy.engine import Engine

from services.core import audit
from services.core.db import unit_of_work
from services.core.internal_token import Caller
from services.core.roles import RoutePermission

PARTICIPANT_QUERY = ("record", "participant")
READS = frozenset({"GET", "HEAD"})


def path_params(template: str, path: str) -> dict[str, str]:
    """`{name}` segments of `template`, valued from the concrete `path` it matched."""
    names = template.strip("/").split("/")
    parts = path.strip("/").split("/")
    params: dict[str, str] = {}
    for i, name in enumerate(names):
        if name.startswith("{") and name.endswith("}") and i < len(parts):
            key, _, kind = name[1:-1].partition(":")
            params[key] = "/".join(parts[i:]) if kind == "path" else parts[i]
    return params


def named_participant(params: Mapping[str, str], query_string: bytes) -> str | None:
    if params.get("record"):
        return params["record"]
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=False)
    for name in PARTICIPANT_QUERY:
        if query.get(name):
            return query[name][0][:200]
    return None


@dataclass(frozen=True)
class Access:
    """One request that touches participant data, as it will be recorded."""

    caller: Caller
    rule: RoutePermission
    method: str
    path: str
    params: dict[str, str]
    record: str | None
    request_id: str | None
    caller_request_id: str | None = None  # the caller's own X-Request-ID: a label, not ours

    @classmethod
    def of(cls, rule: RoutePermission, caller: Caller, *, method: str, path: str,
           query_string: bytes, request_id: str | None,
           caller_request_id: str | None = None) -> Access | None:
        """The access to record, or None when the request touches no participant data."""
        params = path_params(rule.template, path)
        record = named_participant(params, query_string)
        if not rule.participant_data and record is None:
            return None
        return cls(caller, rule, method, path, params, record, request_id, caller_request_id)


def record_access(engine: Engine, access: Access, *, status: int) -> None:
    method = "GET" if access.method == "HEAD" else access.method
    with unit_of_work(engine) as session:
        audit.append(
            session, actor=access.caller.subject, role=access.caller.role.value,
            action="participant_data.read" if method in READS else "participant_data.write",
            entity_type="participant" if access.record else "participant_data",
            entity_id=access.record or access.path, record=access.record,
            after={"route": access.rule.template, "method": method, "status": status,
                   "params": access.params,
                   **({"caller_request_id": access.caller_request_id}
                      if access.caller_request_id else {})},
            correlation_id=access.request_id)
