"""The group-randomized seed trial's demo steps (iact-mmrp): groups form, the coordinator
closes each one through the gateway, a latecomer waits for review, the retained answer
their follow-ups; then the checks: every member holds their group's arm, the groups are
balanced per stratum as blocks of groups allow, and the latecomer was not allocated.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from functools import partial

import httpx
from rich.console import Console
from rich.table import Table

from services.core.protocol import TrialProtocol
from sim.group_cohort import MIN_SIZE, GroupCohort

from . import design_checks
from .checks import Verdict
from .client import Gateway
from .pilot import enter_cohort

API = "/api/v1/randomization/v1"
MIN_GROUP = MIN_SIZE  # the synthetic cohort's smallest group


def _until(what: str, done: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _statuses(gw: Gateway, group: str) -> dict[str, str]:
    try:
        view = gw.call("coordinator", "GET", f"{API}/groups/{group}")
    except RuntimeError:  # 404 until its first member completed the baseline
        return {}
    return {m["record"]: m["status"] for m in view["members"]}


def _joined(gw: Gateway, group: str, members: list[str]) -> bool:
    return set(_statuses(gw, group)) >= set(members)


def _held(gw: Gateway, group: str, record: str) -> bool:
    return _statuses(gw, group).get(record) == "review"


def form_and_close_groups(gw: Gateway, redcap: dict[str, str], event: str,
                          cohort: GroupCohort) -> None:
    """Everyone who never joins first, then group by group: the members complete their
    baseline, the coordinator closes the group once all have joined; after the first close
    the latecomer completes theirs."""
    by_record = {p.record: p for p in cohort.people}
    grouped = {r for members in cohort.groups.values() for r in members} | set(cohort.late)
    enter_cohort(redcap["url"], redcap["project_id"], event,
                 [p for p in cohort.people if p.record not in grouped], duplicates=0)
    for n, (group, members) in enumerate(cohort.groups.items()):
        enter_cohort(redcap["url"], redcap["project_id"], event,
                     [by_record[r] for r in members], duplicates=1 if n == 0 else 0)
        _until(f"the members of {group}", partial(_joined, gw, group, members))
        gw.call("coordinator", "POST", f"{API}/groups/{group}/close",
                json={"reason": "the group starts on Monday"})
        if n == 0:
            enter_cohort(redcap["url"], redcap["project_id"], event,
                         [by_record[r] for r in cohort.late], duplicates=0)
            for record, late_group in cohort.late.items():
                _until(f"{record} held for review", partial(_held, gw, late_group, record))


def enter_followups(redcap: dict[str, str], protocol: TrialProtocol,
                    cohort: GroupCohort) -> Counter[str]:
    """The follow-up form of each timepoint each retained participant reaches."""
    entered: Counter[str] = Counter()
    events = {t.key: protocol.redcap.unique_event_name(t.redcap_event)
              for t in protocol.timepoints}
    with httpx.Client(base_url=f"{redcap['url']}/emulator/projects/{redcap['project_id']}",
                      timeout=30) as web:
        for record, reached in cohort.followups.items():
            for timepoint in reached:
                values = {f"pegf_{k}": str((len(record) + len(timepoint)) % 8 + 2)
                          for k in ("pain", "enjoyment", "activity")}
                web.post("/forms/peg_followup", json={
                    "values": values, "record": record, "event": events[timepoint],
                    "username": "site_staff"}).raise_for_status()
                entered[timepoint] += 1
    return entered


def check_groups(console: Console, verdict: Verdict, protocol: TrialProtocol, gw: Gateway,
                 cohort: GroupCohort, unblinded: list[dict]) -> None:
    groups = {g["group"]: g for g in gw.call("study_manager", "GET", f"{API}/groups")}
    arm_of = {a["record"]: a["arm"] for a in unblinded}
    verdict.check(set(groups) == set(cohort.groups) and all(
        g["status"] == "closed" for g in groups.values()),
        f"all {len(cohort.groups)} groups were closed, each randomized once")
    split = [g for g, members in cohort.groups.items()
             if {arm_of.get(r) for r in members} != {groups[g]["arm"]}]
    verdict.check(not split, f"every member of every group holds the group's arm "
                             f"({len(split)} groups split)")
    for record, group in cohort.late.items():
        held = {m["record"]: m for m in groups[group]["members"]}.get(record, {})
        verdict.check(record not in arm_of and held.get("status") == "review",
                      f"{record}, who completed the baseline after {group} was closed, is held "
                      "for the study manager's review and not allocated")
    strata = sorted({g["stratum"] for g in groups.values()})
    rows = design_checks.block_balance(protocol, [
        {"stratum": s, "by_arm": Counter(g["arm"] for g in groups.values() if g["stratum"] == s)}
        for s in strata])
    table = Table(title="groups per arm per stratum (permuted blocks of groups)")
    table.add_column("stratum")
    for a in protocol.arms:
        table.add_column(a.key, justify="right")
    table.add_column("members", justify="right")
    for b in rows:
        members = sum(len(cohort.groups[g]) for g, v in groups.items() if v["stratum"] == b.stratum)
        table.add_row(b.stratum, *(str(b.by_arm[a.key]) for a in protocol.arms), str(members))
    console.print(table)
    design_checks.check_blocks(verdict, rows)


def print_retention(console: Console, protocol: TrialProtocol, cohort: GroupCohort,
                    unblinded: list[dict]) -> None:
    arm_of = {a["record"]: a["arm"] for a in unblinded}
    table = Table(title="follow-up answered (synthetic attrition after the seed)")
    table.add_column("timepoint")
    for a in protocol.arms:
        table.add_column(a.key, justify="right")
    allocated = Counter(arm_of[r] for r in cohort.followups if r in arm_of)
    table.add_row("allocated", *(str(allocated[a.key]) for a in protocol.arms))
    for t in protocol.timepoints:
        if t.anchor != "allocation":
            continue
        n = Counter(arm_of[r] for r, reached in cohort.followups.items()
                    if t.key in reached and r in arm_of)
        table.add_row(t.key, *(str(n[a.key]) for a in protocol.arms))
    console.print(table)
