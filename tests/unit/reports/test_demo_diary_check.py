"""The demo's diary check: the reports service's adherence against the demo's own count of
prompt SMS received and answered (adherence arithmetic from the outside)."""

from __future__ import annotations

from datetime import date

import pytest

from services.reports.domain import DiaryWeek, diary_adherence
from tailor_cli.demo.checks import Verdict, check_diary

MONDAY = date(2026, 11, 30)


def _answer(sent: int, answered: int, rate: float | None) -> dict:
    return {"diary_adherence": rate,
            "pooled": {"diary": {"prompts_sent": sent, "answered_in_time": answered}}}


def _reported(weeks: list[DiaryWeek], members: set[str]) -> dict:
    """What the reports service answers, from its own domain function."""
    a = diary_adherence(weeks, members, as_of=MONDAY)
    return _answer(a.prompts_sent, a.answered_in_time, a.adherence)


def test_counts_that_agree_pass_and_the_rate_is_their_ratio() -> None:
    weeks = [DiaryWeek("d1", "2026-W49", MONDAY, 30, 22), DiaryWeek("d2", "2026-W49", MONDAY, 28, 16)]
    verdict = Verdict()
    check_diary(verdict, 58, 38, _reported(weeks, {"d1", "d2"}))
    assert verdict.ok and len(verdict.passed) == 3
    assert _reported(weeks, {"d1", "d2"})["diary_adherence"] == 38 / 58


@pytest.mark.parametrize(("sent", "answered", "body", "fails"), [
    (58, 38, _answer(58, 37, 37 / 58), 2),   # an answer the reports never counted
    (58, 38, _answer(59, 38, 38 / 59), 2),   # a prompt the participants never received
    (58, 38, _answer(58, 38, None), 1),      # answers not recorded: no rate
    (58, 38, _answer(58, 38, 0.65), 1),      # a rate that is not the ratio
    (0, 0, _answer(0, 0, None), 2),          # nothing sent: nothing was shown
    (10, 11, _answer(10, 11, 1.1), 1),       # more answers than prompts
])
def test_any_disagreement_fails_the_demo(sent: int, answered: int, body: dict,
                                         fails: int) -> None:
    verdict = Verdict()
    check_diary(verdict, sent, answered, body)
    assert len(verdict.failed) == fails, verdict.failed
