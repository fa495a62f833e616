"""REDCap saves on the bus: the adverse-event form (one case per instance, whatever the
redelivery), the NEQ (candidates, never an SAE) and the INEP (scored)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlmodel import Session, select

from services.core.events import SafetyObligationOpened
from services.safety.intake import RESAVED_REASON
from services.safety.models import SafetyQuestionnaireScore
from tests.support.harness import RunningService, eventually

from .safety_support import (
    AWARE,
    BusProbe,
    FrozenClock,
    ae_form,
    assert_audit_verified_and_blind,
    envelope,
    form_saved,
    sqlite_only,
)

SO = "safety_officer"


async def _cases(safety: RunningService) -> list[dict]:
    return (await safety.client.get("/v1/adverse-events", headers=safety.as_role(SO))).json()


async def _case(safety: RunningService, case_id: str) -> dict:
    return (await safety.client.get(f"/v1/adverse-events/{case_id}", headers=safety.as_role(SO))).json()


async def test_duplicated_and_redelivered_ae_form_creates_one_case(
        safety: RunningService, probe: BusProbe, clock: FrozenClock) -> None:
    saved = envelope(form_saved("adverse_event", ae_form()), record="PP-001")
    await probe.send(saved)
    await probe.send(saved)  # the same envelope again (redelivery after the duplicate window)
    await probe.send(envelope(form_saved("adverse_event", ae_form())))  # a second DET, same data
    clock.advance(hours=1)
    changed = ae_form(ae_outcome="1")  # recovered; follow-up reason left blank
    await probe.send(envelope(form_saved("adverse_event", changed)))
    await eventually(lambda: _has_versions(safety, 2))

    [summary] = await _cases(safety)
    case = await _case(safety, summary["case_id"])
    assert summary["record"] == "PP-001" and summary["source"] == "redcap"
    assert [v["reason"] for v in case["versions"]] == ["initial report", RESAVED_REASON]
    assert datetime.fromisoformat(case["latest"]["awareness_time"]) == AWARE  # 09:00 Berlin
    assert [o["rule_key"] for o in case["obligations"]] == ["sae_to_sponsor"]
    opened = await probe.published(SafetyObligationOpened.subject)
    assert len(opened) == 1 and opened[0].data["case_id"] == case["case_id"]

    # Instance 1 of another REDCap event is another adverse event.
    await probe.send(envelope(form_saved("adverse_event", ae_form(ae_term="dizziness"),
                                         event="week_8_arm_1")))
    await eventually(lambda: _count(safety, 2))
    actions = assert_audit_verified_and_blind(safety)
    assert actions.count("case.created") == 2 and actions.count("case.versioned") == 1


@sqlite_only
async def test_invalid_ae_draft_is_skipped_and_a_complete_one_is_refused(
        safety: RunningService, probe: BusProbe) -> None:
    draft = ae_form(ae_term="", adverse_event_complete="0")
    await probe.send(envelope(form_saved("adverse_event", draft, complete=0)))
    await probe.send(envelope(form_saved("adverse_event", ae_form(ae_serious="0"), instance=2)))
    marker = form_saved("adverse_event", ae_form(ae_term="headache"), instance=3)
    await probe.send(envelope(marker))
    await eventually(lambda: _count(safety, 1))
    [only] = await _cases(safety)
    assert only["verbatim_term"] == "headache"  # the draft and the contradictory form made nothing


async def test_neq_over_threshold_opens_a_candidate_not_an_adverse_event(
        safety: RunningService, probe: BusProbe) -> None:
    neq = {"neq_1": "1", "neq_1_impact": "4", "neq_1_attr": "1",  # treatment, extreme: candidate
           "neq_2": "1", "neq_2_impact": "4", "neq_2_attr": "2",  # other circumstances
           "neq_3": "1", "neq_3_impact": "2", "neq_3_attr": "1",  # below the threshold
           "neq_4": "0", "neq_complete": "2"}
    await probe.send(envelope(form_saved("neq", neq, event="t1_post_arm_1", instance=None)))
    calm = {"neq_1": "1", "neq_1_impact": "2", "neq_1_attr": "1", "neq_complete": "2"}
    await probe.send(envelope(form_saved("neq", calm, record="PP-002", event="t1_post_arm_1",
                                         instance=None)))
    inep = {"inep_2": "0", "inep_2_attr": "1", "inep_15": "2", "inep_complete": "2"}
    await probe.send(envelope(form_saved("inep", inep, event="t1_post_arm_1", instance=None)))
    await eventually(lambda: len(_scores(safety)) == 3)

    candidates = (await safety.client.get("/v1/candidates", headers=safety.as_role(SO))).json()
    assert [(c["record"], c["effects"], c["status"]) for c in candidates] == [
        ("PP-001", [{"item": 1, "impact": 4}], "open")]
    assert await _cases(safety) == []
    obligations = await safety.client.get("/v1/obligations", headers=safety.as_role(SO))
    assert obligations.json() == []
    scores = {(s.record, s.instrument): json.loads(s.scores) for s in _scores(safety)}
    assert scores[("PP-001", "neq")]["negative_effects"] == 3
    assert scores[("PP-001", "neq")]["attributed_to_treatment"] == 2
    assert scores[("PP-001", "neq")]["mean_impact"] == 10 / 3
    assert scores[("PP-001", "inep")]["subscales"]["partnership"]["negative_effects"] == 1

    url = f"/v1/candidates/{candidates[0]['id']}/triage"
    assert (await safety.client.post(url, json={"decision": "not_adverse_event"},
                                     headers=safety.as_role("coordinator"))).status_code == 403
    needs_case = await safety.client.post(url, json={"decision": "adverse_event"},
                                          headers=safety.as_role(SO))
    assert needs_case.status_code == 422 and needs_case.json()["field"] == "case_id"
    bad = await safety.client.post(url, json={"decision": "maybe"}, headers=safety.as_role(SO))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "decision"
    done = await safety.client.post(url, headers=safety.as_role(SO, subject="dr-t"), json={
        "decision": "not_adverse_event", "note": "expected exposure effect, discussed"})
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["triaged_by"]) == ("not_adverse_event", "dr-t")
    assert (await safety.client.post(url, json={"decision": "not_adverse_event"},
                                     headers=safety.as_role(SO))).status_code == 409
    actions = assert_audit_verified_and_blind(safety)
    assert {"candidate.opened", "candidate.triaged", "questionnaire.scored"} <= set(actions)
    assert not [a for a in actions if a.startswith(("case.", "obligation."))]


def _scores(safety: RunningService) -> list[SafetyQuestionnaireScore]:
    with Session(safety.kernel.engine) as session:
        return list(session.exec(select(SafetyQuestionnaireScore)))


async def _count(safety: RunningService, n: int) -> bool:
    return len(await _cases(safety)) == n


async def _has_versions(safety: RunningService, n: int) -> bool:
    cases = await _cases(safety)
    return bool(cases) and cases[0]["current_version"] == n



