"""Site staff at work: the cohort entered form by form through the REDCap emulator's user
interface, so every save fires a real Data Entry Trigger."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from redcap import Project

from sim.cohort import Participant


@dataclass
class Entry:
    """What the site did, for the report: when each participant's baseline was complete."""

    baseline_done_at: dict[str, float] = field(default_factory=dict)
    saves: int = 0
    duplicate_saves: int = 0
    dets_failed: int = 0


def enter_cohort(redcap_url: str, project_id: str, event: str, cohort: list[Participant],
                 *, workers: int = 6, duplicates: int = 3, on_participant=None) -> Entry:  # type: ignore[no-untyped-def]
    entry = Entry()
    duplicate_for = {p.record for p in cohort if p.expects_allocation}
    duplicate_for = set(sorted(duplicate_for)[:duplicates])

    def one(p: Participant) -> None:
        with httpx.Client(base_url=f"{redcap_url}/emulator/projects/{project_id}", timeout=30) as web:
            for instrument, values in p.forms:
                answer = web.post(f"/forms/{instrument}", json={
                    "values": values, "record": p.record, "event": event, "username": "site_staff"})
                answer.raise_for_status()
                det = answer.json().get("det") or {}
                entry.saves += 1
                if det.get("status_code") != 200:
                    entry.dets_failed += 1
                if p.record in duplicate_for and instrument == "demographics":
                    web.post(f"/forms/{instrument}", json={"values": values, "record": p.record,
                                                           "event": event}).raise_for_status()
                    entry.duplicate_saves += 1
            entry.baseline_done_at[p.record] = time.time()
        if on_participant:
            on_participant(p)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, cohort))
    return entry


def allocations_in_redcap(api_url: str, token: str, fields: tuple[str, str, str],
                          event: str) -> dict[str, dict[str, str]]:
    """record → allocation fields, for every record whose allocation number is filled in."""
    project = Project(api_url, token)
    rows = project.export_records(fields=["record_id", *fields], events=[event])
    return {r["record_id"]: r for r in rows if r.get(fields[0])}
