"""`tailor restore verify|reconcile`: after restoring randomization's database from a backup,
find and give back the allocations made after the backup, from the TRIAL stream.

    tailor restore verify       # exit 0: database and stream agree; 1: reconcile needed;
                                # 2: cannot be reconciled (the message says why)
    tailor restore reconcile    # give them back (one transaction), then verify again

Run with randomization's settings (its database URL, list key and bus private key, the
protocol) and the provisioner's NATS seed as TAILOR_NATS_CREDS_FILE (only the provisioner
may read the stream directly), while no randomization replica runs: a replica started
before `reconcile` would hand the lost allocations' slots to new participants.
See services/randomization/recovery.py for what is re-derived and how.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from sqlalchemy.engine import Engine

from services.core.bus import STREAM, Bus, TlsFiles
from services.core.bus_contract import PROVISIONER
from services.core.db import make_engine, unit_of_work
from services.core.errors import DomainError
from services.core.events import Allocated, ClusterAssigned, Envelope
from services.core.sealing import Keyring, load_keyring
from services.core.settings import service_settings, settings
from services.randomization import recovery
from services.randomization.keys import load_list_key
from services.randomization.service import SERVICE, Context

app = typer.Typer(help="After a restore from backup: check and give back lost allocations.",
                  no_args_is_help=True)
console = Console()
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


class StreamRead:
    """The stream's allocation facts in stream order, and when its oldest message was kept."""

    def __init__(self) -> None:
        self.allocated: list[Envelope] = []
        self.assigned: list[Envelope] = []
        self.starts: datetime | None = None


async def _read_subject(bus: Bus, subject: str, into: list[Envelope]) -> None:
    """Every message of `subject`, by direct get (no consumer is created on the stream)."""
    from nats.js.errors import NotFoundError

    assert bus.js is not None
    seq = 1
    while True:
        try:
            msg = await bus.js.get_msg(STREAM, seq, subject=subject, next=True)
        except NotFoundError:
            return
        into.append(Envelope.read(msg.data or b""))
        assert msg.seq is not None
        seq = msg.seq + 1


async def read_stream() -> StreamRead:
    config = settings()
    tls = config.nats_tls()
    bus = Bus(config.nats_url, PROVISIONER, credentials=config.nats_credentials(PROVISIONER),
              tls=TlsFiles(*tls) if tls else None)
    await bus.connect(attempts=3)
    found = StreamRead()
    try:
        assert bus.js is not None
        state = (await bus.js.stream_info(STREAM)).state
        if state.messages:
            first = await bus.js.get_msg(STREAM, state.first_seq, next=True)
            found.starts = _stored_at(first.time)
        await _read_subject(bus, Allocated.subject, found.allocated)
        await _read_subject(bus, ClusterAssigned.subject, found.assigned)
    finally:
        await bus.close()
    return found


def _stored_at(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # the server stores UTC


def _open(assigned: list[Envelope], keyring: Keyring) -> list[recovery.Assignment]:
    return [recovery.open_assignment(env, keyring) for env in assigned]


def _run(work: Callable[[Context, Keyring, StreamRead], T]) -> T:
    from .settings_catalog import load_secret_files, settings_problem

    problem = load_secret_files() or settings_problem()
    if problem:
        err.print(problem, markup=False, highlight=False)
        raise typer.Exit(2)
    config = settings()
    embedded = service_settings(SERVICE).resolved_database_url(config.home).startswith("sqlite")
    try:  # the keys randomization runs with; never generated here
        key = load_list_key(config.home, allow_generate=False)
        keyring = load_keyring(SERVICE, config.home, embedded=embedded)
    except Exception as exc:
        err.print(f"randomization's keys: {exc}", markup=False, style="red")
        raise typer.Exit(2) from None
    ctx = Context(key=key, protocol=config.protocol())
    try:
        stream = asyncio.run(read_stream())
    except Exception as exc:  # unreachable or refused: one line, no traceback
        err.print(f"cannot read the stream: {exc} — the provisioner's seed as "
                  "TAILOR_NATS_CREDS_FILE?", markup=False, style="red")
        raise typer.Exit(2) from None
    return work(ctx, keyring, stream)


def _engine() -> Engine:
    own = service_settings(SERVICE)
    return make_engine(own.resolved_database_url(settings().home), pool_size=1)


@app.command()
def verify(as_json: Annotated[bool, typer.Option("--json", help="one JSON line")] = False) -> None:
    """Compare randomization's database with the stream; changes nothing."""
    def work(ctx: Context, keyring: Keyring, stream: StreamRead) -> recovery.Findings:
        engine = _engine()
        try:
            with unit_of_work(engine) as session:
                return recovery.inspect(session, ctx, stream.allocated,
                                        _open(stream.assigned, keyring), stream.starts)
        finally:
            engine.dispose()

    found = _run(work)
    if as_json:
        print(recovery.json_summary(found))
    else:
        for line in recovery.describe(found):
            console.print(line, markup=False, highlight=False)
    if found.underivable or found.conflicts or found.gap:
        raise typer.Exit(2)
    if not found.clean:
        raise typer.Exit(1)


@app.command()
def reconcile() -> None:
    """Give back the allocations the restore lost (all or nothing), then re-drive requests
    that are neither allocated nor waiting. Idempotent: a second run finds nothing to do."""
    def work(ctx: Context, keyring: Keyring, stream: StreamRead) -> recovery.Reconciled:
        engine = _engine()
        try:
            with unit_of_work(engine) as session:
                return recovery.reconcile(session, ctx, stream.allocated,
                                          _open(stream.assigned, keyring), stream.starts)
        finally:
            engine.dispose()

    try:
        done = _run(work)
    except DomainError as exc:
        err.print(f"not reconciled, nothing changed: {exc.detail}", markup=False, style="red")
        raise typer.Exit(2) from None
    console.print(f"reconciled: {len(done.restored)} allocation(s) given back "
                  f"({', '.join(done.restored) or '-'}), {len(done.redelivered)} request(s) "
                  f"re-driven ({', '.join(done.redelivered) or '-'})", markup=False)

