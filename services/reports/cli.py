"""`tailor reports …`: operator commands of the reports service."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Reports: CONSORT flow, feasibility, recruitment.", no_args_is_help=True)
console = Console()


def feasibility_table(rows: list[dict], *, title: str) -> Table:
    """criterion, value, 95% CI, verdict — as the demo and the rebuild print it."""
    table = Table(title=title)
    for col in ("criterion", "value", "95% CI (Wilson)", "n / N", "verdict"):
        table.add_column(col)
    for c in rows:
        value = ("—" if c["value"] is None else f"{c['value']:.0f}" if c["measure"] == "count"
                 else f"{c['value']:.1%}")
        ci = "—" if c["ci_low"] is None else f"{c['ci_low']:.1%} – {c['ci_high']:.1%}"
        table.add_row(c["key"], value, ci, f"{c['numerator']} / {c['denominator']}",
                      c["verdict"] or "not yet assessable")
    return table


@app.command("rebuild")
def rebuild_command(
    as_of: Annotated[str | None, typer.Option(help="compare figures as of YYYY-MM-DD")] = None,
) -> None:
    """Rebuild the read model from the stream's start; print whether the figures changed."""
    from services.core.bus import TlsFiles
    from services.core.bus_contract import PROVISIONER
    from services.core.db import is_sqlite, make_engine
    from services.core.migrations import run_migrations
    from services.core.protocol import ProtocolError
    from services.core.sealing import BusKeyError, load_keyring
    from services.core.settings import service_settings, settings

    from .app import SPEC
    from .rebuild import read_stream, rebuild

    config = settings()
    try:
        protocol = config.protocol()
        day = date.fromisoformat(as_of) if as_of else datetime.now(UTC).date()
    except (ProtocolError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if protocol.reports is None:
        console.print("[red]the protocol file has no reports section[/red]")
        raise typer.Exit(2)
    url = service_settings("reports").resolved_database_url(config.home)
    run_migrations(SPEC.migrations, url)
    try:
        tls = config.nats_tls()
        stream = asyncio.run(read_stream(
            config.nats_url, credentials=config.nats_credentials(PROVISIONER),
            tls=TlsFiles(*tls) if tls else None))
    except Exception as exc:  # server down, stream missing, read stalled: nothing changed
        console.print(f"[red]cannot read the stream at {config.nats_url}: {exc!r}[/red]")
        raise typer.Exit(1) from None
    engine = make_engine(url)
    try:
        keyring = load_keyring("reports", config.home, embedded=is_sqlite(engine))
    except BusKeyError as exc:
        engine.dispose()
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        result = rebuild(engine, protocol, keyring, stream, as_of=day)
    finally:
        engine.dispose()
    console.print(f"replayed {result.events} events from stream sequence {result.first_seq} "
                  f"({result.skipped} refused as the live consumer would)")
    if result.identical:
        console.print("[green]figures identical to the read model before the rebuild[/green]")
    else:
        console.print(f"[yellow]figures changed: {', '.join(result.changed)}[/yellow]")
    console.print(feasibility_table(result.after["feasibility"], title=f"Feasibility as of {day}"))


@app.command("png")
def png_command(
    svg: Annotated[str, typer.Argument(help="a CONSORT diagram written as SVG")],
    out: Annotated[str | None, typer.Option(help="PNG path (default: next to the SVG)")] = None,
) -> None:
    """Render a CONSORT diagram SVG to PNG with headless Chromium."""
    from pathlib import Path

    from .raster import RasterError, svg_to_png

    try:
        written = svg_to_png(Path(svg), Path(out) if out else None)
    except (RasterError, OSError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"PNG written: {written}")
