"""Notifications benchmark: diary scheduling against raw random numbers; SMTP baseline.

    .venv/bin/python bench/notifications.py [--participants 10000] [--repeat 3]

Prints, each beside a baseline measured in the same run:

- time to schedule a whole 12-week diary (protocol `diary`: 10 prompts a day) for N
  participants in two zones across both DST changes, against numpy drawing the same
  number of uniform random timestamps (and sorting them per day, as prompts must be);
- the nightly batch (2 days ahead for everyone) and reminder planning for N allocations;
- the raw send rate of aiosmtplib to the local SMTP sink (`sim/smtp`), the baseline for the
  service's dispatch rate measured in the LEAD section below.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

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
    diary, people = protocol.diary, cohort(n)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    protocol = load_protocol(ROOT / "protocols" / "perpain-pilot.yaml")
    bench_diary(protocol, args.participants, args.repeat)
    bench_reminders(protocol, min(args.participants, 2_000), 1)
    raw = asyncio.run(raw_smtp_rate())
    print(f"smtp: raw aiosmtplib → sim/smtp sink, one connection: {raw:8.0f} e-mails/s")

    # ── LEAD: e-mail dispatch measurement goes here ─────────────────────────────────────
    # Run the notifications service's dispatch loop against the same SmtpSink (started with
    # SmtpSink().start_in_thread()), with reminders due now for many participants; print
    # sustained e-mails/s and dispatch-lag p99 (sent time − due time), and the ratio of the
    # e-mail rate to `raw` above.
    # ────────────────────────────────────────────────────────────────────────────────────


if __name__ == "__main__":
    main()
