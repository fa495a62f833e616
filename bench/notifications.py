"""Notifications benchmark: diary scheduling against raw random numbers; SMTP baseline.

    .venv/bin/python bench/notifications.py [--participants 10000] [--repeat 3]

Prints, each beside a baseline measured in the same run:

- time to schedule a whole 12-week diary (protocol `diary`: 10 prompts a day) for N
  participants in two zones across both DST changes, against numpy drawing the same
  number of uniform random timestamps (and sorting them per day, as prompts must be);
- the nightly batch (2 days ahead for everyone) and reminder planning for N allocations;
- the raw send rate of aiosmtplib to the local SMTP sink (`sim/smtp`), the baseline for the
  service's dispatch rate: e-mails/s through the real dispatcher (claim in the database →
  send → record, with the send-time due check and audit entries), and dispatch-lag
  p50/p99 (sent − due) with e-mails falling due at half that rate.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.core.protocol import TrialProtocol, load_protocol  # noqa: E402
from services.notifications.domain import (  # noqa: E402
    DiaryParticipant,
    diary_prompts,
    participant_zone,
    plan_reminders,
    schedule_timepoints,
)

ZONES = ("Europe/Berlin", "America/Chicago")


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Fastest of `repeat` runs, in seconds (the least disturbed by a shared machine)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cohort(n: int) -> list[DiaryParticipant]:
    start = date(2025, 1, 6)
    return [DiaryParticipant(f"rec-{i:05d}", ZONES[i % 2], start + timedelta(days=i % 300))
            for i in range(n)]


def bench_diary(protocol: TrialProtocol, n: int, repeat: int) -> None:
    diary, people = protocol.diary_policy, cohort(n)
    count = n * diary.days * diary.prompts_per_day
    full = best_of(repeat, lambda: diary_prompts(people, diary, seed=1))
    rng = np.random.default_rng(1)
    lo = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())

    def baseline() -> None:
        at = rng.integers(lo, lo + 400 * 86400, size=(n, diary.days, diary.prompts_per_day))
        at.sort(axis=-1)

    base = best_of(repeat, baseline)
    nightly = best_of(repeat, lambda: diary_prompts(people, diary, seed=1, from_day=30, days=2))
    print(f"diary: {n:,} participants × {diary.days} days × {diary.prompts_per_day}/day "
          f"= {count:,} prompts")
    print(f"  schedule whole diary        {full:8.3f} s   ({count / full / 1e6:6.1f} M prompts/s)")
    print(f"  baseline numpy uniform+sort {base:8.3f} s   ratio {full / base:5.1f}×")
    print(f"  nightly batch, 2 days ahead {nightly:8.3f} s")


def bench_reminders(protocol: TrialProtocol, n: int, repeat: int) -> None:
    policy = protocol.reminders
    zones = [participant_zone(z, policy.default_timezone) for z in ZONES]
    t0 = datetime(2025, 1, 6, 9, tzinfo=UTC)

    def plan_all() -> int:
        total = 0
        for i in range(n):
            zone = zones[i % 2]
            for s in schedule_timepoints(protocol.timepoints, t0 + timedelta(hours=i), zone):
                total += len(plan_reminders(f"rec-{i:05d}", s, policy, zone))
        return total

    took = best_of(repeat, plan_all)
    print(f"reminders: plan every timepoint of {n:,} allocations: {took:.3f} s "
          f"({took / n * 1e6:.0f} µs per participant, {plan_all():,} reminders)")


async def raw_smtp_rate(messages: int = 500) -> float:
    """E-mails per second one aiosmtplib connection delivers to the local SMTP sink."""
    import aiosmtplib

    from sim.smtp import SmtpSink

    sink = SmtpSink()
    async with sink.serving() as s:
        client = aiosmtplib.SMTP(hostname=s.host, port=s.port, start_tls=False)
        await client.connect()
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@x.example", "b@x.example", "bench"
        msg.set_content("x" * 800)
        t0 = time.perf_counter()
        for _ in range(messages):
            await client.send_message(msg)
        took = time.perf_counter() - t0
        await client.quit()
    assert len(sink.messages) == messages
    return messages / took


class _Clock:
    """Trial time that flows with real time from a chosen start."""

    def __init__(self, start: datetime) -> None:
        self.offset = start - datetime.now(UTC)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def _allocate(rt: Any, records: list[str], at: datetime, module: str = "PERT") -> None:
    from services.core.db import unit_of_work
    from services.core.events import Allocated
    from services.notifications import contacts, service
    from services.notifications.crypto import ContactDetails
    for record in records:
        with unit_of_work(rt.kernel.engine) as session:
            contacts.store(session, rt, record, ContactDetails(
                email=f"{record}@participant.example", language="de",
                timezone="Europe/Berlin"), at)
            service.schedule_participant(session, rt, allocated=Allocated(
                record=record, allocation_number=record, module=module, allocated_at=at))


def _make_due(kernel: object, records: list[str], first: datetime, gap: float) -> list[str]:
    """Move each record's first diary prompt to `first + i·gap` (open for an hour); their
    keys. Prompts, not reminders: a reminder asks the gateway for the participant's survey
    link at send time, and there is no gateway here; a prompt's link is made locally."""
    from sqlmodel import col, func, select, update

    from services.core.db import unit_of_work
    from services.notifications.models import Message

    with unit_of_work(kernel.engine) as session:  # type: ignore[attr-defined]
        keys = dict(session.exec(select(Message.record, func.min(Message.key)).where(
            col(Message.record).in_(records), Message.kind == "diary_prompt")
            .group_by(Message.record)).all())
        for i, record in enumerate(records):
            at = first + timedelta(seconds=i * gap)
            session.exec(update(Message).where(col(Message.key) == keys[record])  # type: ignore[call-overload]
                         .values(due_at=at, not_before=at, expires_at=at + timedelta(hours=1)))
    return [keys[r] for r in records]


def _lags(kernel: object, keys: list[str]) -> list[float]:
    from sqlmodel import Session, col, select

    from services.notifications.models import Message

    with Session(kernel.engine) as session:  # type: ignore[attr-defined]
        rows = session.exec(select(Message).where(col(Message.key).in_(keys))).all()
    return sorted((m.sent_at - m.due_at).total_seconds() for m in rows if m.sent_at)


async def _wait_sent(kernel: object, keys: list[str]) -> None:
    from sqlmodel import Session, col, func, select

    from services.notifications.models import Message

    def count() -> int:
        with Session(kernel.engine) as session:  # type: ignore[attr-defined]
            return session.exec(select(func.count()).select_from(Message).where(
                col(Message.key).in_(keys), Message.state == "sent")).one()

    while await asyncio.to_thread(count) < len(keys):  # noqa: ASYNC110 (polls the database)
        await asyncio.sleep(0.02)


async def dispatch_rates(protocol: TrialProtocol, n: int, m: int
                         ) -> tuple[tuple[float, float], tuple[float, float, float]]:
    """The service's dispatcher (real claim/send/record steps) against the SMTP sink."""
    import os
    import tempfile

    from services.core.bus import Bus
    from services.core.db import make_engine
    from services.core.migrations import run_migrations
    from services.core.outbox import OutboxRelay
    from services.core.runner import Kernel
    from services.core.settings import ServiceSettings, Settings
    from services.notifications.app import SPEC
    from services.notifications.bootstrap import bootstrap
    from services.notifications.dispatch.loop import Dispatcher
    from sim.smtp import SmtpSink

    sink = SmtpSink().start_in_thread()
    home = Path(tempfile.mkdtemp(prefix="tailor-bench-"))
    protocol_file = ROOT / "protocols" / "perpain-pilot.yaml"
    os.environ.update({"TAILOR_PROTOCOL_FILE": str(protocol_file),
                       "TAILOR_NOTIFICATIONS_SMTP_PORT": str(sink.port),
                       "TAILOR_NOTIFICATIONS_DISPATCH_POLL_SECONDS": "0.01"})
    url = f"sqlite:///{home / 'notifications.db'}"
    engine = make_engine(url)
    run_migrations(SPEC.migrations, url, engine=engine)

    async def no_publish(*_args: object) -> None:
        return None

    config = Settings(home=home, protocol_file=protocol_file, log_json=False)
    # Diary prompts by e-mail (the protocol's channel is SMS): the same claim → send →
    # record path as a reminder, against the SMTP baseline.
    diary = protocol.diary
    assert diary is not None, "the benchmark protocol has a diary"
    protocol = protocol.model_copy(update={"diary": diary.model_copy(update={"channel": "email"})})
    protocol.__dict__.pop("diary_policy", None)  # a cached view of the old diary section
    kernel = Kernel("notifications", config, ServiceSettings(name="notifications"), protocol,
                    engine, Bus("nats://127.0.0.1:1", "notifications"),
                    OutboxRelay(engine, no_publish))
    start = datetime(2025, 2, 6, 9, 0, tzinfo=UTC)
    clock = _Clock(start)
    rt = dataclasses.replace(bootstrap(kernel), clock=clock)  # the composition root, as served
    people = [f"B-{i:05d}" for i in range(n)] + [f"P-{i:05d}" for i in range(m)]
    await asyncio.to_thread(_allocate, rt, people, start - timedelta(hours=1), diary.module)
    await asyncio.to_thread(_make_due, kernel, people, start + timedelta(days=30), 0)
    dispatcher = Dispatcher(rt)
    task = asyncio.create_task(dispatcher.run(kernel.stop))
    try:
        keys = await asyncio.to_thread(_make_due, kernel, people[:n], clock(), 0)
        t0 = time.perf_counter()
        await _wait_sent(kernel, keys)
        took = time.perf_counter() - t0
        rate = n / took
        offered = rate / 2  # half the burst rate: lag is dispatch latency, not queueing
        keys = await asyncio.to_thread(_make_due, kernel, people[n:],
                                       clock() + timedelta(seconds=0.2), 1 / offered)
        await _wait_sent(kernel, keys)
        lags = _lags(kernel, keys)
    finally:
        kernel.stop.set()
        await task
        engine.dispose()
        sink.stop_thread()
    assert len(sink.messages) == n + m, "every e-mail reached the sink exactly once"
    p50, p99 = lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    return (rate, took), (offered, p50, p99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dispatch", type=int, default=1000, help="e-mails in the burst")
    ap.add_argument("--paced", type=int, default=400, help="e-mails in the paced run")
    args = ap.parse_args()
    protocol = load_protocol(ROOT / "protocols" / "perpain-pilot.yaml")
    bench_diary(protocol, args.participants, args.repeat)
    bench_reminders(protocol, min(args.participants, 2_000), 1)
    raw = asyncio.run(raw_smtp_rate())
    print(f"smtp: raw aiosmtplib → sim/smtp sink, one connection: {raw:8.0f} e-mails/s")

    # ── LEAD: e-mail dispatch measurement ──────────────────────────────────────────────
    burst, paced = asyncio.run(dispatch_rates(protocol, args.dispatch, args.paced))
    rate, took = burst
    print(f"dispatch: {args.dispatch:,} diary-prompt e-mails due at once, through claim → send → "
          f"record (SQLite, audit on every change)")
    print(f"  sustained                   {rate:8.0f} e-mails/s   ({took:.2f} s)   "
          f"ratio to raw {rate / raw:5.2f}×")
    offered, p50, p99 = paced
    print(f"  paced at {offered:.0f}/s ({args.paced} e-mails): dispatch lag p50 "
          f"{p50 * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms")
    # ────────────────────────────────────────────────────────────────────────────────────

if __name__ == "__main__":
    main()
