"""REST: who may ask for a prediction, what a bad request is told, the active model."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, select

from services.allocation import service
from services.allocation.domain import ITEM_KEYS
from services.core.audit import AuditEntry
from services.core.bus import Bus
from services.core.protocol import TrialProtocol
from tests.support.harness import RunningService

from .conftest import baseline_fields, form_saved, publish, settled

CENTROID_ID = {"PS": 3.38, "I": 3.03, "LC": 3.33, "AD": 3.28, "S": 1.53, "PR": 1.51,
               "SR": 1.14, "DR": 1.08, "GA": 2.47}


def audit_actions(svc: RunningService) -> list[AuditEntry]:
    with Session(svc.kernel.engine) as session:
        return list(session.exec(select(AuditEntry).order_by(AuditEntry.seq)))  # type: ignore[arg-type]


def items_of(row: dict[str, str]) -> dict[str, int]:
    return {k: int(row[f"mpid_{k}"]) for k in ITEM_KEYS if row[f"mpid_{k}"].strip()}


async def test_predictions_need_a_token_and_an_unblinded_role(api: RunningService) -> None:
    body = {"scales": CENTROID_ID, "age": 50, "sex": 1}
    assert (await api.client.post("/v1/predictions", json=body)).status_code == 401
    for blinded in ("coordinator", "assessor", "monitor", "ops"):
        response = await api.client.post("/v1/predictions", json=body,
                                         headers=api.as_role(blinded))
        assert response.status_code == 403, blinded
        assert "cluster" not in response.text
    response = await api.client.post("/v1/predictions", json=body,
                                     headers=api.as_role("study_manager"))
    assert response.status_code == 200, response.text
    assert response.json()["cluster"] == "ID"


async def test_what_if_prediction_is_audited_by_digest_and_not_stored(
        api: RunningService, reference_rows: list[dict[str, str]]) -> None:
    row = reference_rows[5]
    body = {"items": items_of(row), "age": float(row["age"]), "sex": int(row["sex"])}
    response = await api.client.post("/v1/predictions", json=body,
                                     headers=api.as_role("study_manager", "sm-1"))
    assert response.status_code == 200, response.text
    result = response.json()
    by_redcap_name = {**body, "items": {f"mpid_{k}": v for k, v in body["items"].items()}}
    again = await api.client.post("/v1/predictions", json=by_redcap_name,
                                  headers=api.as_role("study_manager", "sm-1"))
    assert again.status_code == 200, again.text
    assert again.json()["probabilities"] == result["probabilities"]
    expected = api.deps.predictor.predict_items(
        row, age=row["age"], sex=int(row["sex"]), item_prefix="mpid_")
    assert result["cluster"] == expected.cluster
    assert result["probabilities"] == pytest.approx(expected.probabilities)

    [computed, _] = [e for e in audit_actions(api) if e.action == "prediction.computed"]
    after = json.loads(computed.after or "{}")
    assert (computed.actor, computed.role) == ("sm-1", "study_manager")
    assert set(after) == {"digest", "model_version", "input"}
    assert after["digest"] == result["audit_digest"] == service.prediction_digest(
        record=None, scales=result["scales"], t_scores=result["t_scores"],
        probabilities=result["probabilities"], cluster=result["cluster"],
        low_confidence=result["low_confidence"], model_version=result["model_version"],
        salt=result["salt"])
    missing = await api.client.get("/v1/predictions/what-if",
                                   headers=api.as_role("study_manager"))
    assert missing.status_code == 404


BAD_INPUT = [
    ({"items": {**{k: 3 for k in ITEM_KEYS}, "1_3": 9}}, "items.1_3"),
    ({"items": {**{k: 3 for k in ITEM_KEYS}, "1_6": -99}}, "items.1_6"),
    ({"items": {f"mpid_{k}": 3 if k != "1_3" else 9 for k in ITEM_KEYS}}, "items.mpid_1_3"),
    ({"items": {**{k: 3 for k in ITEM_KEYS}, "4_1": 3}}, "items.4_1"),
    ({"items": {**{k: 3 for k in ITEM_KEYS}, "mpid_1_1": 3}}, "items"),
    ({"items": {**{k: 3 for k in ITEM_KEYS}, "1_3": "often"}}, "items.1_3"),
    ({"scales": {**CENTROID_ID, "GA": 7.5}}, "scales.GA"),
    ({"scales": {k: v for k, v in CENTROID_ID.items() if k != "PS"}}, "scales.PS"),
    ({"age": -4}, "age"),
    ({"age": "old"}, "age"),
    ({"sex": 2}, "sex"),
    ({"scales": None}, "items"),
]


async def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
        api: RunningService) -> None:
    before = len(audit_actions(api))
    for change, field in BAD_INPUT:
        body = {"scales": CENTROID_ID, "age": 50, "sex": 0, **change}
        if "items" in change:
            body.pop("scales")
        response = await api.client.post("/v1/predictions", json=body,
                                         headers=api.as_role("study_manager"))
        assert response.status_code == 422, (field, response.text)
        problem = response.json()
        named = {problem.get("field"), *(e["field"] for e in problem.get("errors", []))}
        assert field in named, problem
    assert len(audit_actions(api)) == before


async def test_unscorable_items_are_refused_naming_the_scale(api: RunningService) -> None:
    items = {k: 3 for k in ITEM_KEYS if k not in ("1_2", "1_3", "1_4")}
    response = await api.client.post("/v1/predictions",
                                     json={"items": items, "age": 40, "sex": 1},
                                     headers=api.as_role("study_manager"))
    assert response.status_code == 422
    assert response.json()["field"] == "items" and "scale I" in response.json()["detail"]


async def test_active_model_summary_states_its_synthetic_origin(
        api: RunningService, protocol: TrialProtocol) -> None:
    assert (await api.client.get("/v1/models/active")).status_code == 401
    forbidden = await api.client.get("/v1/models/active",
                                     headers=api.as_role("coordinator"))
    assert forbidden.status_code == 403
    response = await api.client.get("/v1/models/active",
                                    headers=api.as_role("statistician"))
    assert response.status_code == 200, response.text
    model = response.json()
    assert model["sha256"] == protocol.allocation.model.sha256
    assert model["synthetic"] is True and model["training_data"]["synthetic"] is True
    assert model["classes"] == [c.key for c in protocol.clusters]
    assert model["features"] == ["PS", "I", "LC", "AD", "S", "PR", "SR", "DR", "GA", "age", "sex"]
    assert 0 < model["metrics"]["cv_accuracy"] <= 1


async def test_stored_prediction_is_read_by_the_study_manager_only(
        allocation: RunningService, observer: Bus, protocol: TrialProtocol,
        reference_rows: list[dict[str, str]]) -> None:
    await publish(observer, form_saved("P-200", baseline_fields(protocol, reference_rows[6], "P-200")))
    await settled(allocation, observer)
    path = "/v1/predictions/P-200"
    assert (await allocation.client.get(path)).status_code == 401
    blinded = await allocation.client.get(path, headers=allocation.as_role("coordinator"))
    assert blinded.status_code == 403
    response = await allocation.client.get(path, headers=allocation.as_role("study_manager", "sm-2"))
    assert response.status_code == 200, response.text
    assert response.json()["record"] == "P-200"
    assert response.json()["cluster"] in {c.key for c in protocol.clusters}
    reads = [e for e in audit_actions(allocation) if e.action == "prediction.read"]
    assert [(e.record, e.actor) for e in reads] == [("P-200", "sm-2")]
    unknown = await allocation.client.get("/v1/predictions/P-none",
                                          headers=allocation.as_role("study_manager"))
    assert unknown.status_code == 404 and unknown.json()["field"] == "record"
