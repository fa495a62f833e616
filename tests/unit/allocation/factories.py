"""Test data builders for MPI-D answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from services.allocation.domain import ITEM_KEYS

# Published centroids on the raw 0-6 scale means (trial-protocol.md), independent of the YAML.
CENTROIDS = {
    "DYS": (4.42, 4.32, 3.20, 3.72, 4.45, 1.22, 3.78, 3.43, 2.28),
    "ID": (3.38, 3.03, 3.33, 3.28, 1.53, 1.51, 1.14, 1.08, 2.47),
    "AC": (2.61, 1.96, 4.76, 1.76, 3.50, 0.45, 2.97, 2.59, 2.75),
}


def answers(value: object = 3, overrides: Mapping[str, object] | None = None, *,
            skip: Iterable[str] = (), prefix: str = "") -> dict[str, object]:
    """Every MPI-D item answered `value`, then `overrides`; `skip`ped items left out."""
    items: dict[str, object] = {i: value for i in ITEM_KEYS}
    items.update(overrides or {})
    for item in skip:
        del items[item]
    return {prefix + k: v for k, v in items.items()}
