"""POST /v1/adverse-events: the HTTP mapping of validation, roles, obligations and events."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.core.events import SafetyObligationOpened
from tests.support.harness import RunningService

from .safety_support import AWARE, BusProbe, ae_body, audit_entries, criteria, sae_body, sqlite_only

URL = "/v1/adverse-events"
REQUIRED = ("participant", "onset_date", "awareness_time", "verbatim_term", "severity",
            "seriousness", "relatedness", "outcome", "action_taken", "reporter")


def fields_of(response) -> set[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {e["field"] for e in response.json()["errors"]}


@sqlite_only
async def test_each_missing_field_is_named(safety: RunningService) -> None:
    so = safety.as_role("safety_officer")
    for name in REQUIRED:
        body = ae_body()
        del body[name]
        assert name in fields_of(await safety.client.post(URL, json=body, headers=so)), name
    body = ae_body(seriousness={k: v for k, v in criteria().items() if k != "disability"})
    assert "seriousness.disability" in fields_of(await safety.client.post(URL, json=body, headers=so))


@sqlite_only
async def test_every_malformed_field_is_named_in_one_answer(safety: RunningService) -> None:
    body = ae_body(participant="", onset_date="yesterday", awareness_time="2025-03-10T08:00:00",
                   verbatim_term="", severity="catastrophic", grade=7,
                   seriousness=criteria(death="maybe"), relatedness="perhaps", expected="often",
                   outcome="better", action_taken="shrugged", reporter="",
                   meddra={"version": "27", "llt_code": "123"}, narrative=["not", "text"],
                   colour="blue")
    named = fields_of(await safety.client.post(URL, json=body, headers=safety.as_role("coordinator")))
    assert named >= {"participant", "onset_date", "awareness_time", "verbatim_term", "severity",
                     "grade", "seriousness.death", "relatedness", "expected", "outcome",
                     "action_taken", "reporter", "meddra.version", "meddra.llt_code", "narrative",
                     "colour"}
    not_an_object = await safety.client.post(URL, json=["x"], headers=safety.as_role("coordinator"))
    assert not_an_object.status_code == 422


@sqlite_only
async def test_contradictory_fields_are_named(safety: RunningService) -> None:
    so = safety.as_role("safety_officer")
    cases = {
        "outcome": ae_body(seriousness=criteria(death=True), severity="severe"),
        "seriousness.death": ae_body(outcome="fatal"),
        "onset_date": ae_body(onset_date=(AWARE + timedelta(days=2)).date().isoformat()),
        "awareness_time": ae_body(awareness_time="2025-03-11T08:00:00+00:00"),  # after the clock
        "grade": ae_body(grade=1, severity="severe"),
    }
    for field, body in cases.items():
        assert field in fields_of(await safety.client.post(URL, json=body, headers=so)), field
    listed = await safety.client.get(URL, headers=so)
    assert listed.json() == []  # nothing was stored by any refused request
    assert not [e for e in audit_entries(safety) if e.action.startswith("case.")]


@sqlite_only
async def test_only_reporting_roles_may_post_and_a_token_is_required(safety: RunningService) -> None:
    for role in ("assessor", "monitor", "dsmb", "study_manager", "ops", "admin"):
        response = await safety.client.post(URL, json=ae_body(), headers=safety.as_role(role))
        assert response.status_code == 403, role
    assert (await safety.client.post(URL, json=ae_body())).status_code == 401
    created = await safety.client.post(URL, json=ae_body(), headers=safety.as_role("coordinator"))
    assert created.status_code == 201, created.text
    assert (await safety.client.get(URL, headers=safety.as_role("coordinator"))).status_code == 403


async def test_susar_opens_24h_and_15_day_obligations_and_announces_them(
        safety: RunningService, probe: BusProbe) -> None:
    so = safety.as_role("safety_officer", subject="dr-safety")
    created = await safety.client.post(URL, json=sae_body(), headers=so)
    assert created.status_code == 201, created.text
    case = created.json()
    assert case["assessment"] == {"serious": True, "related": True, "unexpected": True,
                                  "susar": True}
    deadlines = {o["rule_key"]: datetime.fromisoformat(o["deadline_at"])
                 for o in case["obligations"]}
    assert deadlines == {
        "sae_to_sponsor": AWARE + timedelta(hours=24),
        "susar_to_ethics": AWARE + timedelta(days=15),
    }
    assert {o["status"] for o in case["obligations"]} == {"open"}

    severe_not_serious = await safety.client.post(
        URL, json=ae_body(severity="severe", participant="PP-002"), headers=so)
    assert severe_not_serious.json()["obligations"] == []  # severity starts no clock

    opened = await probe.published(SafetyObligationOpened.subject)
    payloads = {e.data["rule"]: e.payload(SafetyObligationOpened) for e in opened}
    assert set(payloads) == {"sae_to_sponsor", "susar_to_ethics"}
    sponsor = payloads["sae_to_sponsor"]
    assert sponsor.case_id == case["case_id"] and sponsor.record == "PP-001"
    assert sponsor.recipients == ["sponsor", "principal_investigator"]
    assert sponsor.deadline == AWARE + timedelta(hours=24)
    assert payloads["susar_to_ethics"].recipients == ["ethics_committee"]
    assert {e.producer for e in opened} == {"safety"}


@sqlite_only
async def test_case_export_follows_the_e2b_sections(safety: RunningService) -> None:
    case = (await safety.client.post(URL, json=sae_body(), headers=safety.as_role("coordinator"))).json()
    url = f"{URL}/{case['case_id']}/e2b"
    assert (await safety.client.get(url, headers=safety.as_role("coordinator"))).status_code == 403
    doc = (await safety.client.get(url, headers=safety.as_role("safety_officer"))).json()
    assert {"administration", "study", "patient", "reactions", "drugs", "narrative"} <= set(doc)
    assert doc["case_id"] == case["case_id"]
    admin = doc["administration"]
    assert admin["C.1.1_sender_safety_report_unique_identifier"].startswith("DE-PERPAINCONSORTIUM-")
    assert doc["study"]["C.5.1.r_study_registration"][0]["C.5.1.r.1_study_registration_number"] \
        == "DRKS00022792"
    assert doc["reactions"][0]["E.i.3.2c_caused_prolonged_hospitalisation"] is True
    missing = await safety.client.get(f"{URL}/ae-nope/e2b", headers=safety.as_role("safety_officer"))
    assert missing.status_code == 404 and missing.json()["field"] == "case_id"
