"""`tailor allocation …`: make the synthetic reference cohort, train the cluster model.

    python -m services.allocation.cli synth-reference
    python -m services.allocation.cli train protocols/perpain-pilot/models/synthetic-reference.csv

Both read the protocol file (`--protocol`, or TAILOR_PROTOCOL_FILE) for the clusters,
norms, profile rules and training settings; the protocol's `allocation.model.path` is
taken from the protocol file's folder when relative.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.core.protocol import ProtocolError, TrialProtocol, load_protocol

if TYPE_CHECKING:
    from .domain import TrainedModel

# The domain (scikit-learn, pandas) is imported inside the commands: this group is mounted
# on the `tailor` CLI of every service, and only allocation needs the ML stack.

app = typer.Typer(help="MPI-D cluster model: synthetic reference cohort and training.",
                  no_args_is_help=True)
console = Console()
SYNTHETIC_CSV = "synthetic-reference.csv"

ProtocolOption = Annotated[Path, typer.Option(
    "--protocol", envvar="TAILOR_PROTOCOL_FILE", help="trial protocol file")]


def _protocol(path: Path) -> TrialProtocol:
    try:
        return load_protocol(path)
    except ProtocolError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None


def _model_dir(protocol: TrialProtocol) -> Path:
    return Path(protocol.prediction.model.path).parent


@app.command("synth-reference")
def synth_reference(
    protocol_file: ProtocolOption = Path("protocols/perpain-pilot.yaml"),
    out: Annotated[Path | None, typer.Option(
        help="CSV to write [default: synthetic-reference.csv beside the protocol's model]",
    )] = None,
    size: Annotated[int | None, typer.Option(help="patients [default: the protocol's]")] = None,
    seed: Annotated[int | None, typer.Option(help="[default: the protocol's training seed]")
                    ] = None,
) -> None:
    """Write a SYNTHETIC reference cohort (item level) drawn from the published figures."""
    from .domain import synthesize_reference

    protocol = _protocol(protocol_file)
    rules = protocol.prediction
    prefix = protocol.redcap.fields.mpid_item_prefix
    rows = synthesize_reference(
        rules.synthetic_reference, rules.reference_norms,
        seed=rules.training.seed if seed is None else seed, size=size, item_prefix=prefix)
    target = out or _model_dir(protocol) / SYNTHETIC_CSV
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    counts = {c: sum(r["synthetic_cluster"] == c for r in rows)
              for c in rules.synthetic_reference.clusters}
    console.print(f"wrote {len(rows)} [bold]SYNTHETIC[/bold] patients to {target} "
                  f"({', '.join(f'{c} {n}' for c, n in counts.items())})")


@app.command()
def train(
    csv_path: Annotated[Path, typer.Argument(
        help="prior patients: item columns (<prefix>1_1 …) or the nine scale columns, "
             "with age (years) and sex (1 = female, 0 = male)")],
    protocol_file: ProtocolOption = Path("protocols/perpain-pilot.yaml"),
    out_dir: Annotated[Path | None, typer.Option(
        help="[default: the folder of the protocol's allocation.model.path]")] = None,
    seed: Annotated[int | None, typer.Option(help="[default: the protocol's]")] = None,
    name: Annotated[str | None, typer.Option(
        help="model name, prefix of the model version [default: <trial id>-cluster-model]",
    )] = None,
    age_column: str = "age",
    sex_column: str = "sex",
) -> None:
    """Train the cluster model; write artifact, manifest.json and MODEL_CARD.md."""
    from .domain import (
        AllocationError,
        TrainingSource,
        cohort_from_rows,
        train_cluster_model,
        write_model,
    )
    from .domain.synthetic import SOURCE as SYNTHETIC_SOURCE

    protocol = _protocol(protocol_file)
    rules = protocol.prediction
    settings = rules.training if seed is None else rules.training.model_copy(update={"seed": seed})
    data = csv_path.read_bytes()
    rows = list(csv.DictReader(data.decode("utf-8-sig").splitlines()))
    synthetic = bool(rows) and all(r.get("source") == SYNTHETIC_SOURCE for r in rows)
    try:
        cohort = cohort_from_rows(rows, item_prefix=protocol.redcap.fields.mpid_item_prefix,
                                  age_column=age_column, sex_column=sex_column)
        trained = train_cluster_model(
            cohort.features, clusters=[c.key for c in protocol.clusters],
            rules=rules.cluster_profiles, settings=settings,
            synthetic_clusters=cohort.reference_labels if synthetic else None)
    except AllocationError as err:
        console.print(f"[red]cannot train: {err}[/red]")
        raise typer.Exit(1) from None
    source = TrainingSource(csv_path.name, hashlib.sha256(data).hexdigest(), synthetic)
    manifest = write_model(
        out_dir or _model_dir(protocol), trained, cohort, source,
        model_name=name or f"{protocol.trial.id}-cluster-model",
        artifact_file=Path(rules.model.path).name)
    _report(trained, manifest, excluded=len(cohort.excluded))
    sha = manifest["artifact"]["sha256"]
    if sha == rules.model.sha256:
        console.print("the protocol already names this artifact")
    else:
        console.print(f"to activate it, set allocation.model.sha256 to \"{sha}\" in "
                      f"{protocol_file}")


def _report(trained: TrainedModel, manifest: dict[str, object], *, excluded: int) -> None:
    m, clusters = trained.metrics, trained.clusters
    origin = "[bold yellow]SYNTHETIC[/bold yellow] " if manifest["synthetic"] else ""
    console.print(f"{origin}model {manifest['model_version']}: "
                  f"{sum(m.cluster_sizes.values())} patients, {excluded} left out")
    console.print(f"out-of-bag accuracy {m.oob_accuracy:.1%}, "
                  f"{len(m.cv_fold_accuracies)}-fold cross-validated accuracy {m.cv_accuracy:.1%}")
    if m.synthetic_cluster_agreement is not None:
        console.print(f"agreement with the clusters drawn: {m.synthetic_cluster_agreement:.1%}")
    table = Table(title="cross-validated confusion matrix (rows: soft k-means cluster)")
    table.add_column("")
    for c in clusters:
        table.add_column(c, justify="right")
    table.add_column("patients", justify="right")
    for c, row in zip(clusters, m.confusion_matrix, strict=True):
        table.add_row(c, *map(str, row), str(m.cluster_sizes[c]))
    console.print(table)


if __name__ == "__main__":
    app()
