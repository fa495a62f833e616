"""Pocock–Simon minimization: imbalance scores, the random element, replay from the seed,
balance against simple randomization and guessability against theory."""

from __future__ import annotations

import random

import pytest

from services.randomization.domain.errors import DesignError
from services.randomization.domain.minimization import (
    Factor,
    Marginals,
    MinimizationDesign,
    decide,
    draws_for,
    imbalance_scores,
    replay,
)
from services.randomization.domain.predictability import (
    guess_rate,
    minimization_sd,
    minimization_theory,
)
from services.randomization.domain.stream import new_seed

from .conftest import seed_of

# Rush-like design: two arms, site and baseline pain interference (cut into three bands).
DESIGN = MinimizationDesign(
    arms=("CBT", "ACT"), ratio=(1, 1), p_preferred=0.8,
    factors=(Factor("site", 1.0, ("rush", "uic")),
             Factor("interference", 1.0, ("low", "mid", "high"))))


def cohort(n: int, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"site": rng.choice(["rush", "rush", "uic"]),
             "interference": rng.choice(["low", "mid", "high"])} for _ in range(n)]


def marginal_imbalance(design: MinimizationDesign, people: list[dict[str, str]],
                       arms: list[str]) -> int:
    """Sum over every factor level of |count(arm 1) − count(arm 2)|."""
    m = Marginals(design)
    for levels, arm in zip(people, arms, strict=True):
        m.add(levels, arm)
    return sum(abs(row[0] - row[1]) for row in m.counts.values())


def test_scores_prefer_the_arm_that_evens_out_the_participants_levels() -> None:
    m = Marginals(DESIGN)
    m.add({"site": "rush", "interference": "low"}, "CBT")
    scores = imbalance_scores(DESIGN, m, {"site": "rush", "interference": "high"})
    # Joining CBT: site rush 2-0 (range 2), interference high 1-0 (1) → 3; ACT: 1-1, 0-1 → 1.
    assert scores == {"CBT": 3.0, "ACT": 1.0}


def test_weights_scale_each_factor() -> None:
    heavy = MinimizationDesign(arms=DESIGN.arms, ratio=(1, 1), p_preferred=1.0, factors=(
        Factor("site", 3.0, ("rush", "uic")), Factor("interference", 1.0, ("low", "mid", "high"))))
    m = Marginals(heavy)
    m.add({"site": "rush", "interference": "low"}, "CBT")
    assert imbalance_scores(heavy, m, {"site": "rush", "interference": "low"}) == \
        {"CBT": 8.0, "ACT": 0.0}


def test_a_deterministic_design_always_follows_the_preference() -> None:
    certain = MinimizationDesign(arms=DESIGN.arms, ratio=(1, 1), p_preferred=1.0,
                                 factors=DESIGN.factors)
    decisions = replay(certain, new_seed(), cohort(200))
    assert all(d.followed_preference for d in decisions)
    assert all(d.arm in d.preferred for d in decisions)


def test_the_random_element_goes_against_the_preference_at_the_declared_rate() -> None:
    decisions = replay(DESIGN, new_seed(), cohort(4000))
    contested = [d for d in decisions if len(d.preferred) < len(DESIGN.arms)]
    followed = sum(d.followed_preference for d in contested) / len(contested)
    assert followed == pytest.approx(0.8, abs=0.03)


def test_the_same_seed_and_cohort_replay_the_same_decisions_and_another_seed_does_not() -> None:
    seed, people = new_seed(), cohort(300)
    first = replay(DESIGN, seed, people)
    assert replay(DESIGN, seed, people) == first
    assert [d.arm for d in replay(DESIGN, new_seed(), people)] != [d.arm for d in first]


def test_each_decision_is_reproducible_from_its_own_sealed_draws() -> None:
    seed, people = new_seed(), cohort(50)
    decisions = replay(DESIGN, seed, people)
    m = Marginals(DESIGN)
    for n, (levels, d) in enumerate(zip(people, decisions, strict=True), start=1):
        assert decide(DESIGN, m, levels, draws_for(seed, n)) == d
        m.add(levels, d.arm)


def test_minimization_balances_the_factors_better_than_simple_randomization() -> None:
    people = cohort(460)
    minimized = [d.arm for d in replay(DESIGN, new_seed(), people)]
    rng = random.Random(11)
    simple = [rng.choice(DESIGN.arms) for _ in people]
    m_imb = marginal_imbalance(DESIGN, people, minimized)
    s_imb = marginal_imbalance(DESIGN, people, simple)
    print(f"\nmarginal imbalance over 460: minimization {m_imb}, simple randomization {s_imb}")
    assert m_imb < s_imb
    assert m_imb <= 2 * len(Marginals(DESIGN).design.factors) * 3


def test_unequal_ratios_are_respected_on_the_whole() -> None:
    two_to_one = MinimizationDesign(arms=("A", "B"), ratio=(2, 1), p_preferred=0.8,
                                    factors=DESIGN.factors)
    arms = [d.arm for d in replay(two_to_one, new_seed(), cohort(900))]
    assert arms.count("A") / len(arms) == pytest.approx(2 / 3, abs=0.03)


def test_an_observer_who_knows_the_past_guesses_at_the_theoretical_rate() -> None:
    people = cohort(3000)
    decisions = replay(DESIGN, seed_of("minimization guess"), people)
    tied = sum(len(d.preferred) == 2 for d in decisions) / len(decisions)
    m = Marginals(DESIGN)
    guesses: list[tuple[str, ...]] = []
    for levels, d in zip(people, decisions, strict=True):
        scores = imbalance_scores(DESIGN, m, levels)
        best = min(scores.values())
        guesses.append(tuple(a for a in DESIGN.arms if scores[a] - best < 1e-9))
        m.add(levels, d.arm)
    history_guess = iter(guesses)
    observed = guess_rate([d.arm for d in decisions], lambda _h: next(history_guess))
    theory = minimization_theory(0.8, tied, 2)
    print(f"\nminimization p=0.8: observer guesses {observed:.3f}, theory {theory:.3f}")
    assert observed == pytest.approx(theory, abs=4 * minimization_sd(len(people)))


@pytest.mark.parametrize(("change", "field"), [
    ({"arms": ("A",), "ratio": (1,)}, "arms"),
    ({"ratio": (1, 0)}, "ratio"),
    ({"factors": ()}, "factors"),
    ({"p_preferred": 0.3}, "p_preferred"),
    ({"factors": (Factor("site", 0.0, ("a",)),)}, "factors.site"),
])
def test_a_bad_design_names_its_field(change: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"arms": DESIGN.arms, "ratio": DESIGN.ratio,
                                 "factors": DESIGN.factors, "p_preferred": 0.8} | change
    with pytest.raises(DesignError) as err:
        MinimizationDesign(**values)  # type: ignore[arg-type]
    assert err.value.field == field


def test_an_unknown_level_names_its_factor() -> None:
    with pytest.raises(DesignError) as err:
        imbalance_scores(DESIGN, Marginals(DESIGN), {"site": "mayo", "interference": "low"})
    assert err.value.field == "site"
