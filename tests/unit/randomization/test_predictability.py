"""Guessability of permuted blocks and simple randomization against their theory."""

from __future__ import annotations

import random

import pytest

from services.randomization.domain import generate_list
from services.randomization.domain.design import ListDesign
from services.randomization.domain.predictability import (
    blackwell_hodges,
    convergence_guess,
    convergence_theory,
    guess_rate,
    per_block,
)
from services.randomization.domain.stream import new_seed


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
    slots = generate_list(design, new_seed(), 1500)
    rates = []
    for stratum in design.strata:
        modules = [s.module for s in slots if s.stratum == stratum.key]
        order = [m for m, _ in stratum.weights]
        guess = convergence_guess(order, [w for _, w in stratum.weights])
        rates.append(guess_rate(modules, guess))
    observed = sum(rates) / len(rates)
    theory = convergence_theory([2, 1, 1], list(design.block_lengths))
    print(f"\nPerPAIN modules (2:1:1, blocks 4/8/12): observer guesses {observed:.3f}, "
          f"theory {theory:.3f}; a guesser ignoring the past {0.5:.3f}")
    assert observed == pytest.approx(theory, abs=0.02)
