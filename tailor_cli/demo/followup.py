"""After allocation: an SAE reported in REDCap, and weeks of follow-up compressed into
seconds (the notifications service's simulated clock) so reminders are seen going out."""

from __future__ import annotations

import email
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from services.core.protocol import TrialProtocol
from sim.cohort import Participant, module_started_form

from .client import Gateway

DAY = 86400


def report_sae(redcap_url: str, project_id: str, record: str, event: str, site_timezone: str) -> None:
    """A coordinator enters a serious adverse event (hospitalisation) on the AE form."""
    site = ZoneInfo(site_timezone)
    aware = (datetime.now(UTC) - timedelta(minutes=2)).astimezone(site)  # REDCap: site local time
    values = {
        "ae_onset_date": aware.date().isoformat(),
        "ae_aware_datetime": aware.strftime("%Y-%m-%d %H:%M"),
        "ae_term": "hospitalised for a fall on the stairs", "ae_severity": "3", "ae_grade": "3",
        "ae_serious": "1", "ae_sc_death": "0", "ae_sc_life_threat": "0", "ae_sc_hosp": "1",
        "ae_sc_disability": "0", "ae_sc_congenital": "0", "ae_sc_med_important": "0",
        "ae_related": "2", "ae_expected": "0", "ae_outcome": "2", "ae_action": "1",
        "ae_reporter": "site coordinator",
    }
    with httpx.Client(base_url=f"{redcap_url}/emulator/projects/{project_id}", timeout=30) as web:
        web.post("/forms/adverse_event", json={"values": values, "record": record, "event": event,
                                               "repeat_instance": "new"}).raise_for_status()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def mailbox(folder: Path) -> list[email.message.Message]:
    if not folder.exists():
        return []
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]


def recipients(folder: Path) -> Counter[str]:
    return Counter(m["To"] for m in mailbox(folder))


def survey_links(folder: Path, redcap_url: str, before: Counter[str]) -> dict[str, set[str]]:
    """Recipient -> the REDCap survey links in the e-mails they got since `before` was taken
    (the reminders' links, as REDCap made them for each participant)."""
    prefix = f"{redcap_url.rstrip('/')}/surveys/?s="
    found: dict[str, set[str]] = {}
    seen: Counter[str] = Counter()
    for message in mailbox(folder):
        to = str(message["To"])
        seen[to] += 1
        if seen[to] <= before[to]:
            continue
        for part in message.walk():
            if part.get_content_type() != "text/plain":
                continue
            payload = part.get_payload(decode=True)
            text = payload.decode(part.get_content_charset() or "utf-8") if isinstance(
                payload, bytes) else ""
            found.setdefault(to, set()).update(
                word for word in text.split() if word.startswith(prefix))
    return found


def answer_survey(link: str, values: dict[str, str]) -> None:
    """The participant opens the link from the reminder and submits the questionnaire."""
    httpx.get(link, timeout=30).raise_for_status()
    httpx.post(link, data=values, timeout=30).raise_for_status()


def move_clock(path: Path, days: float) -> None:
    path.write_text(str(days * DAY))


def complete_timepoint(redcap_url: str, project_id: str, participants: list[Participant],
                       event: str, forms: dict[str, dict[str, str]]) -> None:
    with httpx.Client(base_url=f"{redcap_url}/emulator/projects/{project_id}", timeout=30) as web:
        for p in participants:
            for instrument, values in forms.items():
                web.post(f"/forms/{instrument}", json={"values": values, "record": p.record,
                                                       "event": event}).raise_for_status()


def record_module_starts(redcap_url: str, project_id: str, protocol: TrialProtocol,
                         participants: list[Participant], event: str, workers: int = 4) -> None:
    """At the week-4 visit staff record on the withdrawal form whether each allocated
    participant has started the module (each save fires a Data Entry Trigger)."""
    def one(p: Participant) -> None:
        instrument, values = module_started_form(protocol, p)
        with httpx.Client(base_url=f"{redcap_url}/emulator/projects/{project_id}", timeout=30) as web:
            web.post(f"/forms/{instrument}", json={"values": values, "record": p.record,
                                                   "event": event}).raise_for_status()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, participants))


def safety_reports(gw: Gateway) -> tuple[dict, dict, list]:
    blinded = gw.call("safety_officer", "GET", "/api/v1/safety/v1/reports/blinded")
    unblinded = gw.call("dsmb", "GET", "/api/v1/safety/v1/reports/unblinded")
    obligations = gw.call("safety_officer", "GET", "/api/v1/safety/v1/obligations")
    return blinded, unblinded, obligations
