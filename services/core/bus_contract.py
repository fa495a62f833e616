"""Who may say what on the bus, derived from the code rather than written down twice.

- A subject `trial.v1.<ns>.<fact>` is owned by the service `<ns>`, or by the service whose
  event module declares a fact in that namespace (`trial.v1.redcap.form_saved` is declared
  in `events/gateway.py`, so the gateway owns `redcap`). A subject template with
  `{service}` (the audit head) is every service's own.
- A service reads only through its durable consumers (`Subscription`s): the provisioner
  creates them with their filter, the service may only pull from, ack and inspect them.
- Dead letters of a durable go to `trial.dlq.<durable>`; a dead-letter fact declared in a
  service's event module (`trial.dlq.notifications`) is that service's too.

`grant()` turns this into the NATS permissions of one service's user (see nats_auth.py).
Nothing here talks to a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from . import events as _events  # noqa: F401  (every contract module must be imported)
from .events import AuditHead, Event

STREAM = "TRIAL"
DLQ_STREAM = "TRIAL_DLQ"
PROVISIONER = "tailor"  # the only user that creates streams and consumers
EVENTS_MODULE = "services.core.events."
GATEWAY_AUDIT_HEADS = AuditHead.subject.format(service="gateway")


@dataclass(frozen=True)
class Subscription:
    """A durable consumer: what a service reads, and all it may read."""

    durable: str
    subjects: tuple[str, ...]
    stream: str = STREAM


@dataclass(frozen=True)
class Grant:
    """The NATS permissions of one service's user."""

    service: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def _event_classes() -> list[type[Event]]:
    found, todo = [], list(Event.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if c.__module__.startswith(EVENTS_MODULE)]


def _declared() -> list[tuple[str, str]]:
    """(producer, subject) of every event contract; `{…}` placeholders other than
    `{service}` become a single-token wildcard."""
    pairs = []
    for cls in _event_classes():
        producer = cls.__module__.removeprefix(EVENTS_MODULE)
        subject = getattr(cls, "subject", None)
        if subject is None:  # an abstract base (SealedFormSaved): its subclasses name subjects
            continue
        while "{" in subject and "{service}" not in subject:
            start = subject.index("{")
            subject = subject[:start] + "*" + subject[subject.index("}", start) + 1:]
        pairs.append((producer, subject))
    return pairs


@cache  # every contract module is imported with this one: the answer never changes
def namespaces(service: str) -> tuple[str, ...]:
    """The `trial.v1.<ns>` namespaces whose facts `service` alone publishes."""
    owned = {service}
    for producer, subject in _declared():
        parts = subject.split(".")
        if producer == service and parts[:2] == ["trial", "v1"] and "{" not in parts[2]:
            owned.add(parts[2])
    return tuple(sorted(owned))


def owner_of(subject: str, services: Iterable[str]) -> str | None:
    """The service that may publish `subject` (None for a subject outside `trial.v1`)."""
    parts = subject.split(".")
    if len(parts) < 4 or parts[:2] != ["trial", "v1"]:
        return None
    for service in services:
        if parts[2] in namespaces(service):
            return service
    return parts[2]  # a namespace no event module claims belongs to the service of that name


def dead_letter_subjects(service: str, subscriptions: Sequence[Subscription]) -> tuple[str, ...]:
    own = {f"trial.dlq.{s.durable}" for s in subscriptions}
    own |= {subject for producer, subject in _declared()
            if producer == service and subject.startswith("trial.dlq.")}
    return tuple(sorted(own))


def inbox_prefix(service: str) -> str:
    return f"_INBOX.{service}"


def grant(service: str, subscriptions: Sequence[Subscription], *,
          reads_dead_letters: bool = False) -> Grant:
    """Publish: its own facts and dead letters, and exactly the JetStream API calls of its
    own durables (next message, ack, info). Subscribe: its own inbox, nothing else — a
    message reaches it only through a durable whose filter the provisioner set."""
    publish = [f"trial.v1.{ns}.>" for ns in namespaces(service)]
    publish += dead_letter_subjects(service, subscriptions)
    for sub in subscriptions:
        publish += [f"$JS.API.CONSUMER.MSG.NEXT.{sub.stream}.{sub.durable}",
                    f"$JS.API.CONSUMER.INFO.{sub.stream}.{sub.durable}",
                    f"$JS.ACK.{sub.stream}.{sub.durable}.>"]
    if reads_dead_letters:  # the operators' dead-letter view (gateway ops API)
        publish += [f"$JS.API.STREAM.INFO.{DLQ_STREAM}", f"$JS.API.STREAM.MSG.GET.{DLQ_STREAM}"]
    return Grant(service, tuple(dict.fromkeys(publish)), (f"{inbox_prefix(service)}.>",))


def check_durables(service: str, subscriptions: Sequence[Subscription]) -> None:
    """Durables are named after their service, so dead-letter subjects never collide."""
    for sub in subscriptions:
        if not sub.durable.startswith(f"{service}-"):
            raise ValueError(f"durable {sub.durable!r} of {service} must start with '{service}-'")
