"""`tailor`: serve a service, run the local stack, migrate, play the demo."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import registry

app = typer.Typer(help="Tailor: personalized-allocation trials.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def _refuse_bad_settings() -> None:
    """A misspelt or invalid `TAILOR_*` variable stops the process with one line naming it;
    secrets given as `TAILOR_X_FILE` are read first."""
    from .settings_catalog import load_secret_files, settings_problem

    problem = load_secret_files() or settings_problem()
    if problem:
        err_console.print(problem, markup=False, highlight=False)
        raise typer.Exit(2)


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="gateway, allocation, randomization, …")],
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 = TAILOR_<SERVICE>_PORT or 8000)")] = 0,
) -> None:
    """Run one service as its own process: HTTP API, consumers, outbox relay."""
    from services.core.protocol import ProtocolError
    from services.core.runner import serve as run
    from services.core.settings import service_settings, settings

    _refuse_bad_settings()
    own = service_settings(service)
    try:
        application = registry.app_factory(service)()
    except (ProtocolError, ValueError) as exc:  # name the wrong key and stop, no traceback
        err_console.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(2) from None
    if not run(application, host=host or own.host, port=port or own.port or 8000,
               metrics_port=settings().metrics_port):
        raise typer.Exit(3)  # start-up failed; the log line above says why


@app.command()
def migrate(service: Annotated[str, typer.Argument(help="service whose database to migrate")]) -> None:
    """Apply the service's Alembic migrations to its database (safe to run concurrently:
    PostgreSQL migrations take an advisory lock)."""
    from services.core.migrations import run_migrations
    from services.core.settings import service_settings, settings

    _refuse_bad_settings()
    url = service_settings(service).resolved_database_url(settings().home)
    run_migrations(registry.migrations_of(service), url)
    console.print(f"[green]{service}[/green]: database at head")


@app.command("settings")
def settings_table(
    check: Annotated[bool, typer.Option(help="only check this environment's TAILOR_* variables")]
    = False,
) -> None:
    """Every TAILOR_* setting as a Markdown table (deploy/README.md is generated from it)."""
    from .settings_catalog import markdown_table

    if check:
        _refuse_bad_settings()
        console.print("settings: ok")
        return
    print(markdown_table())


def _print_stack(stack: object) -> None:
    from .stack import LocalStack

    assert isinstance(stack, LocalStack)
    table = Table(title="Tailor local stack")
    table.add_column("process")
    table.add_column("listens on")
    table.add_column("pid")
    pids = stack.pids()
    if stack.nats:
        table.add_row("nats-server", stack.nats.url, str(pids.get("nats-server", "")))
    for child in stack.children:
        table.add_row(child.name, child.url or "", str(pids.get(child.name, "")))
    console.print(table)


@app.command()
def up(
    home: Annotated[Path, typer.Option(help="state folder")] = Path(".tailor"),
    protocol: Annotated[Path, typer.Option(help="protocol file")] = Path("protocols/perpain-pilot.yaml"),
) -> None:
    """Start nats-server and every service; wait until all are ready; Ctrl-C stops them all."""
    from .stack import LocalStack

    stack = LocalStack(home=home, services=registry.existing(), protocol_file=protocol)
    stopping = False

    def _stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        stack.start()
        _print_stack(stack)
        console.print("[bold green]ready[/bold green] — Ctrl-C stops everything")
        while not stopping:
            if stack.dead():
                console.print(f"[red]stopped unexpectedly:[/red] {', '.join(stack.dead())}")
                raise typer.Exit(1)
            time.sleep(0.2)
    finally:
        console.print("stopping…")
        stack.stop()
        console.print("stopped")


@app.command()
def demo(
    home: Annotated[Path, typer.Option(help="state folder (wiped first)")] = Path(".tailor/demo"),
    protocol: Annotated[str | None, typer.Option(
        help="a seed trial under protocols/ (partners4pain, rush-mechanisms, iact-mmrp, pcst-smart); "
             "default: the PerPAIN pilot")] = None,
    participants: Annotated[int | None, typer.Option(
        help="participants the seed trial's demo randomizes (besides a few ineligible and "
             "one who withdraws); default: the protocol's sample_size")] = None,
) -> None:
    """Run a trial end to end on the local stack and check it; exit 0 only if every check holds."""
    if protocol is not None and protocol != "perpain-pilot":
        from .demo.designs import run_design_demo

        raise typer.Exit(run_design_demo(protocol, home, console, participants=participants))
    from .demo import run_demo

    raise typer.Exit(run_demo(home, console))


def _mount_subcommands() -> None:
    """Service-owned command groups (`tailor allocation train`, `tailor keys create`, …)."""
    import importlib

    for name, module in (("allocation", "services.allocation.cli"),
                         ("randomization", "services.randomization.cli"),
                         ("reports", "services.reports.cli"),
                         ("keys", "gateway.keys_cli"), ("redcap", "gateway.redcap.cli"),
                         ("nats", "tailor_cli.nats_cli"),
                         ("audit", "tailor_cli.audit_cli"), ("dlq", "gateway.dlq_cli"),
                         ("restore", "tailor_cli.restore_cli")):
        try:
            sub = importlib.import_module(module).app
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the group exists but something it needs is missing
                raise
            continue
        if name == "keys":
            from .key_material import mount

            mount(sub)
        app.add_typer(sub, name=name)


# `tailor serve <service>` is every service process of the local stack: it must not import
# the other services' command groups (scikit-learn, skops and NumPy for `tailor allocation`
# alone add ~150 MB to each process; bench/memory.py measures it).
if sys.argv[1:2] != ["serve"]:
    _mount_subcommands()
