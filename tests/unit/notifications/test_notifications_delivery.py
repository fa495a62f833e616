"""The delivery state machine, failure classification and retry backoff."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

import pytest

from services.notifications.domain import (
    TERMINAL,
    DeliveryState,
    FailureKind,
    IllegalTransition,
    NotificationError,
    TaskOutcome,
    can_transition,
    classify_exception,
    classify_http_status,
    classify_smtp_reply,
    retry_delay,
    should_retry,
    task_path,
    transition,
)

S = DeliveryState
LEGAL = {
    (S.SCHEDULED, S.CLAIMED), (S.SCHEDULED, S.CANCELLED), (S.SCHEDULED, S.SENT),
    (S.CLAIMED, S.SENT), (S.CLAIMED, S.SCHEDULED), (S.CLAIMED, S.FAILED),
    (S.CLAIMED, S.CANCELLED), (S.CLAIMED, S.UNKNOWN),
    (S.UNKNOWN, S.SENT), (S.UNKNOWN, S.SCHEDULED), (S.UNKNOWN, S.FAILED),
    (S.SENT, S.DELIVERED), (S.SENT, S.UNDELIVERED),
}


def test_happy_path_and_retry_path():
    state = S.SCHEDULED
    for nxt in (S.CLAIMED, S.SCHEDULED, S.CLAIMED, S.SENT, S.DELIVERED):
        state = transition(state, nxt)
    assert state is S.DELIVERED


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_exactly_the_drawn_transitions_are_allowed(current: S, target: S):
    assert can_transition(current, target) == ((current, target) in LEGAL)
    if (current, target) in LEGAL:
        assert transition(current.value, target.value) is target
    else:
        with pytest.raises(IllegalTransition) as err:
            transition(current, target)
        assert err.value.field == "state"
        assert (err.value.current, err.value.target) == (current.value, target.value)


def test_the_repository_moves_states_only_through_the_state_machine():
    from services.notifications import repository

    with pytest.raises(IllegalTransition):  # refused before any SQL is issued
        repository.set_state_if(None, "k", S.DELIVERED, S.SCHEDULED)  # type: ignore[arg-type]


def test_terminal_states_and_unknown_state():
    assert {S.DELIVERED, S.FAILED, S.UNDELIVERED, S.CANCELLED} == TERMINAL
    with pytest.raises(NotificationError) as err:
        transition("scheduled", "lost")
    assert err.value.field == "state"


@pytest.mark.parametrize(("code", "kind"), [
    (421, FailureKind.TRANSIENT), (450, FailureKind.TRANSIENT), (451, FailureKind.TRANSIENT),
    (452, FailureKind.TRANSIENT), (550, FailureKind.PERMANENT), (553, FailureKind.PERMANENT),
    (554, FailureKind.PERMANENT),
])
def test_smtp_4xx_transient_5xx_permanent(code: int, kind: FailureKind):
    assert classify_smtp_reply(code) is kind


@pytest.mark.parametrize(("status", "kind"), [
    (500, FailureKind.TRANSIENT), (502, FailureKind.TRANSIENT), (503, FailureKind.TRANSIENT),
    (429, FailureKind.TRANSIENT), (408, FailureKind.TRANSIENT), (400, FailureKind.PERMANENT),
    (401, FailureKind.PERMANENT), (404, FailureKind.PERMANENT), (422, FailureKind.PERMANENT),
])
def test_provider_5xx_transient_4xx_permanent(status: int, kind: FailureKind):
    assert classify_http_status(status) is kind


def test_exceptions_are_judged_by_their_reply_code_or_type():
    import aiosmtplib
    import httpx

    assert classify_exception(aiosmtplib.SMTPDataError(451, "try later")) is FailureKind.TRANSIENT
    assert classify_exception(aiosmtplib.SMTPDataError(554, "no")) is FailureKind.PERMANENT
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "unknown", "a@x.example")])
    assert classify_exception(refused) is FailureKind.PERMANENT
    busy = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(452, "full", "a@x.example")])
    assert classify_exception(busy) is FailureKind.TRANSIENT
    assert classify_exception(aiosmtplib.SMTPConnectError("down")) is FailureKind.TRANSIENT
    assert classify_exception(aiosmtplib.SMTPReadTimeoutError("slow")) is FailureKind.TRANSIENT
    assert classify_exception(TimeoutError()) is FailureKind.TRANSIENT
    request = httpx.Request("POST", "http://sms.example/v1/messages")
    for status, kind in ((503, FailureKind.TRANSIENT), (400, FailureKind.PERMANENT)):
        exc = httpx.HTTPStatusError("x", request=request,
                                    response=httpx.Response(status, request=request))
        assert classify_exception(exc) is kind
    read_error = httpx.ReadError("reset", request=request)
    assert classify_exception(read_error) is FailureKind.PERMANENT  # not declared transient
    assert classify_exception(read_error, (httpx.TransportError,)) is FailureKind.TRANSIENT
    assert classify_exception(KeyError("bug")) is FailureKind.PERMANENT


def test_backoff_grows_is_capped_and_jittered_within_bounds():
    base, cap = timedelta(seconds=30), timedelta(minutes=10)
    assert retry_delay(1, lambda: 0.0, base=base, cap=cap) == timedelta(seconds=15)
    assert retry_delay(1, lambda: 0.999999, base=base, cap=cap) < timedelta(seconds=30)
    assert retry_delay(3, lambda: 0.0, base=base, cap=cap) == timedelta(seconds=60)
    assert retry_delay(50, lambda: 0.0, base=base, cap=cap) == timedelta(minutes=5)
    rng = random.Random(1)
    delays = [retry_delay(4, rng.random, base=base, cap=cap) for _ in range(50)]
    assert all(timedelta(seconds=120) <= d < timedelta(seconds=240) for d in delays)
    assert len(set(delays)) > 40  # jitter spreads replicas apart
    seeded = [retry_delay(2, random.Random(7).random) for _ in range(2)]
    assert seeded[0] == seeded[1]
    with pytest.raises(ValueError):
        retry_delay(0, rng.random)


def test_only_transient_failures_retry_and_only_up_to_the_limit():
    assert should_retry(FailureKind.TRANSIENT, 0, 3)
    assert not should_retry(FailureKind.TRANSIENT, 3, 3)
    assert not should_retry(FailureKind.PERMANENT, 0, 3)


@pytest.mark.parametrize(("outcome", "final"), [
    ("reached", S.DELIVERED), ("voicemail", S.DELIVERED),
    ("wrong_number", S.FAILED), ("sent", S.SENT),
])
def test_staff_task_outcomes_walk_legal_paths_from_claimed(outcome: str, final: S):
    state = S.CLAIMED
    for nxt in task_path(outcome):
        state = transition(state, nxt)
    assert state is final
    assert TaskOutcome(outcome)


def test_unknown_task_outcome_names_the_field():
    with pytest.raises(NotificationError) as err:
        task_path("abducted")
    assert err.value.field == "outcome"
