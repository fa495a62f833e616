"""Guessability of permuted blocks, minimization and simple randomization against their
theory: the proportion of next assignments an observer who knows all past ones guesses
correctly, printed per method beside its theoretical value. Seeded, so deterministic; the
tolerances are a few sampling standard deviations bounded from the sample size
(predictability.blocks_sd / minimization_sd), not tuned constants."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from services.core.protocol import load_protocol
from services.randomization.domain import design_from_protocol, generate_list
from services.randomization.domain.baseline import levels_of
from services.randomization.domain.design import ListDesign
from services.randomization.domain.minimization import replay
from services.randomization.domain.predictability import (
    Guessability,
    blackwell_hodges,
    blocks_guessability,
    blocks_sd,
    convergence_guess,
    convergence_theory,
    guess_rate,
    minimization_guessability,
    minimization_sd,
    per_block,
)
from sim.seed_cohort import make_seed_cohort

from .conftest import seed_of

ROOT = Path(__file__).resolve().parents[3]
SDS = 4.0  # how many sampling sds a seeded figure may stray from its theory


def test_blackwell_hodges_matches_hand_counts() -> None:
    assert blackwell_hodges(2) == 0.75  # the second of a pair is always known
    assert blackwell_hodges(4) == pytest.approx(17 / 24)


def test_fixed_blocks_of_four_are_guessed_as_blackwell_and_hodges_predict() -> None:
    rng = random.Random(3)
    sequence: list[str] = []
    for _ in range(3000):
        block = ["A", "A", "B", "B"]
        rng.shuffle(block)
        sequence += block
    guess = per_block(convergence_guess(["A", "B"], [1, 1]), [4] * 3000)
    observed = guess_rate(sequence, guess)
    print(f"\nblocks of 4, 1:1: observer guesses {observed:.3f}, theory {blackwell_hodges(4):.3f}")
    assert observed == pytest.approx(blackwell_hodges(4), abs=0.01)


def test_simple_randomization_is_a_coin_to_the_observer() -> None:
    rng = random.Random(5)
    sequence = [rng.choice("AB") for _ in range(20000)]
    observed = guess_rate(sequence, convergence_guess(["A", "B"], [1, 1]))
    print(f"\nsimple randomization: observer guesses {observed:.3f}, theory 0.500")
    assert observed == pytest.approx(0.5, abs=0.015)


def test_the_exact_recursion_agrees_with_blackwell_and_hodges() -> None:
    for length in (2, 4, 6, 10):
        assert convergence_theory([1, 1], [length]) == pytest.approx(blackwell_hodges(length))


def test_perpain_variable_blocks_are_guessed_at_their_theoretical_rate(design: ListDesign) -> None:
    """PerPAIN's list: 2:1:1 over (matching, other, other) in blocks of 4, 8 or 12."""
    slots = generate_list(design, seed_of("perpain guess"), 1500)
    stratum = design.strata[0]
    order = [m for m, _ in stratum.weights]
    sequences = []
    for st in design.strata:  # each stratum's modules, named by their role (matching first)
        role = {m: order[i] for i, (m, _) in enumerate(st.weights)}
        sequences.append([role[s.module] for s in slots if s.stratum == st.key])
    figure = blocks_guessability("PerPAIN modules (2:1:1, blocks 4/8/12)",
                                 [w for _, w in stratum.weights], design.block_lengths, order,
                                 sequences)
    print("\n" + figure.line())
    assert figure.within(SDS)


def test_the_blocks_sd_bound_matches_the_scatter_of_replicate_lists() -> None:
    """300 seeded replicate sequences of 1:1 blocks of 2, 4 or 6 (about 120 assignments):
    the sd of their observed rates is what blocks_sd says, to within sampling error."""
    rng = random.Random(8)
    guess = convergence_guess(["A", "B"], [1, 1])
    rates = []
    for _ in range(300):
        sequence: list[str] = []
        while len(sequence) < 120:
            half = rng.choice([1, 2, 3])
            block = ["A"] * half + ["B"] * half
            rng.shuffle(block)
            sequence += block
        rates.append(guess_rate(sequence, guess))
    mean = sum(rates) / len(rates)
    sd = (sum((r - mean) ** 2 for r in rates) / (len(rates) - 1)) ** 0.5
    bound = blocks_sd([1, 1], [2, 4, 6], 120)
    print(f"\nreplicates: sd {sd:.4f}, bound {bound:.4f}")
    assert 0.75 * bound < sd < 1.25 * bound  # an sd from 300 samples is good to ±~8%


def test_the_bounds_shrink_as_one_over_the_root_of_the_sample() -> None:
    assert minimization_sd(400) == pytest.approx(2 * minimization_sd(1600))
    assert blocks_sd([1, 1], [2, 4, 6], 400) == pytest.approx(2 * blocks_sd([1, 1], [2, 4, 6], 1600))


def test_a_figure_strays_from_its_theory_only_within_its_sampling_error() -> None:
    near = Guessability("m", 400, 0.70, 0.68, minimization_sd(400), 0.5)  # 0.8 sd off
    far = Guessability("m", 400, 0.80, 0.68, minimization_sd(400), 0.5)  # 4.8 sd off
    assert near.within(SDS) and not far.within(SDS)


def test_partners4pain_blocks_of_2_4_6_are_guessed_at_their_theoretical_rate() -> None:
    """1:1 by site in blocks of 2, 4 or 6 drawn with equal chance (the protocol's list)."""
    protocol = load_protocol(ROOT / "protocols" / "partners4pain.yaml")
    design = design_from_protocol(protocol)
    slots = generate_list(design, seed_of("partners4pain guess"), 2000)
    sequences = [[s.arm for s in slots if s.stratum == st.key] for st in design.strata]
    ratio = [a.ratio for a in protocol.arms]
    figure = blocks_guessability("partners4pain permuted blocks 2/4/6", ratio,
                                 design.block_lengths, design.arms, sequences)
    print("\n" + figure.line())
    # Equiprobable lengths: each length's Blackwell–Hodges rate, weighted by its length.
    assert figure.theory == pytest.approx(
        sum(blackwell_hodges(n) * n for n in (2, 4, 6)) / 12)
    assert figure.n >= 4000 and figure.within(SDS)
    # The statistic is sensitive: fixed blocks of 2 would be guessed far more often.
    assert convergence_theory(ratio, [2]) - figure.theory > 10 * figure.sd


def test_rush_minimization_is_guessed_at_p_where_an_arm_is_preferred_and_half_at_ties() -> None:
    """The rush-mechanisms design (p = 0.8, site and interference) on its synthetic cohort."""
    protocol = load_protocol(ROOT / "protocols" / "rush-mechanisms.yaml")
    design = design_from_protocol(protocol).minimization
    assert design is not None
    people = [levels_of(protocol, dict(p.forms)["screening"])
              for p in make_seed_cohort(protocol, eligible=2001, seed=15)
              if p.expects_allocation]
    arms = [d.arm for d in replay(design, seed_of("rush guess"), people)]
    figure = minimization_guessability("rush-mechanisms minimization p=0.8", design,
                                       list(zip(people, arms, strict=True)))
    print("\n" + figure.line())
    assert figure.n == len(people) >= 2000
    assert 0.5 < figure.theory < 0.8  # ties pull it from p towards a coin
    assert figure.within(SDS)


def test_a_deterministic_minimization_is_always_guessed_outside_ties() -> None:
    protocol = load_protocol(ROOT / "protocols" / "rush-mechanisms.yaml")
    design = design_from_protocol(protocol).minimization
    assert design is not None
    certain = type(design)(arms=design.arms, ratio=design.ratio, factors=design.factors,
                           p_preferred=1.0, measure=design.measure)
    rng = random.Random(4)
    people = [{"site": rng.choice(["rush_chicago", "site_2"]),
               "interference": rng.choice(["moderate", "high"])} for _ in range(1000)]
    arms = [d.arm for d in replay(certain, seed_of("certain"), people)]
    figure = minimization_guessability("p=1", certain, list(zip(people, arms, strict=True)))
    print("\n" + figure.line())
    # Outside ties the preferred arm is certain, at ties the observer earns 1/2: no error.
    assert figure.observed == pytest.approx(figure.theory, abs=1e-12)
    assert figure.theory > 0.75
