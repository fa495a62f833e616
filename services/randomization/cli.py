"""`tailor randomization …`: offline tools for the statistician and anyone checking a list.

    tailor randomization new-key                    # a list key for TAILOR_RANDOMIZATION_LIST_KEY
    tailor randomization generate --out list.csv    # a list in the import format, from a seed
    tailor randomization verify commitment.json unsealed.json

`generate` is what a trials unit runs on its own machine: the same protocol and seed always
give the same list (import it with `POST /v1/lists/import`). `verify` checks a list unsealed
at closure (`GET /v1/lists/{id}/unsealed`, unblinded roles) against the commitment
downloaded when it was sealed (`GET /v1/lists/{id}/commitment`): no key and no database needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from services.core.protocol import ProtocolError, load_protocol

from .domain import (
    COLUMNS,
    SEED_BYTES,
    CommitmentError,
    ListCommitment,
    OpenedSlot,
    RandomizationError,
    Slot,
    design_from_protocol,
    generate_list,
    new_seed,
    verify_list,
)
from .keys import new_key_text

app = typer.Typer(help="Randomization lists: keys, offline generation, commitment checks.",
                  no_args_is_help=True)
console = Console(stderr=True)

ProtocolOption = Annotated[Path, typer.Option(
    "--protocol", envvar="TAILOR_PROTOCOL_FILE", help="trial protocol file")]


@app.command("new-key")
def new_key() -> None:
    """Print a fresh list key (base64 of 32 random bytes) for the secret store."""
    typer.echo(new_key_text())


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="CSV file to write")],
    protocol_file: ProtocolOption = Path("protocols/perpain-pilot.yaml"),
    slots_per_stratum: Annotated[int | None, typer.Option(
        help="default: the protocol's initial_slots_per_stratum")] = None,
    seed_hex: Annotated[str | None, typer.Option(
        "--seed", help=f"{SEED_BYTES * 2} hex digits; default: a fresh CSPRNG seed")] = None,
) -> None:
    """Generate a list in the import format; prints the seed (keep it secret and safe)."""
    try:
        seed = bytes.fromhex(seed_hex) if seed_hex else new_seed()
        slots = generate_list(design_from_protocol(load_protocol(protocol_file)), seed,
                              slots_per_stratum)
    except (ProtocolError, RandomizationError, ValueError) as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    lines = [",".join(COLUMNS), *(",".join(map(str, s)) for s in slots)]
    out.write_text("\n".join(lines) + "\n")
    console.print(f"{len(slots)} slots written to {out}")
    console.print(f"seed: {seed.hex()}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        console.print(f"[red]{path}: {err}[/red]")
        raise typer.Exit(2) from None
    if not isinstance(data, dict):
        console.print(f"[red]{path}: not a JSON object[/red]")
        raise typer.Exit(2)
    return data


@app.command()
def verify(
    commitment: Annotated[Path, typer.Argument(help="GET …/commitment answer (or its statement)")],
    unsealed: Annotated[Path, typer.Argument(help="the unsealed list (GET …/unsealed answer)")],
) -> None:
    """Check an unsealed list against a published commitment, slot by slot."""
    published, listing = _read_json(commitment), _read_json(unsealed)
    try:
        statement = ListCommitment.from_statement(published.get("statement", published))
        opened = [OpenedSlot(Slot(s["stratum"], int(s["seq"]), int(s["block"]),
                                  int(s["block_length"]), s["module"], s["arm"]),
                             bytes.fromhex(s["salt"])) for s in listing["slots"]]
        verify_list(opened, statement)
    except (CommitmentError, KeyError, TypeError, ValueError) as err:
        problems = getattr(err, "problems", ()) or (str(err),)
        for problem in problems:
            console.print(f"[red]{problem}[/red]")
        raise typer.Exit(1) from None
    console.print(f"[green]verified[/green]: {len(opened)} slots match commitment "
                  f"{statement.digest()} ({len(statement.batches)} batch(es))")


if __name__ == "__main__":
    app()
