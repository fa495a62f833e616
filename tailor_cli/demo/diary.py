"""The diary module in the demo: its participants' first diary morning (08:00 to 10:00 in
their time zone), walked through in steps of the simulated clock.

Each prompt reaches the participant as an SMS (the SMS provider simulator) carrying their
own REDCap survey link for that prompt; about three in four prompts are answered on that
survey page, as a participant would, the rest are left to expire. Steps are short (30
minutes against prompts that stay open for an hour), so every answer is in time, and the
clock moves on only once the answers are counted. What the participants received and
answered is the demo's own count, which the reports service's adherence must equal.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock_time
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from redcap import Project

from services.core.protocol import TrialProtocol
from sim.cohort import Participant

from .client import Gateway

# The waking window opens at 08:00: the first step at 08:30 finds the prompts of the
# first half hour, each with at least half an hour left of its hour.
START, END, STEP = clock_time(8, 30), clock_time(10, 0), timedelta(minutes=30)
ANSWER_SHARE = 0.75
SEED = 22792
ACCEPTABILITY = "/api/v1/reports/v1/acceptability"
QUEUED = ("scheduled", "claimed")


@dataclass
class DiaryRun:
    """The participants' side: every SMS that was a diary prompt (id → survey link), the
    other SMS they got, and the prompts they answered."""

    mobiles: dict[str, str]  # mobile number → record (the diary module's participants)
    received: dict[str, str] = field(default_factory=dict)
    others: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    steps: int = 0

    @property
    def sent(self) -> int:
        return len(self.received)


@dataclass(frozen=True)
class Outside:
    """Where the participants' messages and surveys are: the SMS provider and REDCap."""

    sms_url: str
    redcap_url: str
    diary_title: str  # the diary survey page's title, as REDCap shows it


def outside(stack_redcap: dict[str, str], sms_url: str, protocol: TrialProtocol) -> Outside:
    answers = protocol.diary_answers
    if answers is None:
        raise ValueError("the protocol records no diary answers in REDCap (diary.answer_form)")
    instruments = Project(stack_redcap["api_url"], stack_redcap["token"]).export_instruments()
    title = next(i["instrument_label"] for i in instruments if i["instrument_name"] == answers[0])
    return Outside(sms_url, stack_redcap["url"].rstrip("/"), title)


def diary_participants(protocol: TrialProtocol, participants: list[Participant],
                       modules: dict[str, str]) -> dict[str, str]:
    """Mobile → record of the participants REDCap shows in the diary module."""
    module = protocol.diary_policy.module
    return {dict(p.forms)["consent"]["cons_mobile"]: p.record for p in participants
            if modules.get(p.record) == module}


def move_clock_to(path: Path, when: datetime) -> None:
    """The services' simulated clock (an offset from now, in seconds) set to `when`."""
    path.write_text(str((when - datetime.now(when.tzinfo)).total_seconds()))


def scan(run: DiaryRun, out: Outside) -> list[str]:
    """Sort the SMS the diary participants got since the last scan: a prompt is one whose
    link opens the diary survey (the participant looks at it). The new prompts' ids."""
    prefix = f"{out.redcap_url}/surveys/?s="
    new = []
    messages = httpx.get(f"{out.sms_url}/v1/messages", timeout=30).json()
    for m in messages:
        if m["to"] not in run.mobiles or m["id"] in run.received or m["id"] in run.others:
            continue
        link = next((w for w in m["text"].split() if w.startswith(prefix)), None)
        page = httpx.get(link, timeout=30).text if link else ""
        if link and f"<title>{escape(out.diary_title)}</title>" in page:
            run.received[m["id"]] = link
            new.append(m["id"])
        else:
            run.others.add(m["id"])
    return new


def answer(link: str, rng: random.Random) -> None:
    """The participant submits the diary page of the prompt's link."""
    pleasant = rng.random() < 0.5
    values = {"diary_pain_free": str(int(rng.random() < 0.4)),
              "diary_mood": str(rng.randint(2, 6)), "diary_activity": str(rng.randint(1, 7)),
              "diary_pleasant": str(int(pleasant))}
    if pleasant:
        values["diary_pleasant_what"] = "a walk in the sun"
    httpx.post(link, data=values, timeout=30).raise_for_status()


def counted(gw: Gateway) -> tuple[int, int, dict]:
    """(prompts sent, answered in time, the whole answer) as the monitor reads them."""
    body = gw.call("monitor", "GET", ACCEPTABILITY)
    diary = body["pooled"]["diary"]
    return diary["prompts_sent"], diary["answered_in_time"], body


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def settled(gw: Gateway, records: list[str], until: datetime) -> bool:
    """Every diary prompt due by `until` has been sent, or dropped, by notifications."""
    def done(record: str) -> bool:
        messages = gw.call("coordinator", "GET", "/api/v1/notifications/v1/messages",
                           params={"record": record})
        return not any(m["kind"] == "diary_prompt" and m["state"] in QUEUED
                       and datetime.fromisoformat(m["due_at"]) <= until for m in messages)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return all(pool.map(done, records))


def diary_morning(gw: Gateway, protocol: TrialProtocol, run: DiaryRun, out: Outside,
                  clock: Path, *, on_step: Callable[[DiaryRun], None] | None = None) -> DiaryRun:
    """Walk the diary's first morning: move the clock, wait for the due prompts to go
    out, answer a share of them, wait until the answers are counted, move on."""
    zone = ZoneInfo(protocol.reminders.default_timezone)
    day = datetime.now(zone).date() + timedelta(days=1)  # the diary starts after allocation
    at, end = datetime.combine(day, START, zone), datetime.combine(day, END, zone)
    records = sorted(set(run.mobiles.values()))
    rng = random.Random(SEED)
    while at <= end:
        move_clock_to(clock, at)
        wait_until(lambda: settled(gw, records, at), timeout=120)  # noqa: B023 (called now)
        for sms in scan(run, out):
            if rng.random() < ANSWER_SHARE:
                answer(run.received[sms], rng)
                run.answered.add(sms)
        # The next step must not find an answer still on its way (it would be late).
        wait_until(lambda: counted(gw)[1] >= len(run.answered), timeout=120)
        run.steps += 1
        if on_step:
            on_step(run)
        at += STEP
    return run


def adherence_settled(gw: Gateway, run: DiaryRun, out: Outside, timeout: float = 120) -> dict:
    """The acceptability answer once the reports service has counted exactly the prompts
    the participants received and answered (prompts may still go out: asked again)."""
    body: dict = {}

    def agrees() -> bool:
        nonlocal body
        scan(run, out)
        sent, answered, body = counted(gw)
        return (sent, answered) == (run.sent, len(run.answered))

    wait_until(agrees, timeout=timeout, interval=1.0)
    return body
