"""Request and response models of the gateway's own routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class WitnessedHeadRead(BaseModel):
    service: str
    length: int
    head_hash: str
    announced_at: datetime
    received_at: datetime
