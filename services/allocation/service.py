"""Allocation use cases. Take a session and keyword arguments; never commit.

The cluster is unblinding data: it is stored in this service's own table and sent in
`cluster_assigned` sealed to the randomization service's bus key, so no other reader of
the bus or of this outbox can see it. The audit trail, which blinded monitors read, holds
a salted SHA-256 digest of each prediction instead.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import structlog
from prometheus_client import Counter, Histogram
from sqlmodel import Session

from services.core import audit
from services.core.errors import InvalidInput, NotFound
from services.core.events import AllocationNeedsReview, ClusterAssigned, FormSaved, SealedCluster
from services.core.internal_token import Caller
from services.core.outbox import enqueue
from services.core.protocol import RedcapProject, TrialProtocol
from services.core.sealing import Recipient

from . import repository
from .domain import (
    ITEM_KEYS,
    ClusterPredictor,
    InvalidAnswer,
    InvalidCovariate,
    InvalidScaleScore,
    Prediction,
    UnscorableBaseline,
    check_age,
    sex_from_redcap,
)
from .models import ParticipantPrediction, ReviewRequest, WithdrawalSeen

log = structlog.get_logger(__name__)

PRODUCER = "allocation"
ACTOR = "service:allocation"

# Never labelled by cluster: metric labels are read by blinded operations staff.
PREDICTIONS = Counter(
    "tailor_allocation_predictions_total",
    "Baseline saves that led to a prediction, a review request, or were ignored", ["outcome"])
PREDICTION_SECONDS = Histogram(
    "tailor_allocation_prediction_duration_seconds",
    "Scoring and cluster prediction of one participant", ["source"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))


class Outcome(StrEnum):
    ASSIGNED = "assigned"
    NEEDS_REVIEW = "needs_review"
    IGNORED = "ignored"  # a save after the prediction: the prediction never changes
    REVIEW_PENDING = "review_pending"  # the same problem was reported before
    WAITING = "waiting"  # allocation conditions not (yet) met
    NOT_BASELINE = "not_baseline"  # not a save of the baseline forms


COUNTED = (Outcome.ASSIGNED, Outcome.NEEDS_REVIEW, Outcome.IGNORED)
for _outcome in COUNTED:
    PREDICTIONS.labels(_outcome.value)  # expose zeros before the first prediction


@dataclass(frozen=True)
class Trigger:
    """The bus event that caused this work, for the audit trail and tracing."""

    event_id: str
    correlation_id: str


@contextmanager
def timed(source: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        PREDICTION_SECONDS.labels(source).observe(time.perf_counter() - started)


def prediction_digest(*, record: str | None, scales: Mapping[str, float],
                      t_scores: Mapping[str, float], probabilities: Mapping[str, float],
                      cluster: str, low_confidence: bool, model_version: str, salt: str) -> str:
    """SHA-256 of the prediction: proves it later without showing it now."""
    body = {"record": record, "scales": scales, "t_scores": t_scores,
            "probabilities": probabilities, "cluster": cluster,
            "low_confidence": low_confidence, "model_version": model_version, "salt": salt}
    return hashlib.sha256(audit.canonical_json(body).encode()).hexdigest()


def digest_of(record: str | None, p: Prediction, salt: str) -> str:
    return prediction_digest(record=record, scales=p.scales, t_scores=p.t_scores,
                             probabilities=p.probabilities, cluster=p.cluster,
                             low_confidence=p.low_confidence, model_version=p.model_version,
                             salt=salt)


# ── the bus path: a REDCap form was saved ─────────────────────────────────

def is_baseline(event: str | None, redcap: RedcapProject) -> bool:
    """REDCap names events `<event>_arm_<n>` on the wire; the protocol without the arm."""
    return redcap.event_key(event) == redcap.baseline_event


def unmet_conditions(fields: Mapping[str, str], redcap: RedcapProject, *,
                     withdrawn: bool) -> list[str]:
    """What still stands between this baseline and a prediction (empty: predict now)."""
    f = redcap.fields

    def value(name: str) -> str:
        return (fields.get(name) or "").strip()

    unmet = [f"{name} is not 1" for name in (f.consent, f.eligible) if value(name) != "1"]
    unmet += [f"{form}_complete is not 2" for form in redcap.baseline_forms
              if value(f"{form}_complete") != "2"]
    if withdrawn or value(f.withdrawn) == "1":
        unmet.append("withdrawn")
    return unmet


def record_form_saved(session: Session, *, saved: FormSaved, trigger: Trigger,
                      protocol: TrialProtocol, predictor: ClusterPredictor,
                      seal_to: Recipient) -> Outcome:
    """Predict once per participant, when the allocation conditions first hold; the cluster
    is sealed to `seal_to` (the randomization service's bus key)."""
    redcap = protocol.redcap
    withdrawn = note_withdrawal(session, saved=saved, trigger=trigger, redcap=redcap)
    if not is_baseline(saved.event, redcap):
        return Outcome.NOT_BASELINE
    if repository.prediction(session, saved.record) is not None:
        if saved.instrument not in redcap.baseline_forms:
            return Outcome.NOT_BASELINE  # e.g. an adverse event reported at T0
        audit.append(session, actor=ACTOR, role="system", action="prediction.ignored",
                     entity_type="prediction", entity_id=saved.record, record=saved.record,
                     after={"trigger_event_id": trigger.event_id, "event": saved.event,
                            "instrument": saved.instrument},
                     reason="baseline saved again after the prediction; a prediction never changes",
                     correlation_id=trigger.correlation_id)
        return Outcome.IGNORED
    unmet = unmet_conditions(saved.fields, redcap, withdrawn=withdrawn)
    if unmet:
        log.debug("allocation.waiting", instrument=saved.instrument, unmet=unmet)
        return Outcome.WAITING
    f = redcap.fields
    try:
        with timed("bus"):
            sex = sex_from_redcap(saved.fields.get(f.sex), redcap.sex_codes, f.sex)
            prediction = predictor.predict_items(
                saved.fields, age=saved.fields.get(f.age), sex=sex,
                item_prefix=f.mpid_item_prefix, age_field=f.age, sex_field=f.sex)
    except UnscorableBaseline as exc:
        return request_review(session, record=saved.record, trigger=trigger,
                              reason=f"unscorable MPI-D scale {', '.join(exc.scales)}",
                              field=exc.field, detail=exc.detail)
    except (InvalidAnswer, InvalidCovariate) as exc:
        return request_review(session, record=saved.record, trigger=trigger,
                              reason=f"invalid value in {exc.field}", field=exc.field,
                              detail=exc.detail)
    assign_cluster(session, record=saved.record, prediction=prediction, trigger=trigger,
                   age=check_age(saved.fields.get(f.age), f.age), sex=sex,
                   model_sha256=predictor.model.sha256, seal_to=seal_to,
                   site=_optional(saved.fields, protocol.prediction.site_field),
                   pilot=_optional(saved.fields, protocol.prediction.pilot_field) == "1")
    return Outcome.ASSIGNED


def _optional(fields: Mapping[str, str], name: str | None) -> str | None:
    return ((fields.get(name) or "").strip() or None) if name else None


def note_withdrawal(session: Session, *, saved: FormSaved, trigger: Trigger,
                    redcap: RedcapProject) -> bool:
    """Keep the withdrawal mark seen in any event; True while it stands."""
    marked = (saved.fields.get(redcap.fields.withdrawn) or "").strip() == "1"
    seen = repository.withdrawal(session, saved.record)
    if marked and seen is None:
        repository.add_withdrawal(session, WithdrawalSeen(
            record=saved.record, event=saved.event, seen_at=datetime.now(UTC),
            trigger_event_id=trigger.event_id))
        audit.append(session, actor=ACTOR, role="system", action="withdrawal.recorded",
                     entity_type="withdrawal", entity_id=saved.record, record=saved.record,
                     after={"event": saved.event, "trigger_event_id": trigger.event_id},
                     correlation_id=trigger.correlation_id)
        return True
    corrected = (seen is not None and not marked and saved.event == seen.event
                 and saved.instrument == redcap.withdrawal_form)
    if corrected:  # the mark was taken back on the same form: a data-entry correction
        assert seen is not None
        repository.remove_withdrawal(session, seen)
        audit.append(session, actor=ACTOR, role="system", action="withdrawal.retracted",
                     entity_type="withdrawal", entity_id=saved.record, record=saved.record,
                     before={"event": seen.event, "trigger_event_id": seen.trigger_event_id},
                     after={"trigger_event_id": trigger.event_id},
                     reason=f"{redcap.fields.withdrawn} no longer 1 on the withdrawal form",
                     correlation_id=trigger.correlation_id)
        return False
    return marked or seen is not None


def assign_cluster(session: Session, *, record: str, prediction: Prediction, trigger: Trigger,
                   age: float, sex: int, model_sha256: str, seal_to: Recipient,
                   site: str | None = None, pilot: bool = False) -> ParticipantPrediction:
    """Store the prediction, audit its digest, stage `cluster_assigned` (cluster sealed)."""
    salt = secrets.token_hex(16)
    row = ParticipantPrediction(
        record=record, scales=prediction.scales, t_scores=prediction.t_scores,
        probabilities=prediction.probabilities, cluster=prediction.cluster,
        low_confidence=prediction.low_confidence, age=age, sex=sex,
        model_version=prediction.model_version, model_sha256=model_sha256, salt=salt,
        digest=digest_of(record, prediction, salt), created_at=datetime.now(UTC),
        correlation_id=trigger.correlation_id, trigger_event_id=trigger.event_id)
    repository.add_prediction(session, row)
    audit.append(session, actor=ACTOR, role="system", action="prediction.created",
                 entity_type="prediction", entity_id=record, record=record,
                 after={"digest": row.digest, "model_version": row.model_version,
                        "model_sha256": model_sha256, "low_confidence": row.low_confidence,
                        "trigger_event_id": trigger.event_id},
                 correlation_id=trigger.correlation_id)
    sealed = seal_to.seal_json(
        SealedCluster(cluster=prediction.cluster,
                      probabilities=prediction.probabilities).model_dump(mode="json"),
        subject=ClusterAssigned.subject, record=record)
    enqueue(session, ClusterAssigned(
        record=record, sealed=sealed, model_version=prediction.model_version,
        low_confidence=prediction.low_confidence, site=site, pilot=pilot),
        producer=PRODUCER, correlation_id=trigger.correlation_id, record=record)
    return row


def request_review(session: Session, *, record: str, reason: str, field: str | None,
                   detail: str, trigger: Trigger) -> Outcome:
    """Ask staff to review the baseline: once per (participant, reason)."""
    if repository.review_request(session, record, reason) is not None:
        log.debug("allocation.review_already_requested", reason=reason)
        return Outcome.REVIEW_PENDING
    repository.add_review_request(session, ReviewRequest(
        record=record, reason=reason, field=field, detail=detail, created_at=datetime.now(UTC),
        correlation_id=trigger.correlation_id, trigger_event_id=trigger.event_id))
    audit.append(session, actor=ACTOR, role="system", action="prediction.needs_review",
                 entity_type="review_request", entity_id=record, record=record,
                 after={"reason": reason, "field": field, "trigger_event_id": trigger.event_id},
                 reason=detail, correlation_id=trigger.correlation_id)
    enqueue(session, AllocationNeedsReview(record=record, reason=reason, field=field,
                                           detail=detail),
            producer=PRODUCER, correlation_id=trigger.correlation_id, record=record)
    return Outcome.NEEDS_REVIEW


# ── the REST path: study manager ──────────────────────────────────────────

@dataclass(frozen=True)
class WhatIf:
    prediction: Prediction
    digest: str
    salt: str


def compute_prediction(session: Session, *, predictor: ClusterPredictor, caller: Caller,
                       items: Mapping[str, object] | None, scales: Mapping[str, object] | None,
                       age: object, sex: object, item_prefix: str) -> WhatIf:
    """A prediction for given answers, NOT stored: a what-if tool. The read is audited.

    `items` are keyed by MPI-D item (`1_6`) or REDCap field (`item_prefix` + item); errors
    name `items.<key as given>`, `scales.<scale>`, `age` or `sex`."""
    if (items is None) == (scales is None):
        raise InvalidInput("give either item answers or scale scores", field="items")
    given = {k.removeprefix(item_prefix): k for k in items or {}}  # item key → key as sent
    try:
        with timed("http"):
            if items is not None:
                prediction = predictor.predict_items(_item_answers(items, given), age=age, sex=sex)
            else:
                prediction = predictor.predict_scales(scales or {}, age=age, sex=sex)
    except InvalidAnswer as exc:
        exc.field = f"items.{given.get(exc.field or '', exc.field)}"
        raise
    except InvalidScaleScore as exc:
        exc.field = f"scales.{exc.field}"
        raise
    except UnscorableBaseline as exc:
        exc.field = "items"  # the detail names every unscorable scale
        raise
    salt = secrets.token_hex(16)
    digest = digest_of(None, prediction, salt)
    audit.append(session, actor=caller.subject, role=caller.role.value,
                 action="prediction.computed", entity_type="prediction", entity_id="what-if",
                 after={"digest": digest, "model_version": prediction.model_version,
                        "input": "items" if items is not None else "scales"},
                 correlation_id=caller.request_id)
    return WhatIf(prediction, digest, salt)


def _item_answers(items: Mapping[str, object], given: dict[str, str]) -> dict[str, object]:
    unknown = [sent for item, sent in given.items() if item not in ITEM_KEYS]
    if unknown:
        raise InvalidInput(f"{unknown[0]!r} is not an MPI-D item (1_1 … 3_18)",
                           field=f"items.{unknown[0]}")
    if len(given) < len(items):
        raise InvalidInput("an item is given twice (by item key and by REDCap field name)",
                           field="items")
    return {item: items[sent] for item, sent in given.items()}


def read_prediction(session: Session, *, record: str, caller: Caller) -> ParticipantPrediction:
    """A participant's stored prediction (unblinded); the read is audited."""
    row = repository.prediction(session, record)
    if row is None:
        pending = repository.review_requests(session, record)
        hint = f"; the baseline awaits review ({pending[-1].reason})" if pending else ""
        raise NotFound(f"no prediction for record {record!r}{hint}", field="record")
    audit.append(session, actor=caller.subject, role=caller.role.value, action="prediction.read",
                 entity_type="prediction", entity_id=record, record=record,
                 after={"digest": row.digest}, correlation_id=caller.request_id)
    return row
