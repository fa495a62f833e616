"""Diary prompts: count, waking window, spacing, determinism, batches, adherence."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pytest

from services.core.protocol import TrialProtocol
from services.core.protocol.notifications import DiaryPolicy
from services.notifications.domain import (
    DiaryParticipant,
    NotificationError,
    PromptOutcome,
    diary_adherence,
    diary_prompts,
    prompt_is_open,
)

from .conftest import BERLIN, CHICAGO


@pytest.fixture(scope="module")
def diary(protocol: TrialProtocol) -> DiaryPolicy:
    return protocol.diary


# Diaries that run across both DST changes in both zones.
PEOPLE = [
    DiaryParticipant("rec-1", "Europe/Berlin", date(2025, 3, 1)),
    DiaryParticipant("rec-2", "America/Chicago", date(2025, 2, 20)),
    DiaryParticipant("rec-3", "Europe/Berlin", date(2025, 9, 20)),
    DiaryParticipant("rec-4", "America/Chicago", date(2025, 10, 1)),
]


def test_n_prompts_a_day_for_every_diary_day(diary: DiaryPolicy):
    batch = diary_prompts(PEOPLE, diary, seed=1)
    assert batch.at.shape == (4, diary.days, diary.prompts_per_day) == (4, 84, 10)
    assert len(list(batch.prompts())) == len(batch) == 4 * 84 * 10


def test_prompts_lie_inside_the_local_waking_window_and_keep_the_gap(diary: DiaryPolicy):
    batch = diary_prompts(PEOPLE, diary, seed=1)
    gap = timedelta(minutes=diary.min_gap_minutes)
    by_day: dict[tuple[str, int], list[datetime]] = {}
    for p in batch.prompts():
        zone = BERLIN if p.participant in ("rec-1", "rec-3") else CHICAGO
        first = next(x.first_day for x in PEOPLE if x.participant == p.participant)
        local = p.at.astimezone(zone)
        assert local.date() == first + timedelta(days=p.day)
        assert diary.waking_start <= local.time() < diary.waking_end
        assert p.expires_at - p.at == timedelta(minutes=diary.expires_after_minutes)
        by_day.setdefault((p.participant, p.day), []).append(p.at)
    for times in by_day.values():
        assert times == sorted(times)
        assert all(b - a >= gap for a, b in itertools.pairwise(times))


def test_times_spread_over_the_whole_window(diary: DiaryPolicy):
    batch = diary_prompts(PEOPLE[:1], diary, seed=3)
    minutes = [(p.at.astimezone(BERLIN) - datetime.combine(
        p.at.astimezone(BERLIN).date(), diary.waking_start, BERLIN)).total_seconds() / 60
        for p in batch.prompts()]
    assert min(minutes) < 30 and max(minutes) > 14 * 60 - 30
    assert len({m for m in minutes}) > 500  # random, not a fixed grid


def test_same_seed_same_prompts_other_seed_other_prompts(diary: DiaryPolicy):
    a = diary_prompts(PEOPLE, diary, seed=42).at
    assert np.array_equal(a, diary_prompts(PEOPLE, diary, seed=42).at)
    assert not np.array_equal(a, diary_prompts(PEOPLE, diary, seed=43).at)


def test_batches_ahead_equal_the_whole_diary_and_ignore_who_else_is_in_the_batch(
        diary: DiaryPolicy):
    whole = diary_prompts(PEOPLE, diary, seed=5).at
    week_3 = diary_prompts(PEOPLE, diary, seed=5, from_day=14, days=7)
    assert week_3.at.shape == (4, 7, 10)
    assert np.array_equal(week_3.at, whole[:, 14:21])
    alone = diary_prompts([PEOPLE[2]], diary, seed=5, from_day=14, days=7)
    assert np.array_equal(alone.at[0], whole[2, 14:21])
    assert [p.day for p in list(week_3.prompts())[::10][:7]] == list(range(14, 21))


def test_batches_stop_at_the_end_of_the_diary(diary: DiaryPolicy):
    assert diary_prompts(PEOPLE, diary, seed=1, from_day=80, days=7).at.shape == (4, 4, 10)
    assert len(diary_prompts(PEOPLE, diary, seed=1, from_day=84, days=7)) == 0
    with pytest.raises(NotificationError) as err:
        diary_prompts(PEOPLE, diary, seed=1, from_day=-1)
    assert err.value.field == "from_day"


def test_own_waking_window_that_wraps_midnight(diary: DiaryPolicy):
    owl = DiaryParticipant("rec-9", "Europe/Berlin", date(2025, 3, 28),
                           waking_start=time(16), waking_end=time(2))
    batch = diary_prompts([owl], diary, seed=9, days=5)  # includes the spring-forward night
    for p in batch.prompts():
        start = datetime.combine(date(2025, 3, 28) + timedelta(days=p.day), time(16), BERLIN)
        assert start <= p.at.astimezone(BERLIN) < start + timedelta(hours=10)


def test_window_with_no_slack_puts_prompts_exactly_a_gap_apart(diary: DiaryPolicy):
    tight = diary.model_copy(update={"prompts_per_day": 3, "min_gap_minutes": 60,
                                     "waking_start": time(9), "waking_end": time(11)})
    batch = diary_prompts(PEOPLE[:1], tight, seed=1, days=1)
    assert [p.at.astimezone(BERLIN).time() for p in batch.prompts()] == [
        time(9), time(10), time(11)]


def test_policy_refuses_prompts_that_cannot_fit(diary: DiaryPolicy):
    with pytest.raises(ValueError, match="do not fit"):
        DiaryPolicy.model_validate({**diary.model_dump(), "min_gap_minutes": 120})


def test_prompt_is_open_until_it_expires(diary: DiaryPolicy):
    p = next(diary_prompts(PEOPLE[:1], diary, seed=1, days=1).prompts())
    assert not prompt_is_open(p, p.at - timedelta(seconds=1))
    assert prompt_is_open(p, p.at)
    assert not prompt_is_open(p, p.expires_at)


def test_adherence_counts_only_answers_before_expiry():
    t = datetime(2025, 3, 3, 9, tzinfo=UTC)
    exp = t + timedelta(hours=1)
    outcomes = [
        PromptOutcome("rec-1", 2, t, t + timedelta(minutes=5), exp),   # answered
        PromptOutcome("rec-1", 2, t, t + timedelta(minutes=61), exp),  # too late
        PromptOutcome("rec-1", 2, t, None, exp),                       # ignored
        PromptOutcome("rec-1", 2, None, None, exp),                    # never sent
        PromptOutcome("rec-1", 3, t, t, exp),
        PromptOutcome("rec-2", 2, t, None, exp),
    ]
    rows = diary_adherence(outcomes)
    assert [(r.participant, r.day, r.scheduled, r.sent, r.answered) for r in rows] == [
        ("rec-1", 2, 4, 3, 1), ("rec-1", 3, 1, 1, 1), ("rec-2", 2, 1, 1, 0)]
    assert rows[0].rate == pytest.approx(1 / 3)


# ── answers in REDCap: one survey instance per prompt ─────────────────────────────
def test_every_prompt_has_its_own_instance_and_each_instance_names_its_prompt(
        diary: DiaryPolicy):
    instances = [diary.instance_of(day, index) for day in range(diary.days)
                 for index in range(diary.prompts_per_day)]
    assert instances == list(range(1, diary.prompts + 1))  # 1 … 840, none shared, none skipped
    assert all(diary.instance_of(*diary.prompt_of(n)) == n for n in instances)
    assert diary.prompt_of(1) == (0, 0) and diary.prompt_of(diary.prompts) == (
        diary.days - 1, diary.prompts_per_day - 1)


@pytest.mark.parametrize("instance", [0, -1, 841])
def test_an_instance_outside_the_diary_names_no_prompt(diary: DiaryPolicy, instance: int):
    with pytest.raises(ValueError, match="instance"):
        diary.prompt_of(instance)


@pytest.mark.parametrize(("day", "index"), [(-1, 0), (84, 0), (0, 10), (0, -1)])
def test_a_prompt_outside_the_diary_has_no_instance(diary: DiaryPolicy, day: int, index: int):
    with pytest.raises(ValueError, match="no diary prompt"):
        diary.instance_of(day, index)


def test_a_diary_needs_an_app_link_or_a_redcap_answer_form_with_its_event(diary: DiaryPolicy):
    base = diary.model_dump()
    for broken, says in (({"prompt_link": None, "answer_form": None, "answer_event": None},
                          "somewhere to answer"),
                         ({"answer_event": None}, "go together"),
                         ({"answer_form": None, "prompt_link": "https://a.example/{token}"},
                          "go together")):
        with pytest.raises(ValueError, match=says):
            DiaryPolicy.model_validate(base | broken)
    app = DiaryPolicy.model_validate(base | {"prompt_link": "https://a.example/{token}",
                                             "answer_form": None, "answer_event": None})
    assert app.answer_form is None


def test_the_diary_answers_need_an_event_and_a_form_of_their_own(protocol: TrialProtocol):
    raw = protocol.model_dump(mode="json")
    for clash, says in (({"answer_event": "week_4"}, "is the event of timepoint 'week_4'"),
                        ({"answer_form": "mpid_ps"}, "already a form")):
        broken = raw | {"diary": raw["diary"] | clash}
        with pytest.raises(ValueError, match=says):
            TrialProtocol.model_validate(broken)
    assert protocol.diary_answers == ("diary", "diary")
    assert protocol.redcap_events[-1] == "diary"
