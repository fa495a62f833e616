"""`tailor nats …`: the bus's users, permissions and provisioning for a deployment.

    tailor nats accounts --out secrets/nats [--tls --host nats.example.org]
    tailor nats provision            # with TAILOR_NATS_URL and the provisioner's seed

`accounts` writes `auth.conf` (include it from nats-server.conf), one seed per service
(`<service>.nk`, mode 0600: mount each only into its own service, as
`TAILOR_NATS_CREDS_FILE`) and the provisioner's `tailor.nk`, kept for `tailor` alone.
Re-running keeps existing seeds and rewrites the permissions from the code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="NATS users, permissions and provisioning.", no_args_is_help=True)
console = Console()


@app.command()
def accounts(
    out: Annotated[Path, typer.Option(help="folder for auth.conf and the seeds")],
    tls: Annotated[bool, typer.Option(help="also make a CA and a server certificate")] = False,
    host: Annotated[list[str] | None, typer.Option(help="server name(s) for the certificate")] = None,
) -> None:
    """Write the server's auth include and one NKey seed per service (0600)."""
    from services.core.bus_contract import PROVISIONER
    from services.core.nats_auth import seed_file, tls_block, write_accounts, write_tls

    from . import registry

    grants = registry.bus_grants()
    conf = write_accounts(out, grants)
    console.print(f"[green]{conf}[/green]: include it from nats-server.conf")
    for user in [PROVISIONER, *(g.service for g in grants)]:
        console.print(f"  {seed_file(out, user)}")
    if tls:
        material = write_tls(out / "tls", hosts=host or ["127.0.0.1", "localhost"])
        (out / "tls.conf").write_text(tls_block(material))
        console.print(f"[green]{out / 'tls.conf'}[/green]: include it too; clients verify with "
                      f"TAILOR_NATS_TLS_CA_FILE={material.ca}")


@app.command()
def provision() -> None:
    """Create the streams and every service's durable consumers (idempotent). Uses
    TAILOR_NATS_URL, TAILOR_NATS_CREDS_FILE (the provisioner's seed) and TAILOR_NATS_TLS_*."""
    from nats.js.errors import APIError

    from services.core.bus import TlsFiles
    from services.core.bus_contract import PROVISIONER
    from services.core.settings import settings

    from .natsd import provision as run
    from .natsd import run_async

    config = settings()
    files = config.nats_tls()
    try:
        run_async(lambda: run(config.nats_url, config.nats_credentials(PROVISIONER),
                              TlsFiles(*files) if files else None))
    except APIError as exc:  # the server refused a stream or consumer: say which setting
        console.print(f"[red]not provisioned[/red]: TAILOR_NATS_STREAM_REPLICAS="
                      f"{config.nats_stream_replicas} / TAILOR_NATS_STREAM_MAX_BYTES: JetStream "
                      f"refused the streams: {exc.description or type(exc).__name__}", soft_wrap=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # refused or unreachable: say so, no traceback
        console.print(f"[red]not provisioned[/red]: {exc} — are these the provisioner's "
                      "credentials (TAILOR_NATS_CREDS_FILE)?", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"[green]provisioned[/green] {config.nats_url}")
