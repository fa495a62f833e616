"""The life of one message: its states, how send failures are judged, when to retry.

    scheduled ──claim──► claimed ──► sent ──► delivered | undelivered
        ▲  │              │  │  │      ▲
        │  │              │  │  └──► failed    (permanent failure or retries used up)
        │  │              │  └─────► unknown   (e-mail whose sender vanished mid-send)
        │  │              └────────► scheduled (transient failure; an SMS whose lease ran out)
        │  ├──► cancelled ◄┘                   (no longer due at send time)
        │  └──► sent                           (a provider's receipt for a requeued SMS)
        └──────── unknown ──► sent | failed    (a person checked: resend, it went out, it did not)

`claimed` is the row written with the idempotency key *before* the side effect. When its
lease runs out the dispatcher's recovery puts an SMS back to `scheduled` (the provider
sends a repeated key once) and turns an e-mail into `unknown` (SMTP cannot deduplicate);
a late receipt of that e-mail still moves it to `sent`. Every state change of a message
goes through `transition()` (the repository's compare-and-set calls it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum

from services.core.backoff import backoff_seconds

from .errors import IllegalTransition, NotificationError


class DeliveryState(StrEnum):
    SCHEDULED = "scheduled"
    CLAIMED = "claimed"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # may have reached the participant: counted, a person checks it


_ALLOWED: dict[DeliveryState, frozenset[DeliveryState]] = {
    # → sent: the provider's receipt for an SMS requeued after its lease ran out
    DeliveryState.SCHEDULED: frozenset({
        DeliveryState.CLAIMED, DeliveryState.CANCELLED, DeliveryState.SENT}),
    DeliveryState.CLAIMED: frozenset({
        DeliveryState.SENT, DeliveryState.SCHEDULED, DeliveryState.FAILED,
        DeliveryState.CANCELLED, DeliveryState.UNKNOWN}),
    DeliveryState.UNKNOWN: frozenset({
        DeliveryState.SENT, DeliveryState.SCHEDULED, DeliveryState.FAILED}),
    DeliveryState.SENT: frozenset({DeliveryState.DELIVERED, DeliveryState.UNDELIVERED}),
    DeliveryState.DELIVERED: frozenset(),
    DeliveryState.FAILED: frozenset(),
    DeliveryState.UNDELIVERED: frozenset(),
    DeliveryState.CANCELLED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in _ALLOWED.items() if not nxt)


def _state(value: DeliveryState | str) -> DeliveryState:
    try:
        return DeliveryState(value)
    except ValueError:
        raise NotificationError(f"{value!r} is not a delivery state", field="state") from None


def can_transition(current: DeliveryState, target: DeliveryState) -> bool:
    return target in _ALLOWED[current]


def transition(current: DeliveryState | str, target: DeliveryState | str) -> DeliveryState:
    """The new state, or IllegalTransition. A repeated provider callback (target == current)
    is illegal too: callers treat it as a duplicate and ignore it."""
    cur, tgt = _state(current), _state(target)
    if not can_transition(cur, tgt):
        raise IllegalTransition(cur.value, tgt.value)
    return tgt


class FailureKind(StrEnum):
    TRANSIENT = "transient"  # retry with backoff
    PERMANENT = "permanent"  # dead-letter, count, never retry


def classify_smtp_reply(code: int) -> FailureKind:
    """SMTP 4xx are temporary by RFC 5321; 5xx (and anything odd) are permanent."""
    return FailureKind.TRANSIENT if 400 <= code < 500 else FailureKind.PERMANENT


def classify_http_status(status: int) -> FailureKind:
    """A provider's 5xx, 408 (timeout) and 429 (rate limit) are worth retrying; other 4xx
    mean the request itself is wrong (bad number, bad credentials) and will stay wrong."""
    if status >= 500 or status in (408, 429):
        return FailureKind.TRANSIENT
    return FailureKind.PERMANENT


def classify_exception(
    exc: BaseException, transient: tuple[type[BaseException], ...] = ()
) -> FailureKind:
    """Judge a send failure without importing the transport library.

    An exception carrying an integer SMTP reply `code` (aiosmtplib's response errors) is
    judged by it; one listing refused `recipients` (each with a `code`) is transient only if
    every refusal is; one carrying an HTTP `response.status_code` is judged by the status.
    Timeouts, connection errors and the caller's `transient` types (e.g.
    `httpx.TransportError`) are transient. Anything else is permanent: retrying a bug only
    repeats it, and the dead-letter stream is where a person looks.
    """
    code = getattr(exc, "code", None)
    if isinstance(code, int) and 200 <= code < 600:
        return classify_smtp_reply(code)
    refused = getattr(exc, "recipients", None)
    if isinstance(refused, list) and refused:
        kinds = {classify_exception(r, transient) for r in refused}
        return FailureKind.TRANSIENT if kinds == {FailureKind.TRANSIENT} else (
            FailureKind.PERMANENT)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return classify_http_status(status)
    if isinstance(exc, (TimeoutError, ConnectionError, *transient)):
        return FailureKind.TRANSIENT
    return FailureKind.PERMANENT


def retry_delay(
    retry: int,
    rand: Callable[[], float],
    *,
    base: timedelta = timedelta(seconds=30),
    cap: timedelta = timedelta(hours=1),
) -> timedelta:
    """Wait before transport retry number `retry` (1, 2, …): the kernel's one backoff
    (`services/core/backoff.py`: exponential, capped, equal jitter from `rand()` in [0, 1)),
    so replicas retrying together spread out but never retry at once."""
    if retry < 1:
        raise ValueError("retry counts from 1")
    return timedelta(seconds=backoff_seconds(retry, base=base.total_seconds(),
                                             cap=cap.total_seconds(), rand=rand))


def should_retry(kind: FailureKind, retries_done: int, max_retries: int) -> bool:
    return kind is FailureKind.TRANSIENT and retries_done < max_retries


class TaskOutcome(StrEnum):
    """What staff record for a phone-call or letter task."""

    REACHED = "reached"
    VOICEMAIL = "voicemail"
    WRONG_NUMBER = "wrong_number"
    SENT = "sent"  # letter posted


def task_path(outcome: TaskOutcome | str) -> tuple[DeliveryState, ...]:
    """States a claimed phone or letter task passes through when staff record `outcome`."""
    try:
        recorded = TaskOutcome(outcome)
    except ValueError:
        raise NotificationError(f"{outcome!r} is not a task outcome", field="outcome") from None
    match recorded:
        case TaskOutcome.REACHED | TaskOutcome.VOICEMAIL:  # a voicemail still reminds
            return (DeliveryState.SENT, DeliveryState.DELIVERED)
        case TaskOutcome.WRONG_NUMBER:
            return (DeliveryState.FAILED,)
        case TaskOutcome.SENT:  # the post gives no delivery receipt
            return (DeliveryState.SENT,)
