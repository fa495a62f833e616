"""Alembic support shared by every service's migration history.

Each service has its own `migrations/` folder (its own history, its own database); their
`env.py` calls `run_env()`. Revisions already written are frozen (they spell out their
DDL), so changing the kernel later never rewrites history.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy.engine import Engine

from .db import make_engine


def alembic_config(script_location: Path, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def run_migrations(script_location: Path, url: str, *, engine: Engine | None = None) -> None:
    """Bring the database at `url` to the newest revision of `script_location`."""
    cfg = alembic_config(script_location, url)
    eng = engine or make_engine(url)
    try:
        with eng.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            raw = conn.connection.driver_connection
            if sqlite and raw is not None:  # outside a transaction, or SQLite ignores it:
                raw.execute("PRAGMA foreign_keys=OFF")  # a table copy (batch) checks keys after
            try:
                with conn.begin():
                    lock_migrations(conn, script_location)
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                        raise RuntimeError("a migration left rows whose foreign key is broken")
            finally:
                if sqlite and raw is not None:
                    raw.execute("PRAGMA foreign_keys=ON")
    finally:
        if engine is None:
            eng.dispose()


def lock_migrations(conn: sa.Connection, script_location: Path) -> None:
    """Two processes migrating one PostgreSQL database at once (replicas starting together,
    a Job and an operator) take turns: the second waits for the first's transaction, then
    finds the database at head. The lock ends with the transaction. SQLite's BEGIN
    IMMEDIATE already serialises writers."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({migration_lock_key(script_location)})")


def migration_lock_key(script_location: Path) -> int:
    """The advisory lock's key: one per migration history (a service's `migrations/`)."""
    return zlib.crc32(f"tailor-migrations:{script_location.parent.name}".encode())


def run_env() -> None:
    """Body of every service's migrations/env.py (online mode only)."""
    conn = context.config.attributes.get("connection")
    if conn is None:
        eng = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
        with eng.begin() as conn:
            context.configure(connection=conn, render_as_batch=True)
            context.run_migrations()
        eng.dispose()
        return
    context.configure(connection=conn, render_as_batch=True)
    context.run_migrations()


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def utc_column(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    """A timezone-aware timestamp column (UTC by the house rule)."""
    return sa.Column(name, _utc(), nullable=nullable)


def make_append_only(table: str) -> None:
    """UPDATE and DELETE on `table` are refused by the database itself (SQLite and PostgreSQL)."""
    message = f"{table} is append-only"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""CREATE OR REPLACE FUNCTION tailor_{table}_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN
              RAISE EXCEPTION '{message}' USING ERRCODE = 'insufficient_privilege';
            END $$""")
        op.execute(f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION tailor_{table}_append_only()""")
        op.execute(f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION tailor_{table}_append_only()""")
        return
    for verb in ("update", "delete"):
        op.execute(f"""CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table}
            BEGIN SELECT RAISE(ABORT, '{message}'); END""")
