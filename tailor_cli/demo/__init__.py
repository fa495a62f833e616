"""`make demo`: a simulated PerPAIN pilot, end to end, on the local stack.

Starts nats-server, the REDCap emulator (the trial's project from its data dictionary), the
SMTP sink, the SMS provider and every service; generates and seals the randomization lists;
site staff enter a synthetic cohort form by form in REDCap (real Data Entry Triggers), with
duplicate saves, one unscorable baseline and one withdrawal, and at week 4 who started the
allocated module; then it checks that every
eligible participant has exactly one allocation in REDCap matching the randomization
service, prints the blinded and unblinded summaries, DET → write-back latency and the
verified audit chains, and exits 0 only if every check holds.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.core.protocol import TrialProtocol, load_protocol
from sim.cohort import Participant, make_cohort

from .. import registry
from ..stack import LocalStack
from . import diary, feasibility, followup, report
from .checks import Verdict, check_allocations, check_design
from .client import Gateway, issue_keys
from .pilot import allocations_in_redcap, enter_cohort

# Every role a person may hold: the demo uses some, and prints all for the web console.
ROLES = ["statistician", "study_manager", "monitor", "dsmb", "safety_officer", "coordinator",
         "assessor", "ops", "admin"]
PROTOCOL = Path("protocols/perpain-pilot.yaml")


def run_demo(home: Path, console: Console, *, keep_running: bool = False) -> int:
    shutil.rmtree(home, ignore_errors=True)
    protocol = load_protocol(PROTOCOL)
    clock = home.resolve() / "notifications-clock"
    stack = LocalStack(home=home, services=registry.existing(), protocol_file=PROTOCOL,
                       extra_env={"TAILOR_NOTIFICATIONS_SIMULATED_CLOCK_FILE": str(clock),
                                  "TAILOR_REPORTS_SIMULATED_CLOCK_FILE": str(clock),
                                  "TAILOR_NOTIFICATIONS_DISPATCH_POLL_SECONDS": "0.5"})
    started = time.monotonic()
    try:
        with console.status("starting nats-server, REDCap emulator, SMTP sink and the services…"):
            stack.start()
        console.print(f"stack ready in {time.monotonic() - started:.1f}s")
        gw = Gateway(stack.url_of("gateway"),
                     issue_keys(f"sqlite:///{stack.home / 'gateway.db'}", ROLES))
        commitment = _prepare_lists(gw, console)
        cohort = make_cohort(protocol)
        expected = [p for p in cohort if p.expects_allocation]
        r, f = protocol.redcap, protocol.redcap.fields
        event = r.unique_event_name(r.baseline_event)
        alloc_fields = (f.allocation_number, f.allocation_module, f.allocation_time)
        with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            entered = progress.add_task("baseline entered in REDCap", total=len(cohort))
            allocated = progress.add_task("allocated, back in REDCap", total=len(expected))
            entry = enter_cohort(stack.redcap["url"], stack.redcap["project_id"], event, cohort,
                                 on_participant=lambda _p: progress.advance(entered))
            deadline = time.monotonic() + 90
            in_redcap: dict[str, dict[str, str]] = {}
            while time.monotonic() < deadline:
                in_redcap = allocations_in_redcap(stack.redcap["api_url"], stack.redcap["token"],
                                                  alloc_fields, event)
                progress.update(allocated, completed=len(in_redcap))
                if len(in_redcap) >= len(expected):
                    break
                time.sleep(0.5)
        time.sleep(1.0)  # anything late (a duplicate) would show up now
        in_redcap = allocations_in_redcap(stack.redcap["api_url"], stack.redcap["token"],
                                          alloc_fields, event)
        unblinded = gw.call("study_manager", "GET", "/api/v1/randomization/v1/allocations/unblinded")
        verdict = Verdict()
        check_allocations(verdict, cohort, in_redcap, unblinded, alloc_fields[:2])
        check_design(verdict, protocol, unblinded)
        report.summaries(console, protocol, in_redcap, unblinded, alloc_fields[1])
        report.latency(console, stack, expected)
        diary_run = _diary(console, stack, gw, protocol, expected,
                           {r: row[alloc_fields[1]] for r, row in in_redcap.items()})
        _safety(console, stack, gw, expected, verdict)
        _reminders(console, stack, expected, verdict)
        followup.record_module_starts(stack.redcap["url"], stack.redcap["project_id"], protocol,
                                      expected, r.unique_event_name("week_4"))
        report.audit_chains(console, stack, registry.existing(), verdict)
        report.entry(console, entry, cohort, commitment)
        report.where_next(console, stack)
        show_feasibility = feasibility.report(gw, cohort, len(unblinded), stack.home, verdict,
                                              diary_run)
        report.console_access(console, stack, gw.keys, home)
        report.verdict(console, verdict)
        show_feasibility(console)
        return 0 if verdict.ok else 1
    finally:
        if keep_running:
            console.print("stack left running; Ctrl-C stops it")
        stack.stop()


def _diary(console: Console, stack: LocalStack, gw: Gateway, protocol: TrialProtocol,
           expected: list[Participant], modules: dict[str, str]
           ) -> tuple[diary.DiaryRun, diary.Outside] | None:
    """The diary module's first morning (before the reminders move the clock by weeks)."""
    if protocol.diary_answers is None:
        return None
    out = diary.outside(stack.redcap, stack.url_of("sms-provider"), protocol)
    run = diary.DiaryRun(diary.diary_participants(protocol, expected, modules))
    clock = Path(stack.env["TAILOR_NOTIFICATIONS_SIMULATED_CLOCK_FILE"])
    started = time.monotonic()
    with console.status("the diary module's first morning: prompts by SMS, answers in REDCap…"):
        diary.diary_morning(gw, protocol, run, out, clock)
    report.diary(console, len(set(run.mobiles.values())), run.steps, run.sent, len(run.answered),
                 time.monotonic() - started)
    return run, out


def _prepare_lists(gw: Gateway, console: Console) -> dict:
    created = gw.call("statistician", "POST", "/api/v1/randomization/v1/lists", json={})
    commitment = gw.call("statistician", "POST", f"/api/v1/randomization/v1/lists/{created['id']}/seal")
    console.print(f"randomization list {created['id']} generated and sealed; commitment "
                  f"sha256 {commitment['digest'][:16]}… (in the audit chain, downloadable)")
    return commitment


def _safety(console: Console, stack: LocalStack, gw: Gateway, expected: list, verdict: Verdict) -> None:
    record = expected[0].record
    protocol = load_protocol(PROTOCOL)
    event = protocol.redcap.unique_event_name("week_4")
    followup.report_sae(stack.redcap["url"], stack.redcap["project_id"], record, event,
                        protocol.safety.redcap_form.site_timezone)
    obligations = followup.wait_for(lambda: gw.call("safety_officer", "GET",
                                                    "/api/v1/safety/v1/obligations"))
    pi = next(c.email for c in protocol.safety.contacts
              if c.role == "principal_investigator")
    mail = followup.wait_for(lambda: followup.recipients(stack.home / "mail")[pi])
    blinded, unblinded, obligations = followup.safety_reports(gw)
    verdict.check(bool(obligations), "the SAE entered in REDCap opened its reporting obligations")
    verdict.check(bool(mail), "the investigator was notified through the SMTP server")
    verdict.check(blinded["overall"]["counts"]["serious"] == 1, "the SAE shows in the blinded report")
    verdict.check(sum(g["counts"]["serious"] for g in unblinded["by_arm"].values()) == 1,
                  "the DSMB report splits it by arm")
    report.safety(console, blinded, unblinded, obligations, mail)


# Each reminder asks REDCap (through the gateway) for its survey link as it goes out, so a
# round of a hundred takes a while on a loaded machine; the wait ends as soon as it is done.
REMINDER_ROUND_SECONDS = 300


def _reminders(console: Console, stack: LocalStack, expected: list, verdict: Verdict) -> None:
    """Week 4 is due 28 days after allocation; the first e-mail reminder 3 days later, the
    second 7 days later. Half the participants answer in between: the questionnaire through
    the REDCap survey link in their reminder, the PGIC entered by staff."""
    clock = Path(stack.env["TAILOR_NOTIFICATIONS_SIMULATED_CLOCK_FILE"])
    address = {p.record: dict(p.forms)["consent"]["cons_email"] for p in expected}
    week4 = load_protocol(PROTOCOL).redcap.unique_event_name("week_4")
    before = followup.recipients(stack.home / "mail")

    def to_participants() -> int:  # the trial team's follow-up e-mails do not count
        sent = followup.recipients(stack.home / "mail") - before
        return sum(sent[a] for a in address.values())

    followup.move_clock(clock, 33)
    followup.wait_for(lambda: to_participants() >= len(expected), timeout=REMINDER_ROUND_SECONDS)
    answered, silent = expected[: len(expected) // 2], expected[len(expected) // 2:]
    links = followup.survey_links(stack.home / "mail", stack.redcap["url"], before)
    own = [links.get(address[p.record], set()) for p in expected]
    verdict.check(all(len(mine) == 1 for mine in own) and len(set().union(*own)) == len(expected),
                  "each reminder carries the participant's own REDCap survey link")
    for p in answered:
        for link in links.get(address[p.record], set()):
            followup.answer_survey(link, {"mpidps_1_1": "3", "mpidps_1_7": "3", "mpidps_1_12": "2"})
    followup.complete_timepoint(stack.redcap["url"], stack.redcap["project_id"], answered, week4,
                                {"pgic": {"pgic_rating": "3"}})
    time.sleep(3)  # the completions travel DET → gateway → bus → notifications
    followup.move_clock(clock, 37)
    followup.wait_for(lambda: to_participants() >= len(expected) + len(silent),
                      timeout=REMINDER_ROUND_SECONDS)
    time.sleep(2)
    sent = followup.recipients(stack.home / "mail") - before
    per_answered = [sent[address[p.record]] for p in answered]
    per_silent = [sent[address[p.record]] for p in silent]
    verdict.check(all(n == 1 for n in per_answered),
                  "participants who completed week 4 got one reminder and no more")
    verdict.check(all(n == 2 for n in per_silent), "non-responders got their second reminder")
    report.reminders(console, [("answered after the 1st reminder", len(answered), sum(per_answered)),
                               ("did not answer", len(silent), sum(per_silent))])
