"""Read-side use cases: the blinded and unblinded reports and the E2B(R3)-style export.

The unblinded report gets the arms from its caller (the randomization service's answer
at report time), uses them for this one report and stores them nowhere; its audit entry
proves which arm map it used by a keyed digest only (HMAC-SHA256 with the service's digest
key): a reader of the audit trail who knows some arms cannot test guesses for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from services.core import audit
from services.core.digests import DigestKey
from services.core.errors import Conflict
from services.core.protocol import TrialProtocol

from . import repository
from .domain import (
    Allocation,
    BlindedReport,
    IncompleteArmMap,
    UnblindedReport,
    blinded_report,
    e2b_case,
    unblinded_report,
)
from .randomization_client import RandomizationBadAnswer, UnblindedAllocation
from .service import Actor, require_case


def _obligations(session: Session) -> list[Any]:
    return [repository.to_obligation(r) for r in repository.obligation_rows(session)]


def blinded(session: Session, *, protocol: TrialProtocol, now: datetime) -> BlindedReport:
    allocations = [Allocation(participant=p.record, module=p.module, allocated_at=p.allocated_at)
                   for p in repository.participants(session)]
    return blinded_report(repository.load_cases(session), allocations, _obligations(session),
                          rules=protocol.safety, modules=protocol.module_keys, now=now)


def unblinded(session: Session, *, protocol: TrialProtocol, now: datetime,
              answer: Sequence[UnblindedAllocation], actor: Actor,
              digest_key: DigestKey) -> UnblindedReport:
    """The DSMB report by arm. Pilot participants outside the evaluation come without an
    arm and are left out of the allocations; any other participant without one is an
    unusable answer (502)."""
    arms = [a.key for a in protocol.arms]
    allocated = [a for a in answer if a.arm is not None or not a.pilot]
    arm_of = {a.record: a.arm for a in allocated if a.arm is not None}
    allocations = [Allocation(participant=a.record, module=a.module, allocated_at=a.allocated_at)
                   for a in allocated]
    try:
        report = unblinded_report(
            repository.load_cases(session), allocations, _obligations(session),
            rules=protocol.safety, modules=protocol.module_keys, arms=arms, arm_of=arm_of, now=now)
    except IncompleteArmMap as err:
        raise RandomizationBadAnswer(err.message, field="randomization") from None
    audit.append(session, actor=actor.subject, role=actor.role, action="report.unblinded",
                 entity_type="report", entity_id="unblinded", correlation_id=actor.correlation_id,
                 after={"generated_at": now, "participants": len(allocations),
                        "arm_map_hmac": digest_key.digest(sorted(arm_of.items())),
                        "digest_key_id": digest_key.key_id})
    return report


def e2b(session: Session, *, case_id: str, protocol: TrialProtocol, now: datetime) -> dict[str, Any]:
    config = protocol.safety.e2b
    if config is None:
        raise Conflict("the protocol has no safety.e2b section (sender country)",
                       field="safety.e2b")
    case = require_case(session, case_id)
    sender = config.sender or protocol.trial.sponsor or protocol.trial.id
    intervention = config.intervention
    participant = repository.participant(session, case.participant)
    if participant is not None:  # the module is blinded-safe; the arm is never known here
        labels = {m.key: m.label for m in protocol.modules}
        intervention = labels.get(participant.module, participant.module)
    return e2b_case(case, rules=protocol.safety, trial=protocol.trial, sender=sender,
                    country=config.country, now=now, intervention=intervention,
                    language=config.language)
