"""Database engines and the one-transaction-per-unit-of-work helper.

SQLite is the embedded default (WAL, busy timeout so concurrent writers queue instead of
failing); PostgreSQL is used in CI and production. On SQLite the writers of one process also
queue on an in-process lock (`_WriterQueue`), handed over the moment a transaction ends:
SQLite's own busy handler polls with sleeps of up to 100 ms, which under a few concurrent
writers added seconds to a hop. The edge (request dependency or
consumer wrapper) opens `unit_of_work()`; services never commit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, event, exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def normalise_database_url(url: str) -> str:
    """`postgres://` and `postgresql://` (as providers and operators write them) → the
    psycopg 3 driver SQLAlchemy should use."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None) -> Engine:
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        _WriterQueue(timeout=30).install(engine)
        return engine
    overflow = pool_size if max_overflow is None else max_overflow
    return create_engine(url, pool_size=pool_size, max_overflow=overflow, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class _WriterQueue:
    """SQLite: every transaction begins with BEGIN IMMEDIATE (pysqlite's own handling defers
    BEGIN; a transaction that takes the lock up front never deadlocks on upgrade), after
    taking this process's writer lock, released right after COMMIT or ROLLBACK. Writers of
    one process then wait on a lock that wakes the next one at once, and SQLite's busy
    handler is left to arbitrate between processes only. A transaction waiting longer than
    `timeout` fails as SQLite's busy timeout would ("database is locked")."""

    def __init__(self, timeout: float) -> None:
        self._lock = threading.Lock()
        self._timeout = timeout
        self._holder: int | None = None  # id() of the DBAPI connection in a transaction

    def install(self, engine: Engine) -> None:
        dialect: Any = engine.dialect
        commit, rollback, close = dialect.do_commit, dialect.do_rollback, dialect.do_close

        def do_begin(dbapi_connection: Any) -> None:
            if not self._lock.acquire(timeout=self._timeout):
                raise exc.OperationalError("BEGIN IMMEDIATE", None,
                                           Exception("database is locked (in-process writer)"))
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._lock.release()
                raise
            self._holder = id(_raw(dbapi_connection))

        def ending(end: Any) -> Any:
            def do_end(dbapi_connection: Any) -> None:
                try:
                    end(dbapi_connection)
                finally:
                    if self._holder is not None and self._holder == id(_raw(dbapi_connection)):
                        self._holder = None
                        self._lock.release()
            return do_end

        # Per engine: the dialect instance belongs to this engine alone.
        dialect.do_begin = do_begin
        dialect.do_commit, dialect.do_rollback = ending(commit), ending(rollback)
        dialect.do_close = ending(close)


def _raw(dbapi_connection: Any) -> Any:
    return getattr(dbapi_connection, "dbapi_connection", None) or dbapi_connection


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction: commit if the block succeeds, roll back if it raises."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


class UtcDateTime(TypeDecorator[datetime]):
    """Stores aware UTC datetimes; gives them back aware even where the database
    (SQLite) forgets the zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware UTC times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
