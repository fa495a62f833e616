"""One path, one correlation id: what the guard checks, records and forwards is the same
participant id, and no caller chooses the id their actions are recorded under."""

from __future__ import annotations

import pytest

from services.core.roles import Role

from .support import Edge, Trial

ALLOCATION = "/api/v1/randomization/v1/allocations/{}"
ROUTE = "/api/v1/randomization/v1/allocations/{record}"


def _reads(edge: Edge) -> int:
    return len(edge.call("GET", "/api/v1/audit", Role.MONITOR,
                         params={"service": "gateway", "action": "participant_data.*",
                                 "limit": 1000}).json()["entries"])


@pytest.mark.parametrize("hidden", ["%09", "%20", "%0A", "%00", "%7F", "%E2%80%8B", "%C2%A0"])
def test_a_record_id_with_whitespace_or_control_characters_is_refused(
        edge: Edge, trial: Trial, hidden: str) -> None:
    record = trial.records[0]  # `GW-001`: `GW-0<TAB>01` was audited as itself, served as GW-001
    before = _reads(edge)
    refused = edge.call("GET", ALLOCATION.format(f"{record[:4]}{hidden}{record[4:]}"),
                        Role.COORDINATOR)
    assert refused.status_code == 400, refused.text
    assert refused.json()["field"] == "record"
    assert _reads(edge) == before  # nothing was read, so nothing is recorded as read


def test_a_participant_named_in_the_query_with_a_control_character_is_refused(
        edge: Edge, trial: Trial) -> None:
    refused = edge.call("GET", f"/api/v1/audit?participant={trial.records[0]}%09",
                        Role.MONITOR)
    assert refused.status_code == 400 and refused.json()["field"] == "participant"


def test_the_callers_request_id_is_a_label_not_the_correlation_id(edge: Edge, trial: Trial) -> None:
    record = trial.records[2]
    read = edge.call("GET", ALLOCATION.format(record), Role.STUDY_MANAGER,
                     headers={"X-Request-ID": "forged-correlation"})
    assert read.status_code == 200
    ours = read.headers["x-request-id"]
    assert ours != "forged-correlation" and len(ours) == 32
    entries = edge.call("GET", "/api/v1/audit", Role.MONITOR,
                        params={"service": "gateway", "participant": record,
                                "action": "participant_data.*", "limit": 1000}).json()["entries"]
    entry = [e for e in entries if e["after"]["route"] == ROUTE][-1]
    assert entry["correlation_id"] == ours
    assert entry["after"]["caller_request_id"] == "forged-correlation"
    # The service's own record of the unblinded read names no caller-chosen id either.
    randomization = edge.call("GET", "/api/v1/audit", Role.MONITOR,
                              params={"service": "randomization", "limit": 1000}).json()["entries"]
    assert all(e["correlation_id"] != "forged-correlation" for e in randomization)
