"""The seed trials' pure parts: readiness and levels from the baseline row, the synthetic
cohort against its own eligibility criteria, and the demos' design checks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.core.protocol import TrialProtocol, load_protocol
from services.randomization.domain import RandomizationError, design_from_protocol, generate_list
from services.randomization.domain.baseline import levels_of, must_hold, unmet
from services.randomization.domain.minimization import Marginals, decide, draws_for, replay
from sim.seed_cohort import make_seed_cohort
from tailor_cli.demo.checks import Verdict
from tailor_cli.demo.design_checks import (
    block_balance,
    check_blocks,
    check_guessability,
    check_minimization,
    guessability,
    minimization_figures,
)

from .conftest import seed_of

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def rush() -> TrialProtocol:
    return load_protocol(ROOT / "protocols" / "rush-mechanisms.yaml")


@pytest.fixture(scope="module")
def p4p() -> TrialProtocol:
    return load_protocol(ROOT / "protocols" / "partners4pain.yaml")


def test_readiness_needs_consent_eligibility_every_baseline_form_and_no_withdrawal(rush) -> None:
    row = {"cons_given": "1", "scr_eligible": "1", "wd_withdrawn": "0",
           **{f"{f}_complete": "2" for f in rush.redcap.baseline_forms}}
    assert unmet(rush, row) == []
    assert unmet(rush, {**row, "cons_given": ""}) == ["cons_given is not 1"]
    assert unmet(rush, {**row, "demographics_complete": "1"}) == [
        "demographics_complete is not 2"]
    assert unmet(rush, {**row, "wd_withdrawn": "1"}) == ["withdrawn"]


def test_levels_come_from_the_site_codes_and_the_cut_points(rush) -> None:
    assert levels_of(rush, {"scr_site": "2", "scr_pain_interference": "5.5"}) == {
        "site": "site_2", "interference": "moderate"}
    assert levels_of(rush, {"scr_site": "1", "scr_pain_interference": "6"}) == {
        "site": "rush_chicago", "interference": "high"}
    for bad, field in [({"scr_site": "3", "scr_pain_interference": "6"}, "scr_site"),
                       ({"scr_site": "1", "scr_pain_interference": ""}, "scr_pain_interference")]:
        with pytest.raises(RandomizationError) as err:
            levels_of(rush, bad)
        assert err.value.field == field


@pytest.mark.parametrize("name", ["rush", "p4p"])
def test_the_cohort_is_eligible_exactly_as_its_criteria_say(name, request) -> None:
    protocol: TrialProtocol = request.getfixturevalue(name)
    cohort = make_seed_cohort(protocol, eligible=40, ineligible=8, withdrawn=2)
    assert protocol.eligibility is not None
    stories = [p.story for p in cohort]
    assert stories.count("allocate") == 38 and stories.count("ineligible") == 8
    for p in cohort:
        screening = dict(p.forms)["screening"]
        meets = protocol.eligibility.eligible(screening)
        assert meets == (p.story != "ineligible")
        assert screening["scr_eligible"] == ("1" if meets else "0")
        if p.expects_allocation:
            levels_of(protocol, screening)  # every allocated person has every level


def test_block_balance_flags_a_stratum_beyond_half_a_block(p4p) -> None:
    rows = block_balance(p4p, [
        {"stratum": "minneapolis", "by_arm": {"partners4pain": 10, "keys_to_wellbeing": 9}},
        {"stratum": "st_paul", "by_arm": {"partners4pain": 14, "keys_to_wellbeing": 6}}])
    verdict = Verdict()
    check_blocks(verdict, rows)
    assert len(verdict.passed) == 1 and "st_paul" in verdict.failed[0]


def test_minimization_beats_simple_randomization_on_a_seed_cohort(rush) -> None:
    cohort = make_seed_cohort(rush, eligible=200, ineligible=0, withdrawn=0)
    fields = {p.record: dict(p.forms)["screening"] for p in cohort}
    design = design_from_protocol(rush).minimization
    assert design is not None
    marginals, arms = Marginals(design), {}
    for n, record in enumerate(sorted(fields), start=1):
        levels = levels_of(rush, fields[record])
        decision = decide(design, marginals, levels, draws_for(seed_of("rush"), n))
        marginals.add(levels, decision.arm)
        arms[record] = decision.arm
    figures = minimization_figures(rush, fields, arms, runs=200)
    print(f"\nrush-mechanisms, 200 participants: largest marginal imbalance "
          f"minimization {figures.minimized:g}, simple randomization {figures.simple_mean:.2f}")
    verdict = Verdict()
    check_minimization(verdict, figures)
    assert verdict.ok and figures.minimized <= 4
    # and the check can fail: simple randomization's own allocation is not below its mean
    rng = random.Random(3)
    coin = {r: rng.choice(["cbt", "act"]) for r in fields}
    worst = minimization_figures(rush, fields, coin, runs=200)
    assert worst.minimized > figures.minimized


def test_the_demo_prints_the_observers_rate_beside_theory_and_flags_one_far_from_it(
        p4p, rush) -> None:
    """partners4pain: arms from its own sealed list in allocation order; rush: decisions
    replayed from a seed. An order far from the theory fails the check."""
    cohort = make_seed_cohort(p4p, eligible=376, ineligible=0, withdrawn=0)
    fields = {p.record: dict(p.forms)["screening"] for p in cohort}
    design = design_from_protocol(p4p)
    slots = {s: [x.arm for x in generate_list(design, seed_of("p4p demo"), 300)
                 if x.stratum == s] for s in design.stratum_keys}
    arms = {}
    for record in sorted(fields):
        arms[record] = slots[levels_of(p4p, fields[record])["site"]].pop(0)
    figure = guessability(p4p, fields, arms, sorted(fields))
    verdict = Verdict()
    check_guessability(verdict, figure)
    print("\n" + figure.line())
    assert verdict.ok and figure.n == 376 and figure.theory == pytest.approx(0.703, abs=1e-3)
    # A broken list that hands out one arm only: the observer (guessing the arm behind)
    # is nearly always wrong, far outside the theory's sampling error.
    bad = Verdict()
    check_guessability(bad, guessability(p4p, fields, dict.fromkeys(fields, "partners4pain"),
                                         sorted(fields)))
    assert not bad.ok

    people = make_seed_cohort(rush, eligible=300, ineligible=0, withdrawn=0)
    rfields = {p.record: dict(p.forms)["screening"] for p in people}
    m = design_from_protocol(rush).minimization
    assert m is not None
    order = sorted(rfields)
    decided = replay(m, seed_of("rush demo"), [levels_of(rush, rfields[r]) for r in order])
    rarms = {r: d.arm for r, d in zip(order, decided, strict=True)}
    rush_figure = guessability(rush, rfields, rarms, order)
    print(rush_figure.line())
    ok = Verdict()
    check_guessability(ok, rush_figure)
    assert ok.ok and rush_figure.n == 300


def test_a_site_comes_from_the_data_access_group_when_no_field_is_declared(rush) -> None:
    by_dag = rush.model_copy(update={"randomization": rush.randomization.model_copy(
        update={"site": type(rush.randomization.site)()})})
    fields = {"redcap_data_access_group": "site_2", "scr_pain_interference": "4"}
    assert levels_of(by_dag, fields) == {"site": "site_2", "interference": "moderate"}
    for dag in ("", "site_9"):
        with pytest.raises(RandomizationError) as err:
            levels_of(by_dag, {**fields, "redcap_data_access_group": dag})
        assert err.value.field == "redcap_data_access_group"
    assert "data access group" in must_hold(by_dag, "redcap_data_access_group")


def test_what_a_stratification_field_must_hold_names_it_and_never_a_value(rush) -> None:
    assert must_hold(rush, "scr_site") == "scr_site must be one of 1, 2 (the sites)"
    assert must_hold(rush, "scr_pain_interference") == (
        "scr_pain_interference must be a number (cut at 6 into moderate, high)")


def test_the_seed_trials_declare_their_sample_size_and_a_bad_one_is_named(p4p, rush) -> None:
    """The demos randomize this many by default (the seeds' n)."""
    assert (p4p.trial.sample_size, rush.trial.sample_size) == (376, 460)
    with pytest.raises(ValidationError) as err:
        type(rush.trial).model_validate({**rush.trial.model_dump(), "sample_size": 0})
    assert err.value.errors()[0]["loc"] == ("sample_size",)
