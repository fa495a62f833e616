"""What the demo prints."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlmodel import Session, select

from services.core import audit
from services.core.audit import AuditEntry
from services.core.db import make_engine
from services.core.protocol import TrialProtocol
from sim.cohort import Participant

from ..stack import LocalStack
from .checks import Verdict, design_table, percentile
from .pilot import Entry


def summaries(console: Console, protocol: TrialProtocol, in_redcap: dict[str, dict[str, str]],
              unblinded: list[dict], module_field: str) -> None:
    blinded = Table(title="Blinded summary (what REDCap shows): participants per module")
    blinded.add_column("module")
    blinded.add_column("participants", justify="right")
    per_module = Counter(row[module_field] for row in in_redcap.values())
    for module in protocol.module_keys:
        blinded.add_row(module, str(per_module[module]))
    console.print(blinded)
    table = Table(title="[bold red]UNBLINDED[/bold red] (study manager): cluster × arm × module",
                  caption="2:1:1 within each cluster stratum: matching module ≈ 50%, each other ≈ 25%")
    for col in ("cluster", "arm", "module", "participants"):
        table.add_column(col, justify="right" if col == "participants" else "left")
    for row in design_table(protocol, unblinded):
        table.add_row(row[0], row[1], row[2], str(row[3]))
    console.print(table)


def _entries(db: str, action: str) -> list[AuditEntry]:
    engine = make_engine(db)
    try:
        with Session(engine) as session:
            return list(session.exec(select(AuditEntry).where(AuditEntry.action == action)))
    finally:
        engine.dispose()


def latency(console: Console, stack: LocalStack, expected: list[Participant]) -> dict[str, float]:
    """DET receipt of each participant's last baseline form → write-back into REDCap, from the
    gateway's own audit trail (microsecond timestamps)."""
    db = f"sqlite:///{stack.home / 'gateway.db'}"
    last_det: dict[str, datetime] = {}
    for e in _entries(db, "redcap.det_received"):
        if e.record and (e.record not in last_det or e.at > last_det[e.record]):
            last_det[e.record] = e.at
    written = {e.record: e.at for e in _entries(db, "redcap.written") if e.record}
    seconds = {r: (written[r] - last_det[r]).total_seconds()
               for r in (p.record for p in expected) if r in written and r in last_det}
    if not seconds:
        console.print("[red]no write-back found in the gateway's audit trail[/red]")
        return {}
    values = list(seconds.values())
    slowest = max(seconds, key=seconds.__getitem__)
    figures = {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
               "p99": percentile(values, 0.99), "max": seconds[slowest]}
    console.print(f"DET → REDCap write-back over {len(values)} participants: "
                  f"p50 {figures['p50']:.2f}s  p95 {figures['p95']:.2f}s  p99 {figures['p99']:.2f}s; "
                  f"slowest: record {slowest} ({figures['max']:.2f}s)")
    return figures


def audit_chains(console: Console, stack: LocalStack, services: list[str], verdict: Verdict) -> None:
    table = Table(title="Audit chains (append-only, hash-chained), verified")
    for col in ("service", "entries", "head hash", "verdict"):
        table.add_column(col)
    for name in services:
        engine = make_engine(f"sqlite:///{stack.home / (name + '.db')}")
        try:
            with Session(engine) as session:
                result = audit.verify(session)
        finally:
            engine.dispose()
        verdict.check(result.ok, f"{name}: audit chain intact ({result.length} entries)")
        table.add_row(name, str(result.length), result.head_hash[:16] + "…",
                      "[green]intact[/green]" if result.ok else
                      f"[red]broken at {result.first_broken_seq}: {result.problem}[/red]")
    console.print(table)


def entry(console: Console, e: Entry, cohort: list[Participant], commitment: dict) -> None:
    stories = Counter(p.story for p in cohort)
    console.print(f"site staff saved {e.saves} forms (+{e.duplicate_saves} duplicate saves) for "
                  f"{len(cohort)} screened participants: {stories['allocate']} to allocate, "
                  f"{stories['ineligible']} ineligible, {stories['unscorable']} unscorable baseline, "
                  f"{stories['withdrawn']} withdrawn before allocation; DETs not answered 200: "
                  f"{e.dets_failed}")


def verdict(console: Console, v: Verdict) -> None:
    for line in v.passed:
        console.print(f"  [green]✓[/green] {line}")
    for line in v.failed:
        console.print(f"  [red]✗ {line}[/red]")
    console.print("[bold green]demo passed[/bold green]" if v.ok else "[bold red]demo FAILED[/bold red]")


def where_next(console: Console, stack: LocalStack) -> None:
    console.print("\nWhere to look next (run [bold]tailor up[/bold] to keep the stack running):")
    for child in stack.children:
        if child.url:
            console.print(f"  {child.name:<16} {child.url}")
    console.print(f"  logs             {stack.home / 'logs'}")


def console_access(console: Console, stack: LocalStack, keys: dict[str, str], home: Path) -> None:
    """The web console's address and a sign-in key per role (valid for a day; they live in
    this demo's gateway database, so `tailor up --home` on the same folder accepts them)."""
    console.print(f"\nWeb console: [bold]{stack.url_of('gateway')}/console/[/bold] "
                  f"(keep it running with [bold]tailor up --home {home}[/bold])")
    table = Table(title="Sign-in keys for the console, one per role (shown once)")
    table.add_column("role")
    table.add_column("API key")
    for role, key in sorted(keys.items()):
        table.add_row(role, key)
    console.print(table)




def safety(console: Console, blinded: dict, unblinded: dict, obligations: list, pi_mail: int) -> None:
    table = Table(title="Safety, blinded (safety officer): SAEs by module")
    for col in ("module", "participants", "AEs", "SAEs"):
        table.add_column(col)
    for module, group in blinded["by_module"].items():
        table.add_row(module, str(group["participants"]), str(group["counts"]["events"]),
                      str(group["counts"]["serious"]))
    console.print(table)
    by_arm = Table(title="[bold red]UNBLINDED[/bold red] safety (DSMB only): SAEs by arm")
    for col in ("arm", "participants", "AEs", "SAEs"):
        by_arm.add_column(col)
    for arm, group in unblinded["by_arm"].items():
        by_arm.add_row(arm, str(group["participants"]), str(group["counts"]["events"]),
                       str(group["counts"]["serious"]))
    console.print(by_arm)
    for o in obligations:
        console.print(f"  obligation {o.get('rule_key', o.get('rule'))}: {o['status']}, deadline "
                      f"{o.get('deadline_at', o.get('deadline'))}")
    console.print(f"  investigator and sponsor notified by e-mail: {pi_mail} message(s) at the SMTP sink")


def reminders(console: Console, rows: list[tuple[str, int, int]]) -> None:
    table = Table(title="Week-4 reminders (clock moved forward; e-mails at the SMTP sink)")
    for col in ("participants", "completed week 4 before the 2nd reminder", "reminder e-mails"):
        table.add_column(col)
    for label, n, mails in rows:
        table.add_row(label, str(n), str(mails))
    console.print(table)


def diary(console: Console, participants: int, steps: int, sent: int, answered: int,
          seconds: float) -> None:
    console.print(f"diary module: {participants} participants' first diary morning "
                  f"(to 10:00, {steps} half-hour steps of the clock, {seconds:.0f}s): {sent} prompts "
                  f"by SMS, each with the participant's REDCap survey link of that prompt; "
                  f"{answered} answered on the survey page, the rest left to expire")


def acceptability(console: Console, body: dict, sent: int, answered: int) -> None:
    """The acceptability summary's diary line (pooled: what blinded readers see)."""
    diary = body["pooled"]["diary"]
    rate = body["diary_adherence"]
    shown = "null" if rate is None else f"{rate:.3f}"
    console.print(f"Acceptability: diary adherence {shown} = {diary['answered_in_time']} prompts "
                  f"answered in time / {diary['prompts_sent']} sent (to {diary['participants']} "
                  f"diary participants; the demo's own count: {answered}/{sent})")
    for week in diary["weeks"]:
        console.print(f"  {week['week']}: {week['answered_in_time']}/{week['prompts_sent']}")
