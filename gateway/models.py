"""Tables the gateway owns."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from gateway.auth.models import ApiKey
from services.core.db import UtcDateTime

__all__ = ["ApiKey", "WitnessedHead"]


class WitnessedHead(SQLModel, table=True):
    """The newest audit-chain head each service has announced on the bus."""

    __tablename__ = "witnessed_head"

    service: str = Field(primary_key=True)
    length: int
    head_hash: str
    announced_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    received_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
