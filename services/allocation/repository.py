"""Every query of the allocation database."""

from __future__ import annotations

from sqlmodel import Session, col, select

from .models import ParticipantPrediction, ReviewRequest, WithdrawalSeen


def prediction(session: Session, record: str) -> ParticipantPrediction | None:
    return session.get(ParticipantPrediction, record)


def add_prediction(session: Session, row: ParticipantPrediction) -> None:
    session.add(row)
    session.flush()  # a concurrent first prediction fails here, on the primary key


def withdrawal(session: Session, record: str) -> WithdrawalSeen | None:
    return session.get(WithdrawalSeen, record)


def add_withdrawal(session: Session, row: WithdrawalSeen) -> None:
    session.add(row)
    session.flush()


def remove_withdrawal(session: Session, row: WithdrawalSeen) -> None:
    session.delete(row)
    session.flush()


def review_request(session: Session, record: str, reason: str) -> ReviewRequest | None:
    return session.exec(
        select(ReviewRequest).where(col(ReviewRequest.record) == record,
                                    col(ReviewRequest.reason) == reason)
    ).first()


def review_requests(session: Session, record: str) -> list[ReviewRequest]:
    return list(session.exec(
        select(ReviewRequest).where(col(ReviewRequest.record) == record)
        .order_by(col(ReviewRequest.id))
    ))


def add_review_request(session: Session, row: ReviewRequest) -> None:
    session.add(row)
    session.flush()
