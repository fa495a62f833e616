"""Dead letters: read them (where and why each died, never the payload) and replay one.

Shared by the gateway's ops routes and `tailor dlq`. Replaying republishes the original
event on its original subject under a new message id: the consumer that gave up on it
runs it again, every other consumer skips it (its inbox holds the event id). Callers
audit the replay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from .bus import DLQ_STREAM
from .errors import Conflict, NotFound


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    consumer: str
    reason: str | None
    error: str | None
    original_subject: str | None
    stream_seq: int | None
    deliveries: int | None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _read(seq: int, subject: str | None, headers: dict[str, str] | None) -> DeadLetter:
    h = headers or {}
    return DeadLetter(
        seq=seq, consumer=(subject or "").removeprefix("trial.dlq."),
        reason=h.get("Tailor-Dead-Letter-Reason"), error=h.get("Tailor-Error"),
        original_subject=h.get("Tailor-Original-Subject"),
        stream_seq=_int(h.get("Tailor-Stream-Seq")), deliveries=_int(h.get("Tailor-Deliveries")))


async def newest(js: JetStreamContext, limit: int) -> list[DeadLetter]:
    state = (await js.stream_info(DLQ_STREAM)).state
    found: list[DeadLetter] = []
    seq = state.last_seq
    while seq >= max(state.first_seq, 1) and len(found) < limit:
        try:
            msg = await js.get_msg(DLQ_STREAM, seq)
        except NotFoundError:  # removed from the stream (limits): skip the gap
            seq -= 1
            continue
        found.append(_read(seq, msg.subject, msg.headers))
        seq -= 1
    return found


async def replay(js: JetStreamContext, seq: int,
                 may_publish: Callable[[str], bool] = lambda _subject: True) -> DeadLetter:
    """Publish dead letter `seq` again on its original subject; what was replayed.
    `may_publish`: whether this connection's user may publish that subject (the bus lets a
    service publish only its own facts; the provisioner may publish any)."""
    try:
        msg = await js.get_msg(DLQ_STREAM, seq)
    except NotFoundError:
        raise NotFound(f"no dead letter {seq}", field="seq") from None
    letter = _read(seq, msg.subject, msg.headers)
    if not letter.original_subject or not letter.original_subject.startswith("trial.v1."):
        raise Conflict(f"dead letter {seq} is a report for a person, not an event to replay",
                       field="seq")
    if not may_publish(letter.original_subject):
        raise Conflict(f"dead letter {seq} is another service's fact: replay it with "
                       "`tailor dlq replay` under the provisioner's credentials", field="seq")
    await js.publish(letter.original_subject, msg.data or b"",
                     headers={"Nats-Msg-Id": f"replay-dlq-{seq}",
                              "Tailor-Replayed-From": str(seq)})
    return letter
