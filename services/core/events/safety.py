"""Facts the safety service publishes. Blinded: never arm (or cluster)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from .base import Event


class SafetyObligationOpened(Event):
    """A reporting clock started (e.g. an SAE must reach the sponsor within 24 h).
    The notifications service tells the rule's recipients at once."""

    subject: ClassVar[str] = "trial.v1.safety.obligation_opened"
    obligation_id: str
    case_id: str
    record: str
    rule: str
    recipients: list[str]  # contact roles from protocol.safety.contacts
    deadline: datetime
    awareness_time: datetime


class SafetyObligationEscalated(Event):
    """An obligation is unacknowledged at the protocol's escalation point of its clock."""

    subject: ClassVar[str] = "trial.v1.safety.obligation_escalated"
    obligation_id: str
    case_id: str
    record: str
    rule: str
    recipients: list[str]
    deadline: datetime
