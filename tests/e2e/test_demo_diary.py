"""The demo's diary step with the real stack as processes: the diary module's participants
get their first morning's prompts by SMS, each with their own REDCap survey link; a share
of them answer on the survey page (REDCap's Data Entry Trigger → gateway → notifications
→ bus → reports), and the reports service's adherence is exactly the demo's own count of
answered / received prompts, as the demo checks it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.core.protocol import load_protocol
from sim.cohort import make_cohort
from tailor_cli import registry
from tailor_cli.demo import diary
from tailor_cli.demo.checks import Verdict, check_diary
from tailor_cli.demo.client import Gateway, issue_keys
from tailor_cli.demo.pilot import allocations_in_redcap, enter_cohort
from tailor_cli.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
PROTOCOL = load_protocol("protocols/perpain-pilot.yaml")
EVENT = PROTOCOL.redcap.unique_event_name(PROTOCOL.redcap.baseline_event)
F = PROTOCOL.redcap.fields
ALLOC_FIELDS = (F.allocation_number, F.allocation_module, F.allocation_time)


def test_the_diary_adherence_the_demo_prints_is_answered_over_received(tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    stack = LocalStack(home=tmp_path, services=registry.existing(),
                       extra_env={"TAILOR_NOTIFICATIONS_SIMULATED_CLOCK_FILE": str(clock),
                                  "TAILOR_REPORTS_SIMULATED_CLOCK_FILE": str(clock),
                                  "TAILOR_NOTIFICATIONS_DISPATCH_POLL_SECONDS": "0.5"})
    stack.start()
    try:
        gw = Gateway(stack.url_of("gateway"), issue_keys(
            f"sqlite:///{tmp_path / 'gateway.db'}",
            ["statistician", "coordinator", "monitor", "dsmb"]))
        lst = gw.call("statistician", "POST", "/api/v1/randomization/v1/lists", json={})
        gw.call("statistician", "POST", f"/api/v1/randomization/v1/lists/{lst['id']}/seal")
        cohort = make_cohort(PROTOCOL, eligible=24, ineligible=0, unscorable=0, withdrawn=0,
                             seed=5)
        enter_cohort(stack.redcap["url"], stack.redcap["project_id"], EVENT, cohort,
                     duplicates=0)
        deadline = time.monotonic() + 180
        in_redcap: dict[str, dict[str, str]] = {}
        while len(in_redcap) < len(cohort):
            assert time.monotonic() < deadline, "the cohort was not allocated"
            time.sleep(0.5)
            in_redcap = allocations_in_redcap(stack.redcap["api_url"], stack.redcap["token"],
                                              ALLOC_FIELDS, EVENT)
        modules = {r: row[F.allocation_module] for r, row in in_redcap.items()}
        run = diary.DiaryRun(diary.diary_participants(PROTOCOL, cohort, modules))
        assert run.mobiles, "the cohort has no diary participant: choose another seed"
        out = diary.outside(stack.redcap, stack.url_of("sms-provider"), PROTOCOL)
        diary.diary_morning(gw, PROTOCOL, run, out, clock)
        body = diary.adherence_settled(gw, run, out)

        verdict = Verdict()
        check_diary(verdict, run.sent, len(run.answered), body)
        assert verdict.ok, verdict.failed
        assert body["diary_adherence"] is not None
        assert body["diary_adherence"] == len(run.answered) / run.sent
        assert 0 < len(run.answered) < run.sent  # answered and unanswered prompts both
        assert run.others == set()  # the diary participants got no other SMS
        # Blinded readers see the pooled figure; the DSMB also per arm, adding up to it.
        assert body["by_arm"] is None
        dsmb = gw.call("dsmb", "GET", diary.ACCEPTABILITY)
        per_arm = [g["diary"] for g in dsmb["by_arm"]]
        assert sum(d["prompts_sent"] for d in per_arm) == run.sent
        assert sum(d["answered_in_time"] for d in per_arm) == len(run.answered)
    finally:
        stack.stop()
