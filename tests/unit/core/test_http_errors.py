"""A database that refuses for now (down, locked, a deadlock victim) is a 503 the caller may
retry, not a 500: the transaction was rolled back and nothing changed."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from services.core.http import install_error_handlers


class _Deadlock(Exception):
    pass


def test_a_refusing_database_answers_503_with_retry_after() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/det")
    def det() -> None:
        raise OperationalError("SELECT pg_advisory_xact_lock(1)", {}, _Deadlock("deadlock detected"))

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post("/det")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"
    assert "deadlock" not in answer.text and "SELECT" not in answer.text  # no internals
    assert answer.json()["title"] == "Database unavailable"
