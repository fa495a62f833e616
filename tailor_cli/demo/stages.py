"""The stage visit of a multi-stage (SMART) seed trial's demo, once the first stage is
allocated: site staff save the stage timepoint's forms in the REDCap emulator (real Data
Entry Triggers), a blank pain item is corrected after the first round, and the demo waits
for every stage allocation written back to REDCap, then checks them (design_checks)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from redcap import Project
from rich.console import Console
from rich.table import Table

from services.core.protocol import TrialProtocol
from sim.smart_cohort import StageVisit

from ..stack import LocalStack
from . import design_checks
from .checks import Verdict
from .client import Gateway

API = "/api/v1/randomization/v1"


def _save(redcap_url: str, project_id: str, event: str, record: str,
          forms: list[tuple[str, dict[str, str]]]) -> None:
    with httpx.Client(base_url=f"{redcap_url}/emulator/projects/{project_id}", timeout=30) as web:
        for instrument, values in forms:
            web.post(f"/forms/{instrument}", json={
                "values": values, "record": record, "event": event,
                "username": "site_staff"}).raise_for_status()


def _wait(stack: LocalStack, fields: tuple[str, str], event: str, want: int,
          seconds: float = 120) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + seconds
    found: dict[str, dict[str, str]] = {}
    while time.monotonic() < deadline and len(found) < want:
        time.sleep(1.0)
        found = _in_redcap(stack, fields, event)
    return found


def _in_redcap(stack: LocalStack, fields: tuple[str, str], event: str) -> dict[str, dict[str, str]]:
    """record → the stage's fields, for every record whose stage number is filled in."""
    rows = Project(stack.redcap["api_url"], stack.redcap["token"]).export_records(
        fields=["record_id", *fields], events=[event])
    return {r["record_id"]: r for r in rows if r.get(fields[0])}


def run_stage(console: Console, verdict: Verdict, protocol: TrialProtocol, stack: LocalStack,
              gw: Gateway, visits: list[StageVisit], first_arm: dict[str, str]) -> None:
    stage = protocol.randomization.stages[0]
    event = protocol.redcap.unique_event_name(
        protocol.timepoint_by_key[stage.timepoint].redcap_event)
    fields = (stage.number_field, stage.option_field)
    url, project = stack.redcap["url"], stack.redcap["project_id"]
    entered = [v for v in visits if v.forms]
    with console.status(f"site staff enter {len(entered)} {stage.timepoint} visits in REDCap…"):
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda v: _save(url, project, event, v.record, v.forms), entered))
    first_round = [v for v in visits if v.expects_stage and v.correction is None]
    with console.status(f"waiting for the stage {stage.key} allocations in REDCap…"):
        early = _wait(stack, fields, event, len(first_round))
    corrected = [v for v in visits if v.correction is not None]
    verdict.check(not {v.record for v in corrected} & set(early),
                  f"stage {stage.key}: a blank pain value allocates nothing (it needs review; "
                  f"{len(corrected)} corrected afterwards)")
    for v in corrected:  # the blank pain item needed review; staff enter the value
        assert v.correction is not None
        _save(url, project, event, v.record, [v.correction])
    expected = [v for v in visits if v.expects_stage]
    with console.status("waiting for the corrected visits' allocations…"):
        _wait(stack, fields, event, len(expected))
    time.sleep(1.0)  # anything late (a duplicate, a wrong one) would show up now
    in_redcap = _in_redcap(stack, fields, event)
    service = gw.call("study_manager", "GET", f"{API}/stages/allocations")
    balance = gw.call("study_manager", "GET", f"{API}/stages/balance")
    table = Table(title=f"stage {stage.key}: options per stratum (outcome × first-stage arm)")
    table.add_column("stratum")
    options = list(dict.fromkeys(o.key for o in [*stage.responders, *stage.non_responders]))
    for o in options:
        table.add_column(o, justify="right")
    for row in balance:
        table.add_row(row["stratum"], *(str(row["by_option"].get(o, "–")) for o in options))
    console.print(table)
    stories = {s: sum(1 for v in visits if v.story == s) for s in dict.fromkeys(
        v.story for v in visits)}
    console.print(f"stage {stage.key} visits: {stories}")
    design_checks.check_stages(verdict, protocol, visits, in_redcap, service, first_arm)
    design_checks.check_stage_blocks(verdict, protocol, balance)
