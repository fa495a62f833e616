"""The fault-window phase of bench/e2e.py: REDCap's API fails for a while (emulator fault
injection) as participants keep completing their baselines and re-saving them; then the
time from the end of the faults to a quiet gateway (no pending trigger, no pending
write-back), and whether every participant was written back exactly once."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
from sqlmodel import Session, func, select

from gateway.redcap.models import RedcapTrigger, RedcapWrite
from services.core.audit import AuditEntry
from services.core.db import make_engine


class Drive(Protocol):
    def __call__(self, batch: list, rate: float) -> float: ...  # type: ignore[type-arg]


@dataclass
class Recovery:
    fault_seconds: float
    participants: int
    triggers_drained_after: float  # seconds from the end of the faults to no pending trigger
    quiet_after: float  # … to no pending trigger or write-back and every participant written
    most_pending: int
    triggers_per_form: float
    lost: int
    doubled: int


def _counts(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        triggers = session.exec(select(func.count()).select_from(RedcapTrigger)
                                .where(RedcapTrigger.status == "pending")).one()
        writes = session.exec(select(func.count()).select_from(RedcapWrite)
                              .where(RedcapWrite.status == "pending")).one()
    return triggers, writes


def measure(home: Path, redcap_url: str, drive: Drive, batch: list, rate: float,  # type: ignore[type-arg]
            fault_seconds: float, wait: float = 300) -> Recovery:
    engine = make_engine(f"sqlite:///{home / 'gateway.db'}")
    records = {p.record for p in batch}
    most_pending = 0
    try:
        httpx.put(f"{redcap_url}/emulator/faults", timeout=30, json={
            "mode": "error", "status": 503, "seconds": 0, "remaining": None, "contents": []},
                  ).raise_for_status()
        started = time.monotonic()
        drive(batch, rate)  # each save fires its DET; the API behind it fails
        drive(batch, 4 * rate)  # the same forms saved again, faster
        while time.monotonic() - started < fault_seconds:
            most_pending = max(most_pending, _counts(engine)[0])
            time.sleep(0.5)
        httpx.delete(f"{redcap_url}/emulator/faults", timeout=30).raise_for_status()
        stopped = time.monotonic()
        written: Counter[str] = Counter()
        drained = None
        while time.monotonic() - stopped < wait:
            triggers, writes = _counts(engine)
            most_pending = max(most_pending, triggers)
            if triggers == 0 and drained is None:
                drained = time.monotonic() - stopped
            with Session(engine) as session:
                written = Counter(e.record or "" for e in session.exec(
                    select(AuditEntry).where(AuditEntry.action == "redcap.written"))
                    if e.record in records)
            if triggers == 0 and writes == 0 and set(written) == records:
                break
            time.sleep(0.1)
        quiet_after = time.monotonic() - stopped
        with Session(engine) as session:
            rows = [(t.record, t.event, t.instrument, t.repeat_instance) for t in session.exec(
                select(RedcapTrigger).where(RedcapTrigger.record.in_(records)))]  # type: ignore[attr-defined]
        per_form = len(rows) / max(1, len(set(rows)))
        return Recovery(fault_seconds, len(batch), drained or quiet_after, quiet_after,
                        most_pending, per_form, lost=len(records - set(written)),
                        doubled=sum(1 for n in written.values() if n > 1))
    finally:
        engine.dispose()
