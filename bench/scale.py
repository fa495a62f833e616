"""Scale benchmark: a diary trial (10 prompts a day) run on the notifications service's
real parts, with trial time flowing faster than real time.

    .venv/bin/python bench/scale.py [--participants 10000] [--weeks 12] [--speed 0]
                                    [--offered 20] [--max-minutes 8] [--database sqlite|postgresql]

What runs: the notifications service's composition root (`bootstrap`, as served), its
dispatcher (claim in the database → send → record, audited) and its housekeeping job
(diary batches two days ahead, gauges), against the SMS provider emulator (`sim/sms`, over
HTTP) and the SMTP sink (`sim/smtp`), on a fresh SQLite file or PostgreSQL database. Every
participant is allocated to the diary module through `service.schedule_participant`
(timepoint e-mails, reminders, first diary batch), as the `allocated` event does. No bus:
the outbox is kept but not relayed (bench/bus.py measures the kernel round trip).

The trial clock is `start + speed × (real time since start)`: `--speed 0` (the default) picks the
speed at which prompts fall due at `--offered` per second on average over a day (about
1.7 times that in waking hours). The run stops at `--weeks` of
trial time or after `--max-minutes` of real time, whichever comes first, and says which:
a 10,000-participant, 12-week diary is 8.4 million prompts, far beyond minutes on a
2-core machine, so the default run covers the trial time it can and prints it.

Prints: events/s (messages dispatched per real second; audit entries per second beside),
dispatch lag p50/p99 in real seconds (sent − due, in trial time, divided by the speed),
beside the baseline of this run, the raw rate of the SMS emulator for one client in a bare
loop, and database growth per participant (and per participant-week of trial time).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peak_rss import peak_rss_line  # noqa: E402

PROTOCOL = ROOT / "protocols" / "perpain-pilot.yaml"
# The trial clock starts when the first diary day's waking hours do (08:00 in Berlin); the
# participants are allocated the evening before, so their diary starts that morning.
START = datetime(2025, 3, 4, 7, 0, tzinfo=UTC)
ALLOCATED = START - timedelta(hours=9)


class FlowingClock:
    """Trial time: `start` plus `speed` times the real time since `begin()`."""

    def __init__(self, start: datetime, speed: float) -> None:
        self.start, self.speed = start, speed
        self._t0: float | None = None

    def begin(self) -> None:
        self._t0 = time.perf_counter()

    def __call__(self) -> datetime:
        if self._t0 is None:
            return self.start
        return self.start + timedelta(seconds=(time.perf_counter() - self._t0) * self.speed)


def database_size(engine: Any) -> int:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            size = conn.exec_driver_sql("PRAGMA page_size").scalar()
            return int(pages) * int(size)
        return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())


def allocate(rt: Any, records: list[str], at: datetime) -> None:
    from services.core.db import unit_of_work
    from services.core.events import Allocated
    from services.notifications import contacts, service
    from services.notifications.crypto import ContactDetails

    module = rt.protocol.diary.module
    for i, record in enumerate(records):
        with unit_of_work(rt.kernel.engine) as session:
            contacts.store(session, rt, record, ContactDetails(
                email=f"{record}@participant.example", mobile=f"+49151{i:08d}", language="de",
                timezone="Europe/Berlin"), at)
            service.schedule_participant(session, rt, allocated=Allocated(
                record=record, allocation_number=record, module=module, allocated_at=at))


def states(engine: Any) -> dict[str, int]:
    from sqlmodel import Session, func, select

    from services.notifications.models import Message

    with Session(engine) as session:
        return dict(session.exec(select(Message.state, func.count())  # type: ignore[arg-type]
                                 .group_by(Message.state)).all())


def counts(engine: Any, until: datetime, now: datetime) -> tuple[int, int, int, list[float]]:
    """(messages sent, due but not sent, audit entries, lags in trial seconds): a message
    due by `until` and still unsent counts with its lag so far (`now` − due)."""
    from sqlmodel import Session, col, func, select

    from services.core.audit import AuditEntry
    from services.notifications.models import Message

    with Session(engine) as session:
        rows = session.exec(select(Message.due_at, Message.sent_at, Message.state).where(
            col(Message.due_at) <= until)).all()
        audited = session.exec(select(func.count()).select_from(AuditEntry)).one()
        sent = session.exec(select(func.count()).select_from(Message).where(
            col(Message.sent_at).is_not(None))).one()
    # Messages that ended otherwise (expired diary prompts, failures) have no dispatch lag.
    waiting = [due for due, at, state in rows if at is None and state in ("scheduled", "claimed")]
    lags = sorted([(at - due).total_seconds() for due, at, _ in rows if at is not None]
                  + [(now - due).total_seconds() for due in waiting])
    return sent, len(waiting), audited, lags


async def raw_sms_rate(base_url: str, clients: int, n: int = 400) -> float:
    """Sends per second to the SMS emulator from `clients` concurrent bare loops (the
    dispatcher's concurrency), nothing else around them."""
    import httpx

    async with httpx.AsyncClient(base_url=base_url) as client:
        async def loop(c: int) -> None:
            for i in range(c, n, clients):
                r = await client.post("/v1/messages", json={"to": f"+4917{i:09d}",
                                                            "text": "x" * 140},
                                      headers={"Idempotency-Key": f"raw-{i}"})
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in range(clients)))
        return n / (time.perf_counter() - t0)


async def run(args: argparse.Namespace, url: str, home: Path) -> None:
    from services.core.bus import Bus
    from services.core.db import make_engine
    from services.core.logging import configure_logging
    from services.core.migrations import run_migrations
    from services.core.outbox import OutboxRelay
    from services.core.protocol import load_protocol
    from services.core.runner import Kernel
    from services.core.settings import ServiceSettings, Settings
    from services.notifications.app import SPEC
    from services.notifications.bootstrap import bootstrap
    from services.notifications.dispatch.loop import Dispatcher, housekeeping
    from sim.sms import SmsConfig, SmsProvider, ThreadedServer, create_app
    from sim.smtp import SmtpSink

    configure_logging("notifications", level="warning", json=False)
    protocol = load_protocol(PROTOCOL)
    policy = protocol.diary_policy
    per_day = policy.prompts_per_day
    speed = args.speed or args.offered * 86400 / (args.participants * per_day)
    sink = SmtpSink().start_in_thread()
    sms = ThreadedServer(create_app(SmsProvider(SmsConfig(seed=18, delay=(0.0, 0.0)))))
    sms_url = sms.start()
    day_real = 86400 / speed
    os.environ.update({
        "TAILOR_PROTOCOL_FILE": str(PROTOCOL), "TAILOR_NOTIFICATIONS_SMTP_PORT": str(sink.port),
        "TAILOR_NOTIFICATIONS_SMS_URL": sms_url,
        "TAILOR_NOTIFICATIONS_DISPATCH_POLL_SECONDS": "0.05",
        # Diary batches as often, in trial time, as a served process makes them in real time
        # (every 5 minutes of a day): housekeeping keeps two days ahead.
        "TAILOR_NOTIFICATIONS_DIARY_INTERVAL_SECONDS": f"{max(0.5, day_real / 24):.3f}",
        "TAILOR_NOTIFICATIONS_GAUGE_INTERVAL_SECONDS": f"{max(1.0, day_real / 4):.3f}",
    })
    engine = make_engine(url)
    run_migrations(SPEC.migrations, url, engine=engine)
    empty = database_size(engine)

    async def no_publish(*_args: object) -> None:
        return None

    config = Settings(home=home, protocol_file=PROTOCOL, log_json=False)
    kernel = Kernel("notifications", config, ServiceSettings(name="notifications"), protocol,
                    engine, Bus("nats://127.0.0.1:1", "notifications"),
                    OutboxRelay(engine, no_publish))
    clock = FlowingClock(START, speed)
    rt = dataclasses.replace(bootstrap(kernel), clock=clock)
    records = [f"S-{i:05d}" for i in range(args.participants)]
    t0 = time.perf_counter()
    await asyncio.to_thread(allocate, rt, records, ALLOCATED)
    setup = time.perf_counter() - t0
    allocated = database_size(engine)
    baseline = await raw_sms_rate(sms_url, rt.settings.dispatch_concurrency)
    offered = args.participants * per_day * speed / 86400
    print(f"scale      {engine.dialect.name}: {args.participants:,} participants allocated to the "
          f"diary in {setup:,.0f} s; trial clock at {speed:,.0f}x real time "
          f"(a trial day every {day_real:,.1f} s), offered {offered:,.1f} prompts/s")
    dispatcher = Dispatcher(rt)
    clock.begin()
    started, end = time.perf_counter(), START + timedelta(weeks=args.weeks)
    tasks = [asyncio.create_task(dispatcher.run(kernel.stop)),
             asyncio.create_task(housekeeping(rt))]
    await asyncio.sleep(min(args.max_minutes * 60, (end - START).total_seconds() / speed))
    reached = clock()
    kernel.stop.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    # Only what fell due a little before the stop: later ones had no chance to be sent.
    sent, waiting, audited, lags = await asyncio.to_thread(
        counts, engine, reached - timedelta(seconds=speed * 2), reached)
    grown = database_size(engine)
    by_state = await asyncio.to_thread(states, engine)
    engine.dispose()
    sink.stop_thread()
    sms.stop()
    days = (reached - START).total_seconds() / 86400
    why = "the trial time asked for" if reached >= end else f"the {args.max_minutes:g}-minute cap"
    print(f"scale      messages by state at the stop: {by_state}")
    print(f"scale      ran {days:,.2f} trial days of {args.weeks * 7:g} ({why}) in {wall:,.0f} s real")
    if not lags:
        print("scale      nothing fell due in that time")
        return
    p50 = lags[len(lags) // 2] / speed
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] / speed
    rate = sent / wall
    print(f"scale      events: {sent:,} messages dispatched = {rate:,.1f} /s "
          f"(audit entries {audited / wall:,.1f} /s) | baseline bare sends to the SMS emulator, "
          f"{rt.settings.dispatch_concurrency} concurrent: "
          f"{baseline:,.0f} /s | ours/baseline = {rate / baseline:4.2f}x")
    print(f"scale      dispatch lag (sent - due; still waiting: now - due): p50 {p50:,.3f} s  "
          f"p99 {p99:,.3f} s real time; {waiting:,} due more than 2 s before the stop still "
          f"waiting")
    per = (grown - allocated) / args.participants
    print(f"scale      database: {empty / 2**20:,.1f} MiB empty, {allocated / 2**20:,.1f} MiB after "
          f"allocation ({(allocated - empty) / args.participants / 1024:,.1f} KiB per participant), "
          f"{grown / 2**20:,.1f} MiB after the run: +{per / 1024:,.1f} KiB per participant, "
          f"{per / max(days / 7, 1e-9) / 1024:,.1f} KiB per participant-week")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--weeks", type=float, default=12)
    parser.add_argument("--speed", type=float, default=0,
                        help="trial seconds per real second (0: from --offered)")
    parser.add_argument("--offered", type=float, default=20,
                        help="diary prompts falling due per real second, for --speed 0")
    parser.add_argument("--max-minutes", type=float, default=8, help="real-time cap of the run")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "TAILOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    print(f"scale benchmark: Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="tailor-scale-") as tmp:
        home = Path(tmp)
        if args.database == "sqlite":
            asyncio.run(run(args, f"sqlite:///{home / 'notifications.db'}", home))
        else:
            from sqlalchemy import create_engine, text

            name = f"tailor_scale_{uuid.uuid4().hex[:10]}"
            admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                asyncio.run(run(args, args.postgres_url.rsplit("/", 1)[0] + f"/{name}", home))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    print(peak_rss_line())


if __name__ == "__main__":
    main()
