"""The pcst-smart synthetic cohort and the demo's stage checks: the cohort plays every
story the stage must handle, its expected outcomes follow the rule independently, and
the checks fail on an allocation where none belongs, a wrong outcome or a foreign option."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from services.core.protocol import TrialProtocol, load_protocol
from services.randomization.domain.stages import classify
from sim.smart_cohort import make_smart_cohort
from tailor_cli.demo.checks import Verdict
from tailor_cli.demo.design_checks import check_stage_blocks, check_stages

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def pcst() -> TrialProtocol:
    return load_protocol(ROOT / "protocols" / "pcst-smart.yaml")


def test_the_cohort_plays_every_stage_story_and_its_outcomes_are_the_rules(pcst) -> None:
    cohort, visits = make_smart_cohort(pcst, eligible=60)
    stories = Counter(v.story for v in visits)
    assert {"responder", "non_responder", "missed"} <= set(stories)
    assert stories["boundary"] == stories["review"] == stories["withdrawn"] == 1
    assert stories["not_allocated"] == 1
    allocated = {p.record for p in cohort if p.expects_allocation}
    assert {v.record for v in visits if v.story != "not_allocated"} == allocated
    rule = pcst.randomization.stages[0].rule
    baseline = {p.record: dict(p.forms)["baseline_measures"][rule.baseline_field] for p in cohort
                if p.expects_allocation}
    for v in visits:
        if v.expects_stage:
            entered = (v.correction or v.forms[-1])[1][rule.field]
            assert v.outcome == classify(rule, entered, baseline[v.record])
    boundary = next(v for v in visits if v.story == "boundary")
    assert (baseline[boundary.record], boundary.forms[-1][1][rule.field]) == ("10", "7")
    assert boundary.outcome == "responders"
    review = next(v for v in visits if v.story == "review")
    assert review.forms[-1][1][rule.field] == "" and review.correction is not None


def _service_view(visits, option_of) -> list[dict]:  # type: ignore[no-untyped-def]
    return [{"record": v.record, "stage": "s2", "stage_number": f"N{i}", "outcome": v.outcome,
             "option": option_of(v), "first_arm": "pcst_full"}
            for i, v in enumerate(visits) if v.expects_stage]


def test_the_stage_checks_pass_a_right_run_and_fail_each_wrong_one(pcst) -> None:
    _cohort, visits = make_smart_cohort(pcst, eligible=30)
    def right(v):  # type: ignore[no-untyped-def]
        return "maintenance"
    service = _service_view(visits, right)
    in_redcap = {a["record"]: {"s2_number": a["stage_number"], "s2_option": a["option"]}
                 for a in service}
    arms = {a["record"]: "pcst_full" for a in service}
    ok = Verdict()
    check_stages(ok, pcst, visits, in_redcap, service, arms)
    assert ok.ok, ok.failed
    withdrawn = next(v for v in visits if v.story == "withdrawn")
    leaked = Verdict()
    check_stages(leaked, pcst, visits, {**in_redcap, withdrawn.record: {
        "s2_number": "X", "s2_option": "no_dose"}}, service, arms)
    assert not leaked.ok and any("nobody else" in f for f in leaked.failed)
    swapped = [{**a, "outcome": "non_responders" if a["outcome"] == "responders"
                else "responders"} for a in service]
    wrong = Verdict()
    check_stages(wrong, pcst, visits, in_redcap, swapped, arms)
    assert any("the rule's" in f for f in wrong.failed)
    foreign = [{**a, "option": "increased"} if a["outcome"] == "responders" else a
               for a in service]
    bad = Verdict()
    check_stages(bad, pcst, visits, {a["record"]: {"s2_number": a["stage_number"],
                                                   "s2_option": a["option"]} for a in foreign},
                 foreign, arms)
    assert any("only their own options" in f for f in bad.failed)


def test_stage_block_balance_flags_a_stratum_beyond_half_a_block(pcst) -> None:
    fine, off = Verdict(), Verdict()
    row = {"stage": "s2", "stratum": "s2:responders:pcst_full"}
    check_stage_blocks(fine, pcst, [{**row, "by_option": {"maintenance": 5, "no_dose": 4},
                                     "expected": {"maintenance": 4.5, "no_dose": 4.5}}])
    check_stage_blocks(off, pcst, [{**row, "by_option": {"maintenance": 8, "no_dose": 3},
                                    "expected": {"maintenance": 5.5, "no_dose": 5.5}}])
    assert fine.ok and not off.ok
