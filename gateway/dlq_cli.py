"""`tailor dlq list|replay`: the dead-letter stream from a shell (ops).

Reads NATS at `TAILOR_NATS_URL`; a replay is audited in the gateway's chain, like the
gateway's `POST /api/v1/ops/dead-letters/{seq}/replay`.
"""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.core import dead_letters
from services.core.bus import Bus, TlsFiles
from services.core.bus_contract import PROVISIONER
from services.core.db import make_engine
from services.core.errors import DomainError
from services.core.migrations import run_migrations
from services.core.settings import service_settings, settings

from .keys_cli import MIGRATIONS
from .ops_api import audit_replay

app = typer.Typer(help="Dead letters: list them, replay one.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


async def _bus() -> Bus:
    config = settings()  # replaying another service's fact needs the provisioner's seed
    tls = config.nats_tls()
    bus = Bus(config.nats_url, PROVISIONER, credentials=config.nats_credentials(PROVISIONER),
              tls=TlsFiles(*tls) if tls else None)
    await bus.connect(attempts=3)
    return bus


@app.command("list")
def list_(limit: Annotated[int, typer.Option(min=1, max=500)] = 50) -> None:
    """The newest dead letters: where and why each died (never the payload)."""
    async def run() -> list[dead_letters.DeadLetter]:
        bus = await _bus()
        try:
            assert bus.js is not None
            return await dead_letters.newest(bus.js, limit)
        finally:
            await bus.close()

    table = Table("seq", "consumer", "reason", "error", "original subject", "deliveries")
    for d in asyncio.run(run()):
        table.add_row(str(d.seq), d.consumer, d.reason or "", d.error or "",
                      d.original_subject or "", str(d.deliveries or ""))
    console.print(table)


@app.command()
def replay(seq: Annotated[int, typer.Argument(min=1)]) -> None:
    """Publish dead letter SEQ again on its original subject (audited)."""
    async def run() -> dead_letters.DeadLetter:
        bus = await _bus()
        try:
            assert bus.js is not None
            return await dead_letters.replay(bus.js, seq)
        finally:
            await bus.close()

    try:
        letter = asyncio.run(run())
    except DomainError as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(2) from None
    url = service_settings("gateway").resolved_database_url(settings().home)
    run_migrations(MIGRATIONS, url)
    engine = make_engine(url)
    try:
        try:
            actor = f"cli:{getpass.getuser()}"
        except (OSError, KeyError):
            actor = "cli"
        audit_replay(engine, letter, actor, "cli")
    finally:
        engine.dispose()
    err.print(f"replayed dead letter {seq} to {letter.original_subject} "
              f"(consumer {letter.consumer})")
