"""How long personal data may stay at rest outside a service's own tables."""

from __future__ import annotations

from pydantic import Field

from .base import Strict


class DataRetention(Strict):
    """Set by the trial's data-protection plan. The bus and the outboxes are transport, not
    records: what a consumer needs it has stored (and the audit trail keeps the history)."""

    bus_days: float = Field(
        30, ge=1, description="the TRIAL stream (and its dead letters) drop facts older than "
                              "this; a consumer down for longer misses them (at least a day: "
                              "longer than the bus's duplicate window and any retry)")
    outbox_sent_days: float = Field(
        7, gt=0, description="sent outbox rows are deleted once older than this")
