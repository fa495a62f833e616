"""Unpredictability per randomization method: the proportion of next assignments an observer
who knows every past assignment guesses correctly, beside the method's theoretical value.

Run: `.venv/bin/python bench/predictability.py [--n 5000] [--seed 1]`

Not a speed figure: a statistical one, seeded and so repeatable. For each method the sealed
list (or the sealed minimization draws) is made as the service makes it, from the shipped
protocol files, and the observer plays the best simple strategy for it (Blackwell and
Hodges' convergence guess for blocks, the arm the imbalance scores prefer for
minimization). Each line gives the observed rate, the theory and the sampling standard
deviation bounded from the sample size (services/randomization/domain/predictability.py).
Simple randomization (a fair coin per participant) is the reference: 0.5 whatever the past.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.core.protocol import load_protocol  # noqa: E402
from services.randomization.domain import design_from_protocol, generate_list  # noqa: E402
from services.randomization.domain.baseline import levels_of  # noqa: E402
from services.randomization.domain.minimization import replay  # noqa: E402
from services.randomization.domain.predictability import (  # noqa: E402
    Guessability,
    blocks_guessability,
    convergence_guess,
    guess_rate,
    minimization_guessability,
    minimization_sd,
)
from sim.seed_cohort import make_seed_cohort  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "protocols"


def _seed(label: str, seed: int) -> bytes:
    return hashlib.sha256(f"bench predictability {label} {seed}".encode()).digest()


def blocks(name: str, n: int, seed: int) -> Guessability:
    protocol = load_protocol(ROOT / f"{name}.yaml")
    design = design_from_protocol(protocol)
    per_stratum = n // len(design.strata)
    slots = generate_list(design, _seed(name, seed), per_stratum)
    first = design.strata[0]
    roles = [m for m, _ in first.weights]
    sequences = []
    for st in design.strata:  # modules named by their role in the stratum (matching first)
        role = {m: roles[i] for i, (m, _) in enumerate(st.weights)}
        sequences.append([role[s.module] for s in slots if s.stratum == st.key][:per_stratum])
    return blocks_guessability(f"{name} ({protocol.randomization.method}, blocks "
                               f"{'/'.join(map(str, design.block_lengths))})",
                               [w for _, w in first.weights], design.block_lengths, roles,
                               sequences)


def minimization(name: str, n: int, seed: int) -> Guessability:
    protocol = load_protocol(ROOT / f"{name}.yaml")
    design = design_from_protocol(protocol).minimization
    assert design is not None
    people = [levels_of(protocol, dict(p.forms)["screening"])
              for p in make_seed_cohort(protocol, eligible=n + 1, ineligible=0, seed=seed)
              if p.expects_allocation]
    arms = [d.arm for d in replay(design, _seed(name, seed), people)]
    return minimization_guessability(f"{name} (minimization, p={design.p_preferred:g})",
                                     design, list(zip(people, arms, strict=True)))


def simple(n: int, seed: int) -> Guessability:
    rng = random.Random(seed)
    sequence = [rng.choice("AB") for _ in range(n)]
    observed = guess_rate(sequence, convergence_guess(["A", "B"], [1, 1]))
    return Guessability("simple randomization (reference)", n, observed, 0.5,
                        minimization_sd(n), 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="assignments per method")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    figures = [blocks("perpain-pilot", args.n, args.seed),
               blocks("partners4pain", args.n, args.seed),
               minimization("rush-mechanisms", args.n, args.seed),
               simple(args.n, args.seed)]
    print(f"{'method':58} {'n':>6} {'observed':>9} {'theory':>7} {'sd':>6} {'off/sd':>7}")
    for g in figures:
        print(f"{g.method:58} {g.n:6d} {g.observed:9.3f} {g.theory:7.3f} {g.sd:6.3f} "
              f"{(g.observed - g.theory) / g.sd:+7.2f}")
    return 0 if all(g.within() for g in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
