"""`tailor audit verify`: every audit chain checked offline, from the databases themselves.

Each chain is re-computed from its database and compared with its witnessed head: a
service's, as the gateway recorded it (table `witnessed_head`); the gateway's own, the
longest head any service recorded in its chain. Shorter than the witnessed head is
truncation; another hash at that length is a rewrite. Exit status 1 on any problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Audit chains.", no_args_is_help=True)
console = Console()


@dataclass(frozen=True)
class Head:
    length: int
    head_hash: str


@dataclass(frozen=True)
class Verdict:
    chain: str
    length: int | None
    witnessed: Head | None
    truncated: bool
    problem: str | None


def judge(chain: str, length: int, broken: str | None, hash_at: str | None,
          witnessed: Head | None) -> Verdict:
    """Pure: the chain's own check, then against the head another party witnessed."""
    truncated, problem = False, broken
    if witnessed is not None and length < witnessed.length:
        truncated = True
        problem = problem or (f"holds {length} entries but {witnessed.length} were witnessed: "
                              "truncated")
    elif witnessed is not None and witnessed.length and hash_at != witnessed.head_hash:
        problem = problem or f"entry {witnessed.length} is not the one witnessed: rewritten"
    return Verdict(chain, length, witnessed, truncated, problem)


def _databases(given: list[str]) -> dict[str, str]:
    from services.core.settings import SERVICES, service_settings, settings

    if not given:
        return {s: service_settings(s).resolved_database_url(settings().home) for s in SERVICES}
    urls = {}
    for item in given:
        name, sep, url = item.partition("=")
        if not sep or name not in SERVICES:
            raise typer.BadParameter(f"{item!r}: expected <service>=<database URL>, service one of "
                                     f"{', '.join(SERVICES)}", param_hint="--database")
        urls[name] = url
    return urls


def verify_offline(urls: dict[str, str]) -> list[Verdict]:
    from sqlmodel import Session, select

    from gateway.models import WitnessedHead
    from services.core import audit, audit_witness
    from services.core.audit import AuditEntry
    from services.core.db import make_engine

    reports, witnessed = {}, {}
    gateway_heads: list[Head] = []
    for chain, url in urls.items():
        engine = make_engine(url)
        try:
            with Session(engine) as session:
                reports[chain] = audit.verify(session)
                if chain == "gateway":
                    witnessed = {w.service: Head(w.length, w.head_hash)
                                 for w in session.exec(select(WitnessedHead))}
                else:
                    seen = audit_witness.witnessed(session, "gateway")
                    if seen is not None:
                        gateway_heads.append(Head(seen.length, seen.head_hash))
        finally:
            engine.dispose()
    if gateway_heads:
        witnessed["gateway"] = max(gateway_heads, key=lambda h: h.length)
    verdicts = []
    for chain, report in reports.items():
        head = witnessed.get(chain)
        hash_at = None
        if head is not None and head.length:
            engine = make_engine(urls[chain])
            with Session(engine) as session:
                entry = session.get(AuditEntry, head.length)
                hash_at = entry.hash if entry else None
            engine.dispose()
        verdicts.append(judge(chain, report.length, report.problem, hash_at, head))
    return verdicts


@app.command()
def verify(
    database: Annotated[list[str] | None, typer.Option(
        help="<service>=<database URL> (repeat); default: every service's configured database")] = None,
) -> None:
    """Re-compute every chain from its database and compare it with its witnessed head."""
    verdicts = verify_offline(_databases(database or []))
    table = Table(title="Tailor audit chains")
    for column in ("chain", "entries", "witnessed", "verdict"):
        table.add_column(column)
    for v in verdicts:
        seen = "—" if v.witnessed is None else str(v.witnessed.length)
        table.add_row(v.chain, str(v.length), seen,
                      "[green]ok[/green]" if v.problem is None else f"[red]{v.problem}[/red]")
    console.print(table)
    if any(v.problem for v in verdicts):
        raise typer.Exit(1)
