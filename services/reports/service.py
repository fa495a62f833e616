"""Use cases: figures from the read model, as of a date. They take a session and keyword
arguments, never import FastAPI, never commit (the edge owns the transaction).

Per-arm figures exist only when the caller passed an arm map (`ArmOf`, asked from the
randomization service for an unblinded caller); each such read is audited with a digest
of the arm map, never the map itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlmodel import Session

from services.core import audit
from services.core.errors import Conflict
from services.core.protocol import ReportsRules, TrialProtocol

from . import repository
from .domain import (
    Acceptability,
    ArmOf,
    CriterionResult,
    Flow,
    Recruitment,
    Retention,
    Status,
    acceptability,
    cohort_on,
    consort_flow,
    feasibility,
    recruitment,
    retention,
)


@dataclass(frozen=True)
class Actor:
    subject: str
    role: str
    correlation_id: str | None = None


def rules_of(protocol: TrialProtocol) -> ReportsRules:
    if protocol.reports is None:
        raise Conflict("the protocol file has no reports section (feasibility criteria)",
                       field="reports")
    return protocol.reports


def cohort(session: Session, protocol: TrialProtocol, as_of: date) -> list[Status]:
    return cohort_on(repository.load_facts(session, protocol), protocol.timepoints, as_of)


def _digest(arm_of: ArmOf) -> str:
    pairs = sorted((r, a or "", arm_of.cluster.get(r) or "") for r, a in arm_of.arm.items())
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def _audit_unblinded(session: Session, actor: Actor, report: str, as_of: date,
                     arm_of: ArmOf) -> None:
    audit.append(session, actor=actor.subject, role=actor.role, action="report.unblinded_read",
                 entity_type="report", entity_id=report, correlation_id=actor.correlation_id,
                 after={"as_of": as_of.isoformat(), "participants": len(arm_of.arm),
                        "arm_map_sha256": _digest(arm_of)})


def flow(session: Session, *, protocol: TrialProtocol, as_of: date,
         arm_of: ArmOf | None = None, actor: Actor | None = None) -> Flow:
    rules = rules_of(protocol)
    result = consort_flow(cohort(session, protocol, as_of), as_of=as_of,
                          primary=rules.primary_timepoint,
                          lost_reasons=rules.withdrawal.lost_to_follow_up,
                          arms=[a.key for a in protocol.arms], arm_of=arm_of,
                          received_recorded=rules.received_field is not None)
    if arm_of is not None:
        assert actor is not None, "an unblinded read is always audited"
        _audit_unblinded(session, actor, "flow", as_of, arm_of)
    return result


def feasibility_of(session: Session, *, protocol: TrialProtocol, as_of: date) -> list[CriterionResult]:
    rules = rules_of(protocol)
    return feasibility(rules.feasibility, cohort(session, protocol, as_of), protocol.timepoints,
                       as_of=as_of, strategy_changed_on=rules.recruitment.strategy_changed_on)


def recruitment_of(session: Session, *, protocol: TrialProtocol, as_of: date) -> Recruitment:
    return recruitment(cohort(session, protocol, as_of), rules_of(protocol).recruitment,
                       as_of=as_of)


def retention_of(session: Session, *, protocol: TrialProtocol, as_of: date) -> Retention:
    rules = rules_of(protocol)
    return retention(cohort(session, protocol, as_of), protocol.timepoints, as_of=as_of,
                     lost_reasons=rules.withdrawal.lost_to_follow_up)


def acceptability_of(session: Session, *, protocol: TrialProtocol, as_of: date,
                     arm_of: ArmOf | None = None, actor: Actor | None = None) -> Acceptability:
    rules_of(protocol)
    facts = repository.load_facts(session, protocol)
    neq_form = protocol.safety.redcap_form.neq_instrument
    result = acceptability(
        cohort_on(facts, protocol.timepoints, as_of), facts.neq, facts.adverse_events,
        neq_timepoints=[t.key for t in protocol.timepoints if neq_form in t.forms],
        as_of=as_of, arms=[a.key for a in protocol.arms], arm_of=arm_of, diary=facts.diary,
        diary_answers_recorded=(protocol.diary is not None
                                and protocol.diary.answer_form is not None))
    if arm_of is not None:
        assert actor is not None, "an unblinded read is always audited"
        _audit_unblinded(session, actor, "acceptability", as_of, arm_of)
    return result


def blinded_figures(session: Session, *, protocol: TrialProtocol, as_of: date) -> dict[str, Any]:
    """Every blinded figure at once (the rebuild compares these before and after)."""
    kw: dict[str, Any] = {"protocol": protocol, "as_of": as_of}
    return json.loads(json.dumps({
        "flow": dataclasses.asdict(flow(session, **kw)),
        "feasibility": [dataclasses.asdict(c) for c in feasibility_of(session, **kw)],
        "recruitment": dataclasses.asdict(recruitment_of(session, **kw)),
        "retention": dataclasses.asdict(retention_of(session, **kw)),
        "acceptability": dataclasses.asdict(acceptability_of(session, **kw)),
    }, default=str))
