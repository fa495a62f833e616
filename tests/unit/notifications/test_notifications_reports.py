"""Blinded reports: Wilson intervals, per-timepoint retention, per-channel delivery."""

from __future__ import annotations

import dataclasses

import pytest

from services.notifications.domain import (
    ChannelReport,
    DeliveryState,
    TimepointRecord,
    TimepointReport,
    TimepointStatus,
    channel_report,
    proportion,
    timepoint_report,
    wilson_interval,
)


# Hand-computed with (2np + z² ± z·√(z² + 4np(1−p))) / (2(n + z²)), z = 1.95996.
@pytest.mark.parametrize(("x", "n", "low", "high"), [
    (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634),
    (85, 100, 0.7672, 0.9069), (90, 105, 0.7776, 0.9115), (1, 1, 0.2065, 1.0),
])
def test_wilson_interval_matches_hand_computed_values(x: int, n: int, low: float, high: float):
    lo, hi = wilson_interval(x, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_refuses_impossible_counts_and_proportion_handles_none():
    for x, n in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            wilson_interval(x, n)
    empty = proportion(0, 0)
    assert (empty.rate, empty.low, empty.high) == (None, None, None)
    assert proportion(17, 20).rate == pytest.approx(0.85)


def record(tp: str, status: TimepointStatus, closed: bool, needed: int | None = None
           ) -> TimepointRecord:
    return TimepointRecord(tp, status, closed, needed)


def test_timepoint_report_counts_and_response_among_closed_windows():
    S = TimepointStatus
    rows = [("t1", S.COMPLETE, True, 0), ("t1", S.COMPLETE, True, 2),
            ("t1", S.COMPLETE, False, 2), ("t1", S.OVERDUE, True, None),
            ("t1", S.IN_PROGRESS, False, None), ("t1", S.DUE, False, None),
            ("t1", S.NOT_DUE, False, None), ("t2", S.NOT_DUE, False, None)]
    records = [record(*r) for r in rows]
    t1, t2, week_4 = timepoint_report(records, ["t1", "t2", "week_4"])
    assert (t1.scheduled, t1.due, t1.complete, t1.in_progress, t1.overdue) == (7, 6, 3, 1, 1)
    assert (t1.response.successes, t1.response.n) == (2, 3)
    assert (t1.response.low, t1.response.high) == pytest.approx(wilson_interval(2, 3))
    assert t1.reminders_needed == {0: 1, 2: 2}
    assert t1.mean_reminders_needed == pytest.approx(4 / 3)
    assert (t2.scheduled, t2.due, t2.response.rate) == (1, 0, None)
    assert (week_4.scheduled, week_4.mean_reminders_needed) == (0, None)


def test_channel_report_counts_each_state_once():
    D = DeliveryState
    rows = channel_report([
        ("email", D.DELIVERED), ("email", D.SENT), ("email", D.FAILED), ("email", D.CANCELLED),
        ("sms", D.UNDELIVERED), ("sms", D.DELIVERED), ("sms", D.SCHEDULED),
        ("phone", D.CLAIMED),
    ])
    as_tuples = {r.channel: (r.scheduled, r.sent, r.delivered, r.failed, r.cancelled)
                 for r in rows}
    assert as_tuples == {"email": (4, 2, 1, 1, 1), "sms": (3, 2, 1, 1, 0),
                         "phone": (1, 0, 0, 0, 0)}


def test_reports_are_blinded():
    for report in (TimepointRecord, TimepointReport, ChannelReport):
        names = {f.name for f in dataclasses.fields(report)}
        assert not names & {"arm", "cluster", "module", "allocation"}
