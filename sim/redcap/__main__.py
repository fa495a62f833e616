"""`python -m sim.redcap serve --port P --db PATH [--dictionary DIR]`: run the emulator."""

from __future__ import annotations

import os
from pathlib import Path

import typer
import uvicorn

from .app import create_app
from .context import EmulatorConfig
from .dictionary import load_project_folder

cli = typer.Typer(help="REDCap API emulator", no_args_is_help=True, add_completion=False)


@cli.command()
def serve(
    port: int = typer.Option(8300, help="TCP port"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    db: Path = typer.Option(Path(".tailor/redcap-emulator.sqlite"), help="SQLite state file"),
    dictionary: Path | None = typer.Option(None, help="project folder (data_dictionary.csv, ...)"),
    project_id: int | None = typer.Option(None, help="project id of the created project"),
    token: str | None = typer.Option(None, envvar="REDCAP_EMULATOR_TOKEN",
                                     help="API token (32 hex) for the project (prefer the "
                                          "environment variable: a command line is public)"),
    token_file: Path | None = typer.Option(None, help="write the project's API token here"),
    super_token: str | None = typer.Option(None, envvar="REDCAP_EMULATOR_SUPER_TOKEN",
                                           help="super API token (64 hex) for content=project"),
    det_url: str | None = typer.Option(None, envvar="REDCAP_EMULATOR_DET_URL",
                                       help="Data Entry Trigger URL of the project (it holds "
                                            "the DET secret: prefer the environment variable)"),
    public_url: str | None = typer.Option(None, help="redcap_url reported in DETs"),
) -> None:
    """Serve REDCap's API on /api/ and the emulator's own endpoints on /emulator/."""
    db.parent.mkdir(parents=True, exist_ok=True)
    if not db.exists():  # the project's data: readable by this user only
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    app = create_app(db, dictionary_dir=dictionary, project_id=project_id, token=token,
                     super_token=super_token, det_url=det_url,
                     config=EmulatorConfig(public_url=public_url))
    emulator = app.state.emulator
    for pid in emulator.store.project_ids():
        tokens = emulator.store.tokens_of(pid)
        typer.echo(f"project {pid}: {emulator.store.project(pid).title} ({len(tokens)} token(s))")
        if token_file is not None and (project_id is None or pid == project_id) and tokens:
            token_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write((token or tokens[0][0]) + "\n")
            token_file.chmod(0o600)
    typer.echo(f"REDCap API at http://{host}:{port}/api/")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@cli.command()
def check(folder: Path) -> None:
    """Check a project folder the way REDCap checks an upload; exit 1 listing the problems."""
    from .checks import DesignError

    try:
        design = load_project_folder(folder)
    except DesignError as err:
        for problem in err.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{len(design.fields)} fields, {len(design.forms)} instruments, "
               f"{len(design.events)} events, {len(design.roles)} user roles: OK")


if __name__ == "__main__":
    cli()
