"""A randomization database restored from a backup gets back, from the bus's events, every
allocation made after the backup: same number, module, arm, stratum and slot; all or
nothing; on SQLite (file copy) and PostgreSQL (pg_dump / pg_restore)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.core.db import unit_of_work
from services.core.events import Allocated, Envelope
from services.core.outbox import OutboxMessage
from services.core.protocol import TrialProtocol
from services.core.sealing import Keyring
from services.randomization import recovery, service
from services.randomization.keys import ListKey
from services.randomization.models import AllocationRow
from services.randomization.service import Actor, AllocationRequest, Context
from tests.support.sealed import keyring as keyring_for

from .support import cluster_assigned, sealed_list_direct

CLUSTERS = ("DYS", "ID", "AC", "DYS", "DYS", "ID", "AC", "DYS")  # both halves hit the same strata


def _sqlite_copy(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _libpq(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def _backup(url: str, folder: Path) -> Path:
    if url.startswith("sqlite"):  # the online backup API (the file alone misses the WAL)
        copy = folder / "backup.db"
        _sqlite_copy(Path(url.removeprefix("sqlite:///")), copy)
        return copy
    dump = folder / "backup.dump"
    subprocess.run([shutil.which("pg_dump") or "pg_dump", "--format=custom", f"--file={dump}",
                    _libpq(url)], check=True, capture_output=True)
    return dump


def _restore(url: str, engine: Engine, backup: Path) -> None:
    engine.dispose()  # no connection may outlive the restore
    if url.startswith("sqlite"):
        _sqlite_copy(backup, Path(url.removeprefix("sqlite:///")))
        return
    subprocess.run([shutil.which("pg_restore") or "pg_restore", "--clean", "--if-exists",
                    "--no-owner", "-d", _libpq(url), str(backup)], check=True, capture_output=True)


def _allocate(engine: Engine, ctx: Context, env: Envelope, keyring: Keyring) -> None:
    a = recovery.open_assignment(env, keyring)
    with unit_of_work(engine) as session:
        service.allocate(session, ctx, AllocationRequest(
            record=a.event.record, cluster=a.cluster, site=a.event.site, pilot=a.event.pilot,
            source="event", actor=Actor("event:allocation", "system"),
            correlation_id=env.id, model_version=a.event.model_version))


def _allocated_events(engine: Engine) -> list[Envelope]:
    """What the outbox relay publishes: the stream's `allocated` facts, in order."""
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).where(
            col(OutboxMessage.subject) == Allocated.subject).order_by(col(OutboxMessage.created_at)))
        return [Envelope.model_validate_json(r.envelope) for r in rows]


def _disclosures(engine: Engine, ctx: Context) -> dict[str, tuple[object, ...]]:
    with Session(engine) as session:
        return {row.record: (row.allocation_number, row.module, row.allocated_at,
                             *service.disclose(ctx, row).__dict__.items())
                for row in session.exec(select(AllocationRow))}


def _without_salt(found: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    """The salt is new after a restore; everything else must be as before."""
    return {record: tuple(v for v in values if not (isinstance(v, tuple) and v[0] == "salt"))
            for record, values in found.items()}


@pytest.fixture
def setting(migrated: Engine, database_url: str, list_key: ListKey, protocol: TrialProtocol,
            tmp_path: Path) -> tuple[Engine, Context, Keyring, list[Envelope], Path]:
    ctx = Context(key=list_key, protocol=protocol)
    keyring = keyring_for("randomization")
    sealed_list_direct(migrated, ctx, slots_per_stratum=12)
    assigned = [cluster_assigned(f"R{n}", cluster) for n, cluster in enumerate(CLUSTERS)]
    for env in assigned[:4]:
        _allocate(migrated, ctx, env, keyring)
    backup = _backup(database_url, tmp_path)
    for env in assigned[4:]:
        _allocate(migrated, ctx, env, keyring)
    return migrated, ctx, keyring, assigned, backup


def test_reconcile_gives_back_every_allocation_made_after_the_backup(
        setting: tuple[Engine, Context, Keyring, list[Envelope], Path], database_url: str) -> None:
    engine, ctx, keyring, assigned, backup = setting
    before = _without_salt(_disclosures(engine, ctx))
    stream = _allocated_events(engine)
    _restore(database_url, engine, backup)
    opened = [recovery.open_assignment(env, keyring) for env in assigned]

    with unit_of_work(engine) as session:
        found = recovery.inspect(session, ctx, stream, opened)
    assert [e.payload(Allocated).record for e in found.lost] == ["R4", "R5", "R6", "R7"]
    assert not (found.conflicts or found.underivable or found.waiting or found.gap)
    with unit_of_work(engine) as session:
        done = recovery.reconcile(session, ctx, stream, opened)
    assert done.restored == ["R4", "R5", "R6", "R7"] and done.redelivered == []
    assert _without_salt(_disclosures(engine, ctx)) == before
    with unit_of_work(engine) as session:
        assert recovery.inspect(session, ctx, stream, opened).clean  # idempotent

    # The next participant takes the next slot and number, not a given-back one.
    _allocate(engine, ctx, cluster_assigned("R8", "DYS"), keyring)
    after = _without_salt(_disclosures(engine, ctx))
    numbers = [v[0] for v in after.values()]
    slots = [(v[5], v[6]) for v in after.values()]  # stratum, seq
    assert len(set(numbers)) == len(numbers) == 9 and len(set(slots)) == 9


def test_without_the_cluster_on_the_bus_nothing_is_changed(
        setting: tuple[Engine, Context, Keyring, list[Envelope], Path], database_url: str) -> None:
    engine, ctx, keyring, assigned, backup = setting
    stream = _allocated_events(engine)
    _restore(database_url, engine, backup)
    opened = [recovery.open_assignment(env, keyring) for env in assigned if env.record != "R6"]
    with pytest.raises(recovery.NotRecoverable, match="R6"), unit_of_work(engine) as session:
        recovery.reconcile(session, ctx, stream, opened)
    with Session(engine) as session:
        assert len(list(session.exec(select(AllocationRow)))) == 4


def test_a_stream_that_contradicts_the_slots_changes_nothing(
        setting: tuple[Engine, Context, Keyring, list[Envelope], Path], database_url: str) -> None:
    engine, ctx, keyring, assigned, backup = setting
    stream = _allocated_events(engine)
    _restore(database_url, engine, backup)
    # R5's event says another module than its slot holds: the backup is not this stream's.
    forged = []
    for env in stream:
        fact = env.payload(Allocated)
        if fact.record == "R5":
            other = next(m for m in ctx.protocol.module_keys if m != fact.module)
            env = env.model_copy(update={"data": {**env.data, "module": other}})
        forged.append(env)
    opened = [recovery.open_assignment(env, keyring) for env in assigned]
    with pytest.raises(recovery.NotRecoverable, match="R5"), unit_of_work(engine) as session:
        recovery.reconcile(session, ctx, forged, opened)
    with Session(engine) as session:
        assert len(list(session.exec(select(AllocationRow)))) == 4
