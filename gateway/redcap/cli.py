"""`tailor redcap check-rights`: name every REDCap user or role who could derive the arm.

Reads the project's metadata, users, roles and role assignments through the REDCap API
with Tailor's token (`TAILOR_REDCAP_API_URL`, `TAILOR_REDCAP_TOKEN` or `..._TOKEN_FILE`).
Exit status 0: nobody but Tailor's API account sees both the allocation and the baseline
MPI-D answers; 1: offenders (listed); 2: REDCap could not be asked.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from .client import RedcapClient, RedcapRefused, RedcapUnavailable
from .settings import RedcapSettings

app = typer.Typer(help="The trial's REDCap project.", no_args_is_help=True)
console = Console()


@app.callback()
def _group() -> None:
    """The trial's REDCap project."""


@app.command("check-rights")
def check_rights(
    service_user: Annotated[str | None, typer.Option(
        help="Tailor's own REDCap API user (default TAILOR_REDCAP_SERVICE_USERNAME)")] = None,
) -> None:
    """Blinding check: no REDCap user or role may see the module and baseline MPI-D."""
    from services.core.settings import settings as tailor_settings

    redcap = RedcapSettings()
    if not redcap.enabled:
        console.print("[red]TAILOR_REDCAP_API_URL and a token are needed[/red]")
        raise typer.Exit(2)
    protocol = tailor_settings().protocol()
    client = RedcapClient(redcap.api_url or "", redcap.api_token() or "",
                          timeout=redcap.timeout_seconds)
    try:
        offenders = client.rights_offenders(protocol.redcap,
                                            service_user or redcap.service_username,
                                            personalized=protocol.randomization.personalized,
                                            module_forms=protocol.module_forms)
    except (RedcapUnavailable, RedcapRefused) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    for o in offenders:
        console.print(f"[red]offender[/red] {o.describe()}")
    if offenders:
        raise typer.Exit(1)
    console.print("[green]ok[/green]: no REDCap user or role can see both the allocation "
                  "and the baseline MPI-D answers")
