"""Facts the randomization service publishes. Blinded unless marked otherwise."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from .base import Event


class Allocated(Event):
    """Blinded: module and allocation number only, never arm or cluster."""

    subject: ClassVar[str] = "trial.v1.randomization.allocated"
    record: str
    allocation_number: str
    module: str
    allocated_at: datetime
