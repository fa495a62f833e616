"""Shared fixtures: a real nats-server per test that needs one, real databases.

PostgreSQL-backed tests run whenever a server is reachable at TAILOR_TEST_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/postgres); with CI=true an unreachable
server is a failure, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tailor_cli.natsd import NatsServer
from tests.support.sealed import configure_bus_keys

PG_ADMIN_URL = os.environ.get("TAILOR_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path / "nats").start()
    yield server
    server.kill()


def _pg_reachable() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    problem = _pg_reachable()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL is unreachable at {PG_ADMIN_URL}: {problem}")
        pytest.skip(f"PostgreSQL unreachable ({problem})")
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"tailor_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres_admin.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(autouse=True)
def bus_keys(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every consumer's bus key pair and the digest keys, configured through the environment
    as a deployment does (so SQLite and PostgreSQL runs, and test helpers that seal, agree)."""
    folder = tmp_path_factory.mktemp("bus-keys")
    configure_bus_keys(folder, monkeypatch)
    return folder


# The longest modules: each builds a whole stack once (module-scoped) and runs for minutes.
FIRST = ("tests/production/",)
MIDDLE = ("tests/browser/", "tests/e2e/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `make test` (pytest-xdist, --dist worksteal) each worker starts on a contiguous
    share of the collection and an idle worker steals from the tail of another's queue. The
    longest modules go to the head of the first and the second share: they start at once, on
    different workers, and are never split (a split module would build its stack twice).
    Without xdist this only changes the order of whole modules."""
    first = [i for i in items if i.nodeid.startswith(FIRST)]
    middle = [i for i in items if i.nodeid.startswith(MIDDLE)]
    placed = {id(i) for i in first + middle}
    rest = [i for i in items if id(i) not in placed]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "2"))
    cut = max(0, len(items) // max(2, workers) - len(first))
    items[:] = first + rest[:cut] + middle + rest[cut:]
