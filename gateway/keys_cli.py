"""`tailor keys create|list|revoke`: API keys on the gateway's own database.

The database is `TAILOR_GATEWAY_DATABASE_URL`, or the embedded default under
`TAILOR_HOME`; it is migrated first, so the commands work before the gateway ever ran.
A new key is printed once and never again: only its hash is stored.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from gateway.auth.key_repository import KeyNotFoundError, KeyRequestError
from services.core.db import make_engine, unit_of_work
from services.core.migrations import run_migrations
from services.core.settings import service_settings, settings

from . import key_service

app = typer.Typer(help="API keys of the gateway: create, list, revoke.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
MIGRATIONS = Path(__file__).parent / "migrations"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (a container)
        return "cli"


@contextmanager
def _session() -> Iterator[Session]:
    url = service_settings("gateway").resolved_database_url(settings().home)
    run_migrations(MIGRATIONS, url)
    engine = make_engine(url)
    try:
        with unit_of_work(engine) as session:
            yield session
    finally:
        engine.dispose()


@app.command()
def create(
    role: Annotated[str, typer.Option(help="the one role the key grants, e.g. monitor")],
    name: Annotated[str, typer.Option(help="whose key, for what")],
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650,
                                                        help="days until it expires")] = None,
    reason: Annotated[str | None, typer.Option(
        help="why (required for unblinded and two-person roles; recorded in the audit)")] = None,
) -> None:
    """Issue a key and print it once. Unblinded and two-person roles are issued only here."""
    if key_service.is_privileged(role) and not (reason or "").strip():
        err.print(f"[red]--reason: required for role {role} (unblinded or two-person)[/red]")
        raise typer.Exit(2)
    try:
        with _session() as session:
            issued = key_service.issue_key(session, name=name, role=role,
                                           expires_in_days=expires_in_days, actor=_actor(),
                                           actor_role="cli", reason=reason)
    except (KeyRequestError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    info = issued.info
    expiry = info.expires_at.isoformat() if info.expires_at else "never (until revoked)"
    err.print(f"key [bold]{info.id}[/bold] for role {info.role.value} ({info.name}); "
              f"expires {expiry}. It is shown only now: store it safely.")
    # The key alone on stdout, so `KEY=$(tailor keys create …)` works.
    print(issued.token)


@app.command("list")
def list_(
    active: Annotated[bool, typer.Option("--active", help="hide revoked keys")] = False,
) -> None:
    """Every key: id, name, role, status, dates (never a secret)."""
    with _session() as session:
        keys = key_service.all_keys(session, include_revoked=not active)
    table = Table(title="API keys")
    for column in ("id", "role", "status"):
        table.add_column(column, no_wrap=True)
    for column in ("name", "created", "expires", "last used"):
        table.add_column(column)

    def day(at: datetime | None) -> str:
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if at else "—"

    for k in keys:
        table.add_row(k.id, k.role.value, k.status, k.name, day(k.created_at), day(k.expires_at),
                      day(k.last_used_at))
    console.print(table)


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="the key's id (see `tailor keys list`)")]) -> None:
    """Revoke a key at once; revoking it again changes nothing."""
    try:
        with _session() as session:
            info = key_service.revoke(session, key_id, actor=_actor(), actor_role="cli")
    except KeyNotFoundError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"key {info.id} ({info.name}, {info.role.value}) revoked at "
                  f"{info.revoked_at.isoformat() if info.revoked_at else '?'}")
