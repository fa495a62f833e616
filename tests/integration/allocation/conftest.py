"""Fixtures of the allocation integration tests: the service on a real nats-server and
database, REDCap saves published the way the gateway publishes them, and an observer
that reads what the service put on the bus."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sqlalchemy import func
from sqlmodel import Session, select

from services.allocation.app import SPEC
from services.core.bus import STREAM, Bus
from services.core.events import Envelope, FormSaved
from services.core.outbox import OutboxMessage
from services.core.protocol import TrialProtocol, load_protocol
from tailor_cli.natsd import NatsServer
from tests.support.harness import PROTOCOL, RunningService, eventually, provisioner_bus, running_service
from tests.support.sealed import form_saved_for

CONSUMER = "allocation-form-saved"
BASELINE_EVENT = "t0_baseline_arm_1"


@pytest.fixture(scope="session")
def protocol() -> TrialProtocol:
    return load_protocol(PROTOCOL)


@pytest.fixture(scope="session")
def reference_rows(protocol: TrialProtocol) -> list[dict[str, str]]:
    """Item-level participants of the shipped synthetic cohort (strings, as REDCap exports)."""
    path = Path(protocol.allocation.model.path).with_name("synthetic-reference.csv")
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def baseline_fields(protocol: TrialProtocol, row: dict[str, str], record: str,
                    **overrides: str) -> dict[str, str]:
    """A record's complete, consented, eligible T0 data with `row`'s MPI-D answers."""
    redcap = protocol.redcap
    f = redcap.fields
    code_of_sex = {v: k for k, v in redcap.sex_codes.items()}
    fields = {f.record_id: record, f.consent: "1", f.eligible: "1", f.age: row["age"],
              f.sex: code_of_sex[int(row["sex"])], f.withdrawn: ""}
    fields.update({f"{form}_complete": "2" for form in redcap.baseline_forms})
    fields.update({k: v for k, v in row.items() if k.startswith(f.mpid_item_prefix)})
    fields.update(overrides)
    return fields


def form_saved(record: str, fields: dict[str, str], *, instrument: str = "odi",
               event: str | None = BASELINE_EVENT, correlation_id: str | None = None
               ) -> Envelope:
    """The envelope the gateway publishes after re-fetching a saved record."""
    saved = FormSaved(project_id=101, record=record, event=event, instrument=instrument,
                      complete_status=int(fields.get(f"{instrument}_complete", "0") or 0),
                      fields=fields, trigger="det")
    return form_saved_for("allocation", saved, correlation_id=correlation_id)


@pytest.fixture
async def observer(nats_server: NatsServer) -> AsyncIterator[Bus]:
    bus = provisioner_bus(nats_server.url, "observer", duplicate_window=120)
    await bus.connect(attempts=20)
    await bus.ensure_streams()
    yield bus
    await bus.close()


@pytest.fixture
async def allocation(tmp_path: Path, nats_server: NatsServer, database_url: str
                     ) -> AsyncIterator[RunningService]:
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url) as svc:
        yield svc


async def publish(bus: Bus, env: Envelope, msg_id: str | None = None) -> None:
    """Publish as the gateway's outbox relay does; a different `msg_id` for the same
    envelope gets past the server's duplicate window (a republish after a crash)."""
    await bus.publish(env.subject, env.model_dump_json().encode(), msg_id or env.id)


def outbox_backlog(svc: RunningService) -> int:
    with Session(svc.kernel.engine) as session:
        return session.exec(select(func.count()).select_from(OutboxMessage)
                            .where(OutboxMessage.sent_at.is_(None))).one()  # type: ignore[union-attr]


async def settled(svc: RunningService, bus: Bus) -> None:
    """Every published save handled and every staged event on the bus."""
    async def idle() -> bool:
        try:
            info = await bus.js.consumer_info(STREAM, CONSUMER)
        except NotFoundError:
            return False
        return info.num_pending == 0 and info.num_ack_pending == 0 and outbox_backlog(svc) == 0

    await eventually(idle)


async def published(bus: Bus, subject: str) -> list[Envelope]:
    """Everything on `subject` in the stream, read by a throwaway consumer."""
    info = await bus.js.stream_info(STREAM, subjects_filter=subject)
    expected = (info.state.subjects or {}).get(subject, 0)
    if not expected:
        return []
    sub = await bus.js.pull_subscribe(subject, stream=STREAM, config=ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL))
    msgs = []
    while len(msgs) < expected:
        msgs += await sub.fetch(expected - len(msgs), timeout=5)
    for m in msgs:
        await m.ack()
    await sub.unsubscribe()
    return [Envelope.model_validate_json(m.data) for m in msgs]


@pytest.fixture
async def api(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[RunningService]:
    """The service on SQLite only, for tests of the REST edge."""
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path / 'allocation.db'}") as svc:
        yield svc
