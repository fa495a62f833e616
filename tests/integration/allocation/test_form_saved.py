"""The bus path: `redcap.form_saved_for_allocation` → prediction → `allocation.cluster_assigned`,
against a real nats-server and database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import Session, select

from services.allocation import service
from services.allocation.domain import ClusterPredictor, read_model
from services.allocation.models import ParticipantPrediction, ReviewRequest, WithdrawalSeen
from services.core.audit import AuditEntry
from services.core.bus import Bus
from services.core.db import unit_of_work
from services.core.events import (
    AllocationNeedsReview,
    ClusterAssigned,
    Envelope,
    FormSaved,
    FormSavedForAllocation,
)
from services.core.outbox import OutboxMessage
from services.core.protocol import TrialProtocol
from services.core.sealed_events import open_form_saved, seal_form_saved
from tests.support.harness import RunningService
from tests.support.sealed import keyring, opened_cluster, recipient

from .conftest import baseline_fields, form_saved, publish, published, settled


def audit_trail(svc: RunningService, record: str) -> list[AuditEntry]:
    with Session(svc.kernel.engine) as session:
        return list(session.exec(select(AuditEntry).where(AuditEntry.record == record)
                                 .order_by(AuditEntry.seq)))  # type: ignore[arg-type]


def rows(svc: RunningService, table: type) -> list:
    with Session(svc.kernel.engine) as session:
        return list(session.exec(select(table)))


def independent_predictor(protocol: TrialProtocol) -> ClusterPredictor:
    rules = protocol.allocation
    model = read_model(Path(rules.model.path), expected_sha256=rules.model.sha256,
                       clusters=[c.key for c in protocol.clusters])
    return ClusterPredictor.from_rules(model, rules)


async def test_completed_baseline_assigns_one_cluster_despite_duplicates_and_resaves(
        allocation: RunningService, observer: Bus, protocol: TrialProtocol,
        reference_rows: list[dict[str, str]]) -> None:
    row = reference_rows[0]
    fields = baseline_fields(protocol, row, "P-001")
    first = form_saved("P-001", fields, correlation_id="corr-P-001")
    assigned_before = service.PREDICTIONS.labels("assigned")._value.get()
    ignored_before = service.PREDICTIONS.labels("ignored")._value.get()

    await publish(observer, first)
    await publish(observer, first, msg_id=f"{first.id}-republished")  # same event id again
    await publish(observer, form_saved("P-001", fields, instrument="mpid"))  # staff re-save
    await publish(observer, form_saved("P-001", {"ae_term": "headache"},  # not a baseline form
                                       instrument="adverse_event"))
    await settled(allocation, observer)

    [env] = await published(observer, ClusterAssigned.subject)
    event = env.payload(ClusterAssigned)
    sealed = opened_cluster(event)  # only randomization's key opens it
    expected = independent_predictor(protocol).predict_items(
        row, age=row["age"], sex=int(row["sex"]), item_prefix="mpid_")
    assert (env.record, env.correlation_id, env.producer) == ("P-001", "corr-P-001", "allocation")
    assert sealed.cluster == expected.cluster
    assert sealed.probabilities == expected.probabilities
    assert event.model_version == expected.model_version
    assert not await published(observer, AllocationNeedsReview.subject)

    [stored] = rows(allocation, ParticipantPrediction)
    assert (stored.record, stored.cluster, stored.trigger_event_id) == ("P-001", sealed.cluster, first.id)
    actions = [e.action for e in audit_trail(allocation, "P-001")]
    assert actions == ["prediction.created", "prediction.ignored"]
    assert service.PREDICTIONS.labels("assigned")._value.get() == assigned_before + 1
    assert service.PREDICTIONS.labels("ignored")._value.get() == ignored_before + 1


async def test_audit_proves_the_prediction_by_digest_without_revealing_the_cluster(
        allocation: RunningService, observer: Bus, protocol: TrialProtocol,
        reference_rows: list[dict[str, str]]) -> None:
    for i, row in enumerate(reference_rows[:3]):
        record = f"P-10{i}"
        await publish(observer, form_saved(record, baseline_fields(protocol, row, record)))
    await settled(allocation, observer)

    predictions = rows(allocation, ParticipantPrediction)
    assert len(predictions) == 3
    for p in predictions:
        [created] = [e for e in audit_trail(allocation, p.record) if e.action == "prediction.created"]
        after = json.loads(created.after or "{}")
        assert "cluster" not in after and "probabilities" not in after
        assert p.cluster not in json.dumps(after).replace(p.digest, "")
        recomputed = service.prediction_digest(
            record=p.record, scales=p.scales, t_scores=p.t_scores, probabilities=p.probabilities,
            cluster=p.cluster, low_confidence=p.low_confidence, model_version=p.model_version,
            salt=p.salt)
        assert after["digest"] == p.digest == recomputed


async def test_unscorable_baseline_asks_for_review_once_and_assigns_nothing(
        allocation: RunningService, observer: Bus, protocol: TrialProtocol,
        reference_rows: list[dict[str, str]]) -> None:
    row = reference_rows[1]
    skipped = {f"mpid_{i}": "" for i in ("1_2", "1_3", "1_4")}  # 3 interference items
    fields = baseline_fields(protocol, row, "P-002", **skipped)
    await publish(observer, form_saved("P-002", fields, correlation_id="corr-P-002"))
    await publish(observer, form_saved("P-002", fields, instrument="mpid"))
    await settled(allocation, observer)

    assert not await published(observer, ClusterAssigned.subject)
    [env] = await published(observer, AllocationNeedsReview.subject)
    review = env.payload(AllocationNeedsReview)
    assert (review.record, review.field) == ("P-002", "I")
    assert "scale I" in review.reason and env.correlation_id == "corr-P-002"
    assert len(rows(allocation, ReviewRequest)) == 1
    assert [e.action for e in audit_trail(allocation, "P-002")] == ["prediction.needs_review"]

    # staff complete the items: the next save predicts
    await publish(observer, form_saved("P-002", baseline_fields(protocol, row, "P-002")))
    await settled(allocation, observer)
    [assigned] = await published(observer, ClusterAssigned.subject)
    assert assigned.record == "P-002"


async def test_invalid_item_value_asks_for_review_naming_the_field(
        allocation: RunningService, observer: Bus, protocol: TrialProtocol,
        reference_rows: list[dict[str, str]]) -> None:
    fields = baseline_fields(protocol, reference_rows[2], "P-003", mpid_1_3="9")
    await publish(observer, form_saved("P-003", fields))
    await settled(allocation, observer)

    assert not await published(observer, ClusterAssigned.subject)
    [env] = await published(observer, AllocationNeedsReview.subject)
    review = env.payload(AllocationNeedsReview)
    assert review.field == "mpid_1_3" and "mpid_1_3" in review.reason


async def test_nothing_happens_until_the_allocation_conditions_hold(
        allocation: RunningService, observer: Bus, protocol: TrialProtocol,
        reference_rows: list[dict[str, str]]) -> None:
    f = protocol.redcap.fields
    row = reference_rows[3]
    waiting = {
        "P-no-consent": baseline_fields(protocol, row, "P-no-consent", **{f.consent: ""}),
        "P-ineligible": baseline_fields(protocol, row, "P-ineligible", **{f.eligible: "0"}),
        "P-incomplete": baseline_fields(protocol, row, "P-incomplete", hads_complete="1"),
        "P-withdrawn": baseline_fields(protocol, row, "P-withdrawn"),
    }
    # the withdrawal is saved in a later event, before the baseline is complete
    await publish(observer, form_saved("P-withdrawn", {f.withdrawn: "1", "withdrawal_complete": "2"},
                                       instrument="withdrawal", event="week_4_arm_1"))
    for record, fields in waiting.items():
        await publish(observer, form_saved(record, fields))
    # a complete baseline saved in another event is not the baseline
    await publish(observer, form_saved("P-other-event", baseline_fields(protocol, row, "P-other-event"),
                                       event="week_4_arm_1"))
    await publish(observer, form_saved("P-ready", baseline_fields(protocol, row, "P-ready")))
    await settled(allocation, observer)

    assert [e.record for e in await published(observer, ClusterAssigned.subject)] == ["P-ready"]
    assert not await published(observer, AllocationNeedsReview.subject)
    assert [p.record for p in rows(allocation, ParticipantPrediction)] == ["P-ready"]
    assert [w.record for w in rows(allocation, WithdrawalSeen)] == ["P-withdrawn"]
    for record in waiting:
        expected = ["withdrawal.recorded"] if record == "P-withdrawn" else []
        assert [e.action for e in audit_trail(allocation, record)] == expected


async def test_a_retracted_withdrawal_no_longer_blocks_the_prediction(
        allocation: RunningService, observer: Bus, protocol: TrialProtocol,
        reference_rows: list[dict[str, str]]) -> None:
    f = protocol.redcap.fields
    fields = baseline_fields(protocol, reference_rows[4], "P-004", **{f.withdrawn: "1"})
    await publish(observer, form_saved("P-004", fields, instrument="withdrawal"))
    await settled(allocation, observer)
    assert not await published(observer, ClusterAssigned.subject)

    fields[f.withdrawn] = "0"  # a data-entry error, corrected on the same form
    await publish(observer, form_saved("P-004", fields, instrument="withdrawal"))
    await settled(allocation, observer)
    [env] = await published(observer, ClusterAssigned.subject)
    assert env.record == "P-004"
    assert [e.action for e in audit_trail(allocation, "P-004")] == [
        "withdrawal.recorded", "withdrawal.retracted", "prediction.created"]


async def test_site_and_pilot_flag_travel_with_the_cluster_when_the_protocol_names_them(
        api: RunningService, protocol: TrialProtocol, reference_rows: list[dict[str, str]]) -> None:
    rules = protocol.allocation.model_copy(update={"site_field": "redcap_data_access_group",
                                                   "pilot_field": "scr_qa_pilot"})
    with_site = protocol.model_copy(update={"allocation": rules})
    for record, pilot in (("P-300", "1"), ("P-301", "0")):
        fields = baseline_fields(protocol, reference_rows[7], record,
                                 redcap_data_access_group="berlin", scr_qa_pilot=pilot)
        env = form_saved(record, fields)
        with unit_of_work(api.kernel.engine) as session:
            outcome = service.record_form_saved(
                session, saved=open_form_saved(env, keyring("allocation")), protocol=with_site,
                seal_to=api.deps.randomization_key,
                trigger=service.Trigger(event_id=env.id, correlation_id=env.id),
                predictor=api.deps.predictor)
        assert outcome is service.Outcome.ASSIGNED
    with Session(api.kernel.engine) as session:
        staged = [Envelope.model_validate_json(m.envelope) for m in session.exec(
            select(OutboxMessage).where(OutboxMessage.subject == ClusterAssigned.subject))]
    assigned = {e.record: e.payload(ClusterAssigned) for e in staged}
    assert {(a.site, a.pilot) for a in assigned.values()} == {("berlin", True), ("berlin", False)}
    assert assigned["P-300"].pilot and not assigned["P-301"].pilot


async def test_a_save_sealed_to_another_consumer_or_record_is_refused(
        allocation: RunningService, observer: Bus, protocol: TrialProtocol,
        reference_rows: list[dict[str, str]]) -> None:
    fields = baseline_fields(protocol, reference_rows[4], "P-005")
    saved = FormSaved(project_id=101, record="P-005", event="t0_baseline_arm_1",
                      instrument="odi", complete_status=2, fields=fields, trigger="det")
    for_notifications = seal_form_saved(recipient("notifications"), saved)
    wrong_key = Envelope(subject=FormSavedForAllocation.subject, producer="gateway",
                         record="P-005", data={"record": "P-005",
                                               "sealed": for_notifications.sealed})
    proper = form_saved("P-005", fields)
    moved = Envelope(subject=proper.subject, producer="gateway", record="P-006",
                     data={**proper.data, "record": "P-006"})  # another participant's row
    await publish(observer, wrong_key)
    await publish(observer, moved)
    await settled(allocation, observer)
    assert not rows(allocation, ParticipantPrediction)  # both refused as poison

    await publish(observer, proper)
    await settled(allocation, observer)
    assert [p.record for p in rows(allocation, ParticipantPrediction)] == ["P-005"]
