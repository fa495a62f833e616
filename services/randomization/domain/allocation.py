"""Pure helpers around allocation: which stratum, pilot participants, balance, low strata.

Taking the next free slot atomically is the repository's job; these functions only decide
and summarise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from .design import ListDesign
from .errors import NotInDesignError


def stratum_of(design: ListDesign, cluster: str, site: str | None = None) -> str:
    """The stratum key a participant of `cluster` (at `site`) is allocated from."""
    return design.stratum_for(cluster, site).key


def pilot_module(design: ListDesign, cluster: str) -> str:
    """A pilot (quality-assurance) participant gets the matching module and uses no slot."""
    return design.matching_module(cluster)


class Allocation(NamedTuple):
    """One participant's allocation, as the balance reports read it (the arm follows)."""

    module: str
    stratum: str | None = None  # None only for pilot participants
    pilot: bool = False


@dataclass(frozen=True)
class StratumBalance:
    """Unblinded: counts of one stratum by module and by arm, and what the ratio expects."""

    stratum: str
    allocated: int
    by_module: dict[str, int]
    by_arm: dict[str, int]
    expected_by_module: dict[str, float]


@dataclass(frozen=True)
class ModuleBalance:
    """Blinded: how many participants a module has, over all strata."""

    module: str
    allocated: int


def _randomized(allocations: Iterable[Allocation]) -> list[Allocation]:
    return [a for a in allocations if not a.pilot]


def stratum_balance(design: ListDesign,
                    allocations: Iterable[Allocation]) -> list[StratumBalance]:
    """Every stratum of the design, in canonical order; pilot participants left out."""
    counts = {s.key: ({m: 0 for m in s.modules}, {a: 0 for a in design.arms})
              for s in design.strata}
    for a in _randomized(allocations):
        if a.stratum not in counts:
            raise NotInDesignError(f"allocation to {a.stratum!r}, not a stratum of the list",
                                      field="stratum")
        by_module, by_arm = counts[a.stratum]
        if a.module not in by_module:
            raise NotInDesignError(f"allocation to {a.module!r}, not a module",
                                      field="module")
        by_module[a.module] += 1
        by_arm[design.stratum(a.stratum).arm_of(a.module)] += 1  # arm follows from both
    report = []
    for s in design.strata:
        by_module, by_arm = counts[s.key]
        n = sum(by_module.values())
        expected = {m: n * w / s.unit for m, w in s.weights}
        report.append(StratumBalance(s.key, n, by_module, by_arm, expected))
    return report


def module_balance(design: ListDesign, allocations: Iterable[Allocation]) -> list[ModuleBalance]:
    """Per module, in protocol order; carries neither arm nor stratum (safe for blinded roles)."""
    counts = dict.fromkeys(design.modules, 0)
    for a in _randomized(allocations):
        if a.module not in counts:
            raise NotInDesignError(f"allocation to {a.module!r}, not a module",
                                      field="module")
        counts[a.module] += 1
    return [ModuleBalance(m, n) for m, n in counts.items()]


def strata_running_low(design: ListDesign, free_slots: Mapping[str, int]) -> list[str]:
    """Strata with fewer free slots than the protocol's threshold (absent = none free)."""
    return [key for key in design.stratum_keys
            if free_slots.get(key, 0) < design.low_slots_threshold]


def low_check_due(used: int, used_at_last_check: int, batch: int) -> bool:
    """Whether the strata may be looked at again for the low-slot alarm: only once a whole
    batch of slots was used since the last look, so whatever the look finds (an alarm, a
    flag, a count) follows at least `batch` allocations, never one."""
    return used - used_at_last_check >= batch
