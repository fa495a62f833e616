"""Tables the gateway's authentication owns. Migrations are written separately."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from services.core.db import UtcDateTime


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    name: str = Field(max_length=100)
    role: str = Field(max_length=32)
    # SHA-256 hex of the secret (see gateway.auth.api_keys); the secret itself is never stored.
    secret_hash: str = Field(max_length=64)
    created_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    revoked_by: str | None = Field(default=None, max_length=200)
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
