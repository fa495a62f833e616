"""How guessable an allocation method is to an observer who knows every past assignment.

The measure is the proportion of next assignments such an observer guesses correctly with
the best simple strategy for the method (Blackwell and Hodges' convergence strategy for
blocks: guess the arm furthest behind its share; for minimization: guess the arm the
imbalance scores prefer). An observer choosing among several equally good arms guesses one
of them at random, which counts as 1/k of a correct guess when the truth is among the k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from math import comb

Guess = Callable[[Sequence[str]], Sequence[str]]  # history → equally good guesses


def guess_rate(assignments: Sequence[str], guess: Guess) -> float:
    """Expected proportion of correct guesses over a sequence, guessing before each one."""
    if not assignments:
        raise ValueError("no assignments to guess")
    correct = 0.0
    for i, actual in enumerate(assignments):
        candidates = guess(assignments[:i])
        if actual in candidates:
            correct += 1 / len(candidates)
    return correct / len(assignments)


def convergence_guess(arms: Sequence[str], ratio: Sequence[int]) -> Guess:
    """Guess the arm(s) furthest behind their ratio share of the history seen so far."""
    total = sum(ratio)

    def guess(history: Sequence[str]) -> Sequence[str]:
        n = len(history) + 1
        deficit = {a: r * n / total - history.count(a) for a, r in zip(arms, ratio, strict=True)}
        top = max(deficit.values())
        return [a for a in arms if top - deficit[a] < 1e-9]

    return guess


def per_block(guess: Guess, block_lengths: Sequence[int]) -> Guess:
    """An observer who also knows where each block starts: the guess restarts per block."""
    starts = [0]
    for n in block_lengths:
        starts.append(starts[-1] + n)

    def within(history: Sequence[str]) -> Sequence[str]:
        start = max(s for s in starts if s <= len(history))
        return guess(history[start:])

    return within


def blackwell_hodges(block_length: int) -> float:
    """Expected correct-guess proportion for 1:1 blocks of a known length (convergence)."""
    if block_length % 2 or block_length <= 0:
        raise ValueError("a 1:1 block has an even, positive length")
    m = block_length // 2
    return (m + 2 ** (2 * m) / (2 * comb(2 * m, m)) - 0.5) / block_length


def minimization_theory(p_preferred: float, tied_fraction: float, arms: int) -> float:
    """Expected correct guesses for two-arm 1:1 minimization: the observer guesses the
    preferred arm, right with probability p; where every arm ties the draw is fair."""
    return (1 - tied_fraction) * p_preferred + tied_fraction / arms


def convergence_theory(ratio: Sequence[int], block_lengths: Sequence[int]) -> float:
    """Expected correct-guess proportion of the convergence strategy for permuted blocks
    holding the exact ratio, each length drawn with equal chance; exact, by recursion over
    what is left of a block. Whole blocks end balanced, so an observer who cannot see the
    boundaries does exactly as well as one who can."""
    unit = sum(ratio)

    def expected_correct(length: int) -> float:
        full = tuple(r * length // unit for r in ratio)

        @cache
        def rest(left: tuple[int, ...]) -> float:
            remaining = sum(left)
            if not remaining:
                return 0.0
            seen = [f - x for f, x in zip(full, left, strict=True)]
            n = sum(seen) + 1
            deficit = [r * n / unit - h for r, h in zip(ratio, seen, strict=True)]
            top = max(deficit)
            best = [i for i, d in enumerate(deficit) if top - d < 1e-9]
            value = sum(left[i] / remaining for i in best) / len(best)
            for i, x in enumerate(left):
                if x:
                    value += x / remaining * rest((*left[:i], x - 1, *left[i + 1:]))
            return value

        return rest(full)

    if any(n % unit for n in block_lengths):
        raise ValueError("every block length must hold the exact ratio")
    return sum(expected_correct(n) for n in block_lengths) / sum(block_lengths)
