"""Internal-token ids already accepted, kept in the service's own database.

A token's `jti` is good once. The verifier's in-process set only covers one replica; this
table is what every replica of a service shares, so a token replayed to another replica
within its lifetime is refused too. A row lives until its token would have expired anyway:
expired rows are purged as new ones arrive.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from .db import UtcDateTime, unit_of_work


class UsedInternalToken(SQLModel, table=True):
    __tablename__ = "used_internal_token"

    jti: str = Field(primary_key=True)
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))


def first_use(engine: Engine, jti: str, expires: float) -> bool:
    """Record `jti`; False when any replica on this database recorded it before. Blocking:
    call it off the event loop (FastAPI runs the sync caller dependency in a thread)."""
    now = datetime.now(UTC)
    try:
        with unit_of_work(engine) as session:
            session.exec(delete(UsedInternalToken)  # type: ignore[call-overload]
                         .where(UsedInternalToken.expires_at < now))  # type: ignore[arg-type]
            session.add(UsedInternalToken(jti=jti, expires_at=datetime.fromtimestamp(expires, UTC)))
    except IntegrityError:
        return False
    return True
