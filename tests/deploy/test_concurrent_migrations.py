"""Replicas (or a Job and an operator) migrating one PostgreSQL database at the same time
take turns under an advisory lock: all succeed, the history is applied once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from services.core.migrations import migration_lock_key
from tailor_cli import registry

pytestmark = [pytest.mark.deploy, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
RUNS = 4
WAITING = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
               "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")


@pytest.mark.parametrize("service", ["randomization", "gateway"])
def test_concurrent_migrations_take_turns_and_all_succeed(service: str, postgres_url: str,
                                                          tmp_path: Path) -> None:
    # As operators write it: postgres://, not SQLAlchemy's driver URL.
    url = "postgres://" + postgres_url.split("://", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env |= {"PYTHONPATH": str(ROOT), "TAILOR_HOME": str(tmp_path),
            f"TAILOR_{service.upper()}_DATABASE_URL": url}
    key = migration_lock_key(registry.migrations_of(service))
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as holder:
        # Hold the lock so that every run gets to it before any migrates: they all start
        # "at the same time", deterministically.
        holder.execute(text(f"SELECT pg_advisory_lock({key})"))
        runs = [subprocess.Popen([sys.executable, "-m", "tailor_cli", "migrate", service],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(RUNS)]
        waited = 0
        deadline = time.monotonic() + 240
        while waited < RUNS and time.monotonic() < deadline and all(p.poll() is None for p in runs):
            time.sleep(0.2)
            waited = holder.execute(WAITING).scalar_one()
        holder.execute(text(f"SELECT pg_advisory_unlock({key})"))
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in runs]
    assert waited == RUNS, [err[-500:] for _, err in results]
    assert [rc for rc, _ in results] == [0] * RUNS, [err[-800:] for _, err in results]
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert len(versions) == 1
