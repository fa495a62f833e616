"""How guessable an allocation method is to an observer who knows every past assignment.

The measure is the proportion of next assignments such an observer guesses correctly with
the best simple strategy for the method (Blackwell and Hodges' convergence strategy for
blocks: guess the arm furthest behind its share; for minimization: guess the arm the
imbalance scores prefer). An observer choosing among several equally good arms guesses one
of them at random, which counts as 1/k of a correct guess when the truth is among the k.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from math import comb, sqrt

from .minimization import Marginals, MinimizationDesign, imbalance_scores

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


def _block_correct(ratio: Sequence[int], length: int) -> dict[float, float]:
    """Distribution of the convergence observer's correct guesses (with 1/k credit at a
    k-way tie) over one shuffled block of `length` holding the exact ratio: every distinct
    arrangement is equally likely, so each next arm is drawn in proportion to what is left."""
    unit = sum(ratio)
    full = tuple(r * length // unit for r in ratio)

    @cache
    def rest(left: tuple[int, ...]) -> tuple[tuple[float, float], ...]:
        remaining = sum(left)
        if not remaining:
            return ((0.0, 1.0),)
        seen = [f - x for f, x in zip(full, left, strict=True)]
        n = sum(seen) + 1
        deficit = [r * n / unit - h for r, h in zip(ratio, seen, strict=True)]
        top = max(deficit)
        best = [i for i, d in enumerate(deficit) if top - d < 1e-9]
        out: dict[float, float] = {}
        for i, x in enumerate(left):
            if not x:
                continue
            credit = 1 / len(best) if i in best else 0.0
            for c, p in rest((*left[:i], x - 1, *left[i + 1:])):
                key = round(c + credit, 9)
                out[key] = out.get(key, 0.0) + x / remaining * p
        return tuple(out.items())

    return dict(rest(full))


def _check_blocks(ratio: Sequence[int], block_lengths: Sequence[int]) -> None:
    if any(n % sum(ratio) for n in block_lengths):
        raise ValueError("every block length must hold the exact ratio")


def convergence_theory(ratio: Sequence[int], block_lengths: Sequence[int]) -> float:
    """Expected correct-guess proportion of the convergence strategy for permuted blocks
    holding the exact ratio, each length drawn with equal chance; exact, by recursion over
    what is left of a block. Whole blocks end balanced, so an observer who cannot see the
    boundaries does exactly as well as one who can."""
    _check_blocks(ratio, block_lengths)
    expected = [sum(c * p for c, p in _block_correct(ratio, n).items()) for n in block_lengths]
    return sum(expected) / sum(block_lengths)


def minimization_guess_rate(design: MinimizationDesign,
                            allocations: Sequence[tuple[Mapping[str, str], str]]
                            ) -> tuple[float, float]:
    """(observed correct-guess proportion, share of decisions where every arm tied) for an
    observer who knows every earlier participant's levels and arm and the next one's
    levels, and guesses the arm(s) the imbalance scores prefer. `allocations` in order."""
    marginals = Marginals(design)
    guesses: list[tuple[str, ...]] = []
    for levels, arm in allocations:
        scores = imbalance_scores(design, marginals, levels)
        best = min(scores.values())
        guesses.append(tuple(a for a in design.arms if scores[a] - best < 1e-9))
        marginals.add(levels, arm)
    tied = sum(len(g) == len(design.arms) for g in guesses) / len(guesses)
    it = iter(guesses)
    return guess_rate([arm for _, arm in allocations], lambda _h: next(it)), tied


# Sampling error. The observed proportion of a finite sequence scatters around the theory;
# these bound its standard deviation from the sample size alone, so a tolerance of a few of
# them is a statistical statement, not a tuned constant.

def minimization_sd(n: int) -> float:
    """Each guess is right with a probability fixed by the past (p, or 1/k at a tie), so
    observed minus `minimization_theory` (with the observed tie share) is a mean of n
    martingale differences of variance at most 1/4."""
    return 0.5 / sqrt(n)


def blocks_sd(ratio: Sequence[int], block_lengths: Sequence[int], n: int) -> float:
    """Blocks are independent and alike: block b adds D_b = C_b − θ·L_b (C_b correct
    guesses of its L_b assignments, θ the theory), mean 0, whose variance the recursion
    gives exactly; n assignments hold about n / mean(L) blocks."""
    theta = convergence_theory(ratio, block_lengths)
    variance = sum(p * (c - theta * length) ** 2 for length in block_lengths
                   for c, p in _block_correct(ratio, length).items()) / len(block_lengths)
    blocks = n / (sum(block_lengths) / len(block_lengths))
    return sqrt(blocks * variance) / n


@dataclass(frozen=True)
class Guessability:
    """One method's figure: what the observer achieved on `n` assignments beside theory."""

    method: str
    n: int
    observed: float
    theory: float
    sd: float  # bound on the sampling standard deviation of `observed`
    blind: float  # what guessing the largest arm every time earns, knowing nothing

    def within(self, sds: float = 4.0) -> bool:
        return abs(self.observed - self.theory) <= sds * self.sd

    def line(self) -> str:
        return (f"{self.method}: an observer knowing every past assignment guesses "
                f"{self.observed:.3f} of {self.n} next assignments; theory {self.theory:.3f} "
                f"(sampling sd {self.sd:.3f}; knowing nothing of the past {self.blind:.3f})")


def blocks_guessability(method: str, ratio: Sequence[int], block_lengths: Sequence[int],
                        arms: Sequence[str], sequences: Sequence[Sequence[str]]) -> Guessability:
    """Convergence guessing within each stratum's sequence (arms in allocation order). An
    unfinished last block per stratum may shift the rate by at most its length over n,
    which is added to the sd bound's slack as one extra block each."""
    n = sum(len(s) for s in sequences)
    correct = sum(guess_rate(s, convergence_guess(arms, ratio)) * len(s) for s in sequences if s)
    slack = len(sequences) * max(block_lengths) / n / 4  # counted in sds (× 4 in `within`)
    return Guessability(method, n, correct / n, convergence_theory(ratio, block_lengths),
                        blocks_sd(ratio, block_lengths, n) + slack, max(ratio) / sum(ratio))


def minimization_guessability(method: str, design: MinimizationDesign,
                              allocations: Sequence[tuple[Mapping[str, str], str]]
                              ) -> Guessability:
    observed, tied = minimization_guess_rate(design, allocations)
    return Guessability(method, len(allocations), observed,
                        minimization_theory(design.p_preferred, tied, len(design.arms)),
                        minimization_sd(len(allocations)),
                        max(design.ratio) / sum(design.ratio))
