"""The demo's last word: the pilot's feasibility table, the diary adherence of the
acceptability summary and the CONSORT diagram, from the reports service (a read model of
the bus), through the gateway as people read them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from services.reports.cli import feasibility_table
from services.reports.raster import RasterError, svg_to_png
from sim.cohort import Participant

from .checks import Verdict, check_diary, check_feasibility, check_flow, expected_received
from .client import Gateway
from .diary import DiaryRun, Outside, adherence_settled
from .report import acceptability as report_diary

FLOW = "/api/v1/reports/v1/flow"


def _text(gw: Gateway, role: str, path: str, **params: str) -> str:
    response = gw.http.get(f"{gw.url}{path}", params=params,
                           headers={"Authorization": f"Bearer {gw.keys[role]}"})
    response.raise_for_status()
    return response.text


def _settled_flow(gw: Gateway, allocated: int, received: int, timeout: float = 90) -> dict:
    """The flow once the reports service has seen every allocation the randomization
    service made and every module start staff recorded (a busy service's 503 is asked
    again, not fatal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            flow = gw.call("monitor", "GET", FLOW)
        except RuntimeError:
            flow = None
        if (flow is not None and flow["randomized"] >= allocated
                and (flow["pooled"]["received_intervention"] or 0) >= received):
            return flow  # type: ignore[no-any-return]
        time.sleep(1)
    return gw.call("monitor", "GET", FLOW)  # type: ignore[no-any-return]


def report(gw: Gateway, cohort: list[Participant], allocated: int, home: Path, verdict: Verdict,
           diary_run: tuple[DiaryRun, Outside] | None = None) -> Callable[[Console], None]:
    """Check the flow against the cohort, the diary adherence against the prompts the
    participants received and answered, and write the diagrams; returns the printer of
    the tables and the files' names (the demo's last lines)."""
    blinded = _settled_flow(gw, allocated, expected_received(cohort))
    accept: dict | None = None
    if diary_run is not None:
        run, out = diary_run
        accept = adherence_settled(gw, run, out)
        check_diary(verdict, run.sent, len(run.answered), accept)
    unblinded = gw.call("dsmb", "GET", FLOW)
    check_flow(verdict, cohort, blinded, unblinded)
    rows = gw.call("monitor", "GET", "/api/v1/reports/v1/feasibility")
    check_feasibility(verdict, cohort, rows)
    diagram = home.resolve() / "consort-flow.svg"
    diagram.write_text(_text(gw, "monitor", FLOW, format="svg"), encoding="utf-8")
    per_arm = home.resolve() / "consort-flow-dsmb-UNBLINDED.svg"
    per_arm.write_text(_text(gw, "dsmb", FLOW, format="svg"), encoding="utf-8")
    verdict.check(len(rows) >= 1 and diagram.stat().st_size > 0,
                  "feasibility criteria evaluated and the CONSORT diagram written")
    try:  # a PNG for reports that cannot embed SVG; the demo does not depend on it
        picture = f"CONSORT diagram as PNG: {svg_to_png(diagram)}"
    except RasterError as exc:
        picture = f"CONSORT diagram as PNG: not written ({exc})"

    def show(console: Console) -> None:
        console.print(feasibility_table(
            rows, title=f"Feasibility of the full trial as of {blinded['as_of']} "
                        "(criterion, value, Wilson 95% CI, verdict)"))
        if accept is not None and diary_run is not None:
            report_diary(console, accept, diary_run[0].sent, len(diary_run[0].answered))
        console.print(f"CONSORT diagram (pooled, blinded): {diagram}")
        console.print(picture)
        console.print(f"CONSORT diagram per arm ([bold red]UNBLINDED[/bold red], DSMB): {per_arm}")

    return show
