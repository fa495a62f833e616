"""The kernel's tests run against one service's migrated database, named by the test
module's `MIGRATIONS` folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from services.core.db import make_engine
from services.core.migrations import run_migrations


@pytest.fixture
def engine(database_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    run_migrations(request.module.MIGRATIONS, database_url)
    eng = make_engine(database_url)
    yield eng
    eng.dispose()
