"""The reports routes through the gateway, with the real randomization service behind the
per-arm figures: blinded roles get the pooled flow only (JSON, CSV and SVG), unblinded
roles get it per arm as well, and each such read is in the reports service's audit chain."""

from __future__ import annotations

import time

from sqlmodel import Session, select

from services.core.audit import AuditEntry
from services.core.roles import Role

from .support import Edge, Trial, leaks, unblinding_words

FLOW = "/api/v1/reports/v1/flow"
BLINDED_READERS = (Role.COORDINATOR, Role.STATISTICIAN, Role.MONITOR)
UNBLINDED_READERS = (Role.STUDY_MANAGER, Role.DSMB)


def _settled(edge: Edge, trial: Trial) -> dict:
    deadline = time.monotonic() + 20
    while True:
        flow = edge.call("GET", FLOW, Role.MONITOR).json()
        if flow.get("randomized") == len(trial.records) or time.monotonic() > deadline:
            return flow
        time.sleep(0.2)


def test_blinded_roles_get_the_pooled_flow_only(edge: Edge, trial: Trial) -> None:
    assert _settled(edge, trial)["randomized"] == len(trial.records)
    arms = [a.key for a in edge.protocol.arms]
    words = unblinding_words(edge.protocol)
    for role in BLINDED_READERS:
        flow = edge.call("GET", FLOW, role)
        assert flow.status_code == 200, (role, flow.text)
        body = flow.json()
        assert body["by_arm"] is None and body["by_cluster_module"] is None
        assert body["pooled"]["group"] == "all" and leaks(body, words) == []
        csv = edge.call("GET", FLOW, role, params={"format": "csv"}).text
        groups = {line.split(",")[2] for line in csv.splitlines()[1:]}
        assert groups == {"all"}, (role, groups)
        svg = edge.call("GET", FLOW, role, params={"format": "svg"}).text
        assert "Allocated:" not in svg and not any(f">{a}<" in svg for a in arms)
        accept = edge.call("GET", "/api/v1/reports/v1/acceptability", Role.MONITOR).json()
        assert accept["by_arm"] is None


def test_unblinded_roles_get_the_flow_per_arm_and_the_read_is_audited(edge: Edge, trial: Trial) -> None:
    _settled(edge, trial)
    arms = {a.key for a in edge.protocol.arms}
    for role in UNBLINDED_READERS:
        flow = edge.call("GET", FLOW, role)
        assert flow.status_code == 200, (role, flow.text)
        body = flow.json()
        assert {g["group"] for g in body["by_arm"]} >= arms
        assert sum(g["allocated"] for g in body["by_arm"]) == body["randomized"] == len(trial.records)
        assert sum(g["allocated"] for g in body["by_cluster_module"]) == body["randomized"]
        svg = edge.call("GET", FLOW, role, params={"format": "svg"}).text
        assert "Allocated: personalized" in svg
    safety = edge.call("GET", "/api/v1/reports/v1/acceptability", Role.DSMB).json()
    assert sum(g["randomized"] for g in safety["by_arm"]) == safety["pooled"]["randomized"]
    assert sum(g["adverse_events"]["events"] for g in safety["by_arm"]) <= \
        safety["pooled"]["adverse_events"]["events"]
    with Session(edge.service_apps["reports"].state.kernel.engine) as session:
        reads = session.exec(select(AuditEntry).where(
            AuditEntry.action == "report.unblinded_read")).all()
    assert {r.role for r in reads} >= {r.value for r in UNBLINDED_READERS}
    assert all("personalized" not in (r.after or "") for r in reads)  # a digest, never the map


def test_roles_outside_the_table_are_refused(edge: Edge) -> None:
    for role in (Role.OPS, Role.ADMIN, Role.ASSESSOR):
        assert edge.call("GET", FLOW, role).status_code == 403, role
    assert edge.call("GET", "/api/v1/reports/v1/acceptability", Role.COORDINATOR).status_code == 403
    assert edge.call("GET", FLOW).status_code == 401
