"""`tailor demo --protocol <name>`: a seed trial without a prediction step, end to end.

Starts the stack for that protocol (every service but allocation, which only a personalized
design has), generates and seals its list (a minimization list holds only its sealed seed),
enters a synthetic cohort form by form in the REDCap emulator (real Data Entry Triggers),
waits for every allocation to be written back to REDCap, then checks that exactly the
eligible, non-withdrawn participants were allocated, once, as the randomization service
says, and the design's own property: block balance per stratum, or minimization's
imbalance against simple randomization on the same cohort (both printed), and how often
an observer knowing every past assignment guesses the next, against theory (printed); under
group randomization the groups form and the coordinator closes each
(tailor_cli/demo/group_demo.py), and the checks are every member sharing their group's arm
and the groups' block balance.
A multi-stage design (SMART) then plays its stage visit (tailor_cli/demo/stages.py).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from services.core.protocol import TrialProtocol, load_protocol
from sim.group_cohort import make_group_cohort
from sim.seed_cohort import make_seed_cohort
from sim.smart_cohort import StageVisit, make_smart_cohort

from .. import registry
from ..stack import LocalStack
from . import design_checks, group_demo
from .checks import Verdict, check_allocations
from .client import Gateway, issue_keys
from .pilot import allocations_in_redcap, enter_cohort
from .stages import run_stage

ROLES = ["statistician", "study_manager", "monitor", "coordinator"]
API = "/api/v1/randomization/v1"


def protocol_file(name: str) -> Path:
    return Path("protocols") / f"{name}.yaml"


def services_for(protocol: TrialProtocol) -> list[str]:
    """The allocation service runs only for a protocol with a prediction step, the reports
    service only for one with a reports section."""
    needs = {"allocation": protocol.allocation is not None, "reports": protocol.reports is not None}
    return [s for s in registry.existing() if needs.get(s, True)]


DEFAULT_PARTICIPANTS = 120  # for a protocol that declares no sample_size


def run_design_demo(name: str, home: Path, console: Console, *,
                    participants: int | None = None) -> int:
    """`participants` randomized (default: the protocol's `trial.sample_size`); one more
    withdraws before randomization and a few are ineligible."""
    shutil.rmtree(home, ignore_errors=True)
    path = protocol_file(name)
    protocol = load_protocol(path)
    if protocol.randomization.personalized:
        console.print(f"{name} personalizes: run `tailor demo` (the PerPAIN demo) instead")
        return 2
    stack = LocalStack(home=home, services=services_for(protocol), protocol_file=path)
    try:
        with console.status(f"starting the stack for {protocol.trial.id}…"):
            stack.start()
        gw = Gateway(stack.url_of("gateway"),
                     issue_keys(f"sqlite:///{stack.home / 'gateway.db'}", ROLES))
        n = participants or protocol.trial.sample_size or DEFAULT_PARTICIPANTS
        # A group takes one slot: room for as many groups as the cohort can form.
        body = ({"slots_per_stratum": n // group_demo.MIN_GROUP + 1}
                if protocol.randomization.method == "group" else {})
        created = gw.call("statistician", "POST", f"{API}/lists", json=body)
        sealed = gw.call("statistician", "POST", f"{API}/lists/{created['id']}/seal")
        console.print(f"{protocol.randomization.method} list {created['id']} sealed; "
                      f"commitment sha256 {sealed['digest'][:16]}…")
        visits: list[StageVisit] = []
        r, f = protocol.redcap, protocol.redcap.fields
        event = r.unique_event_name(r.baseline_event)
        alloc_fields = (f.allocation_number, f.allocation_module, f.allocation_time)
        grouped = None
        if protocol.randomization.method == "group":
            # The seed: about 15% of those consenting never complete the baseline.
            grouped = make_group_cohort(protocol, eligible=n, withdrawn=max(1, n * 15 // 100))
            cohort = grouped.people
            with console.status(f"{len(grouped.groups)} groups form; the coordinator closes "
                                f"each once its members completed the baseline…"):
                group_demo.form_and_close_groups(gw, stack.redcap, event, grouped)
        else:
            if protocol.randomization.stages:
                cohort, visits = make_smart_cohort(protocol, eligible=n)
            else:
                cohort = make_seed_cohort(protocol, eligible=n + 1, withdrawn=1)
            with console.status(f"site staff enter {len(cohort)} screened people in REDCap…"):
                enter_cohort(stack.redcap["url"], stack.redcap["project_id"], event, cohort)
        expected = [p for p in cohort if p.expects_allocation]
        deadline = time.monotonic() + max(180, len(expected))  # a full-size cohort: longer
        in_redcap: dict[str, dict[str, str]] = {}
        with console.status("waiting for the allocations in REDCap…"):
            while time.monotonic() < deadline and len(in_redcap) < len(expected):
                time.sleep(1.0)
                in_redcap = allocations_in_redcap(stack.redcap["api_url"], stack.redcap["token"],
                                                  alloc_fields, event)
        time.sleep(1.0)  # anything late (a duplicate) would show up now
        in_redcap = allocations_in_redcap(stack.redcap["api_url"], stack.redcap["token"],
                                          alloc_fields, event)
        unblinded = gw.call("study_manager", "GET", f"{API}/allocations/unblinded")
        verdict = Verdict()
        check_allocations(verdict, cohort, in_redcap, unblinded, alloc_fields[:2])
        arm_by_record = {a["record"]: a["arm"] for a in unblinded}
        fields_by_record = {p.record: dict(p.forms)["screening"] for p in cohort}
        if grouped is not None:
            group_demo.check_groups(console, verdict, protocol, gw, grouped, unblinded)
            with console.status("the retained answer their follow-ups…"):
                group_demo.enter_followups(stack.redcap, protocol, grouped)
            group_demo.print_retention(console, protocol, grouped, unblinded)
        else:
            _check_design(console, verdict, protocol, gw, fields_by_record, arm_by_record)
            order = sorted(arm_by_record, key=lambda rec: in_redcap[rec][f.allocation_number])
            guessed = design_checks.guessability(protocol, fields_by_record, arm_by_record, order)
            console.print(guessed.line())
            design_checks.check_guessability(verdict, guessed)
        if visits:
            run_stage(console, verdict, protocol, stack, gw, visits, arm_by_record)
        for line in verdict.passed:
            console.print(f"[green]✓[/green] {line}")
        for line in verdict.failed:
            console.print(f"[red]✗[/red] {line}")
        console.print(f"{protocol.trial.id}: {len(in_redcap)} of {len(expected)} eligible "
                      f"participants allocated through REDCap; "
                      f"{'all checks passed' if verdict.ok else 'CHECKS FAILED'}")
        return 0 if verdict.ok else 1
    finally:
        stack.stop()


def _check_design(console: Console, verdict: Verdict, protocol: TrialProtocol, gw: Gateway,
                  fields_by_record: dict[str, dict[str, str]],
                  arm_by_record: dict[str, str]) -> None:
    method = protocol.randomization.method
    if method == "minimization":
        figures = design_checks.minimization_figures(protocol, fields_by_record, arm_by_record)
        table = Table(title="arms per factor level (minimization)")
        table.add_column("factor")
        table.add_column("level")
        for a in protocol.arms:
            table.add_column(a.key, justify="right")
        for (factor, level), counts in sorted(design_checks.arms_by_level(
                protocol, fields_by_record, arm_by_record).items()):
            table.add_row(factor, level, *(str(counts[a.key]) for a in protocol.arms))
        console.print(table)
        console.print(f"largest marginal imbalance: minimization {figures.minimized:g}, simple "
                      f"randomization {figures.simple_mean:.2f} (mean of {figures.simple_runs} "
                      f"draws on the same {figures.participants} participants)")
        design_checks.check_minimization(verdict, figures)
    else:
        balance = gw.call("study_manager", "GET", f"{API}/reports/balance")
        rows = design_checks.block_balance(protocol, balance["by_stratum"])
        table = Table(title="arms per stratum (permuted blocks)")
        table.add_column("stratum")
        for a in protocol.arms:
            table.add_column(a.key, justify="right")
        for b in rows:
            table.add_row(b.stratum, *(str(b.by_arm[a.key]) for a in protocol.arms))
        console.print(table)
        design_checks.check_blocks(verdict, rows)
