"""Reminder plans, the cap of reminders per timepoint, and the re-check at send time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.protocol.notifications import ReminderPolicy, ReminderStep
from services.notifications.domain import (
    CancelReason,
    ParticipantSnapshot,
    PlannedReminder,
    TimepointSchedule,
    cancellations,
    find_schedule,
    is_still_due,
    plan_reminders,
    reminder_key,
)

from .conftest import BERLIN

ALL_CHANNELS = frozenset({"email", "sms", "phone", "letter"})
REACHABLE = ParticipantSnapshot(reachable=ALL_CHANNELS)


def with_steps(policy: ReminderPolicy, days: list[int], cap: int,
               stop: bool = True) -> ReminderPolicy:
    channels = ["email", "sms", "phone", "letter"]
    steps = [ReminderStep(day=d, channel=channels[i % 4]) for i, d in enumerate(sorted(days))]
    return policy.model_copy(update={"steps": steps, "max_per_timepoint": cap,
                                     "stop_at_window_end": stop})


def test_t1_plan_follows_the_protocol_steps_at_ten_local(
        policy: ReminderPolicy, schedules: list[TimepointSchedule]):
    plan = plan_reminders("rec-1", find_schedule(schedules, "t1"), policy, BERLIN)
    assert [(r.attempt, r.channel) for r in plan] == [
        (1, "email"), (2, "email"), (3, "sms"), (4, "phone"), (5, "letter")]
    t1_due = date(2025, 4, 9)
    for r, step in zip(plan, policy.steps, strict=True):
        assert r.nominal_at.astimezone(BERLIN).date() == t1_due + timedelta(days=step.day)
        assert r.nominal_at.astimezone(BERLIN).time() == time(10)


def test_reminder_due_on_a_quiet_sunday_goes_out_on_monday_morning(
        policy: ReminderPolicy, schedules: list[TimepointSchedule]):
    # week_8 is due Wednesday 12 March 2025; a step at +4 days lands on a Sunday.
    sunday_policy = policy.model_copy(update={
        "steps": [ReminderStep(day=4, channel="email")]})
    r, = plan_reminders("rec-1", find_schedule(schedules, "week_8"), sunday_policy, BERLIN)
    assert r.nominal_at.astimezone(BERLIN).strftime("%a %H:%M") == "Sun 10:00"
    assert r.send_at == datetime(2025, 3, 17, 7, 0, tzinfo=UTC)  # Monday 08:00 CET


def test_no_reminder_after_the_window_closes_unless_the_policy_allows_it(
        policy: ReminderPolicy, schedules: list[TimepointSchedule]):
    week_4 = find_schedule(schedules, "week_4")  # window ends 14 days after due
    assert [r.channel for r in plan_reminders("r", week_4, policy, BERLIN)] == [
        "email", "email", "sms", "phone"]
    late = policy.model_copy(update={"stop_at_window_end": False})
    assert len(plan_reminders("r", week_4, late, BERLIN)) == 5


def test_plan_never_exceeds_the_cap_even_with_more_steps(
        policy: ReminderPolicy, schedules: list[TimepointSchedule]):
    many = with_steps(policy, [1, 2, 3, 4, 5, 6, 7, 8], cap=5)
    plan = plan_reminders("r", find_schedule(schedules, "t1"), many, BERLIN)
    assert [r.attempt for r in plan] == [1, 2, 3, 4, 5]


def test_idempotency_key_is_deterministic_and_distinct_per_part():
    key = reminder_key("rec-1", "t1", 1, "email")
    assert key == reminder_key("rec-1", "t1", 1, "email")
    others = {reminder_key("rec-2", "t1", 1, "email"), reminder_key("rec-1", "t2", 1, "email"),
              reminder_key("rec-1", "t1", 2, "email"), reminder_key("rec-1", "t1", 1, "sms"),
              reminder_key("rec-1t", "1", 1, "email")}
    assert key not in others and len(others) == 5


def _queued(policy: ReminderPolicy, schedules: list[TimepointSchedule]
            ) -> list[PlannedReminder]:
    return [r for s in schedules for r in plan_reminders("rec-1", s, policy, BERLIN)]


NOW = datetime(2025, 4, 12, 12, 0, tzinfo=UTC)  # inside T1's window


def test_completion_cancels_that_timepoints_queued_reminders_only(
        policy: ReminderPolicy, schedules: list[TimepointSchedule]):
    t1_forms = frozenset(find_schedule(schedules, "t1").forms)
    snap = ParticipantSnapshot(reachable=ALL_CHANNELS, completed_forms={"t1": t1_forms})
    queued = [r for r in _queued(policy, schedules) if r.timepoint in ("t1", "t2")]
    cancelled = cancellations(queued, schedules, snap, policy, NOW)
    assert {r.timepoint for r, _ in cancelled} == {"t1"}
    assert {reason for _, reason in cancelled} == {CancelReason.TIMEPOINT_COMPLETE}
    assert len(cancelled) == 5


def test_partial_completion_keeps_reminders_due(
        policy: ReminderPolicy, schedules: list[TimepointSchedule]):
    snap = ParticipantSnapshot(reachable=ALL_CHANNELS,
                               completed_forms={"t1": frozenset({"hads", "panas"})})
    t1 = find_schedule(schedules, "t1")
    r = plan_reminders("rec-1", t1, policy, BERLIN)[0]
    assert is_still_due(r, t1, snap, policy, NOW)


def test_withdrawal_cancels_everything(
        policy: ReminderPolicy, schedules: list[TimepointSchedule]):
    snap = ParticipantSnapshot(withdrawn=True, reachable=ALL_CHANNELS)
    queued = _queued(policy, schedules)
    cancelled = cancellations(queued, schedules, snap, policy, NOW)
    assert len(cancelled) == len(queued)
    assert {reason for _, reason in cancelled} == {CancelReason.WITHDRAWN}


def test_opt_out_cancels_only_that_channel(
        policy: ReminderPolicy, schedules: list[TimepointSchedule]):
    snap = ParticipantSnapshot(opted_out=frozenset({"email"}), reachable=ALL_CHANNELS)
    t1 = find_schedule(schedules, "t1")
    cancelled = cancellations(plan_reminders("rec-1", t1, policy, BERLIN), schedules, snap,
                              policy, NOW)
    assert [(r.channel, why) for r, why in cancelled] == [
        ("email", CancelReason.OPTED_OUT), ("email", CancelReason.OPTED_OUT)]


def test_missing_contact_is_decided_at_send_time_not_ahead(
        policy: ReminderPolicy, schedules: list[TimepointSchedule]):
    snap = ParticipantSnapshot(reachable=frozenset({"email"}))
    t1 = find_schedule(schedules, "t1")
    plan = plan_reminders("rec-1", t1, policy, BERLIN)
    assert cancellations(plan, schedules, snap, policy, NOW) == []
    sms = next(r for r in plan if r.channel == "sms")
    check = is_still_due(sms, t1, snap, policy, NOW)
    assert not check and check.reason is CancelReason.NO_CONTACT


def test_cap_reached_and_window_closed_are_reasons(
        policy: ReminderPolicy, schedules: list[TimepointSchedule]):
    t1 = find_schedule(schedules, "t1")
    r = plan_reminders("rec-1", t1, policy, BERLIN)[0]
    full = ParticipantSnapshot(reachable=ALL_CHANNELS, sent={"t1": 5})
    assert is_still_due(r, t1, full, policy, NOW).reason is CancelReason.CAP_REACHED
    assert is_still_due(r, t1, REACHABLE, policy, t1.closes_at).reason is (
        CancelReason.WINDOW_CLOSED)
    assert is_still_due(r, t1, REACHABLE, policy, NOW).due


# ── property: at most `cap` reminders per participant and timepoint, whatever happens ──

PARTICIPANTS = ("rec-1", "rec-2")
event = st.one_of(
    st.tuples(st.just("send"), st.integers(0, 1), st.integers(0, 3), st.integers(0, 9)),
    st.tuples(st.just("complete"), st.integers(0, 1), st.integers(0, 3), st.integers(0, 9)),
    st.tuples(st.just("withdraw"), st.integers(0, 1)),
    st.tuples(st.just("opt_out"), st.integers(0, 1), st.sampled_from(sorted(ALL_CHANNELS))),
)


@settings(max_examples=150, deadline=None)
@given(days=st.lists(st.integers(0, 27), min_size=1, max_size=9),
       cap=st.integers(1, 5), events=st.lists(event, max_size=80))
def test_never_more_than_the_cap_per_participant_and_timepoint_in_any_event_order(
        policy: ReminderPolicy, schedules: list[TimepointSchedule],
        days: list[int], cap: int, events: list[tuple]):
    pol = with_steps(policy, days, cap)
    plans = {(p, s.timepoint): plan_reminders(p, s, pol, BERLIN)
             for p in PARTICIPANTS for s in schedules}
    completed: dict[tuple[str, str], set[str]] = {k: set() for k in plans}
    withdrawn: set[str] = set()
    opted_out: dict[str, set[str]] = {p: set() for p in PARTICIPANTS}
    claimed: set[str] = set()  # the database's unique idempotency keys
    sent: dict[tuple[str, str], int] = dict.fromkeys(plans, 0)

    for ev in events:
        p = PARTICIPANTS[ev[1]]
        if ev[0] == "withdraw":
            withdrawn.add(p)
        elif ev[0] == "opt_out":
            opted_out[p].add(ev[2])
        else:
            sched = schedules[ev[2]]
            key = (p, sched.timepoint)
            if ev[0] == "complete":
                completed[key].add(sched.forms[ev[3] % len(sched.forms)])
                continue
            if not plans[key]:
                continue
            # A send, or a redelivery of one already handled: same reminder, same key.
            r = plans[key][ev[3] % len(plans[key])]
            snap = ParticipantSnapshot(
                withdrawn=p in withdrawn, opted_out=frozenset(opted_out[p]),
                reachable=ALL_CHANNELS,
                completed_forms={sched.timepoint: frozenset(completed[key])},
                sent={sched.timepoint: sent[key]})
            if r.key in claimed or not is_still_due(r, sched, snap, pol, r.send_at):
                continue
            assert p not in withdrawn
            assert r.channel not in opted_out[p]
            assert not set(sched.forms) <= completed[key]
            claimed.add(r.key)
            sent[key] += 1

    assert all(n <= cap for n in sent.values())
    assert all(len(plan) <= cap for plan in plans.values())
