"""Every query of the gateway's database."""

from __future__ import annotations

from sqlmodel import Session, col, select

from .models import WitnessedHead


def witnessed_head(session: Session, service: str) -> WitnessedHead | None:
    return session.get(WitnessedHead, service)


def witnessed_heads(session: Session) -> list[WitnessedHead]:
    return list(session.exec(select(WitnessedHead).order_by(col(WitnessedHead.service))))
