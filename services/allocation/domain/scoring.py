"""MPI-D scoring: 51 item answers (0-6) → the nine scale means.

Scoring as the PerPAIN consortium does it: each scale is the mean of its answered
items; item 1_6 is reverse-keyed (6 − answer); −99 means "not applicable" and is
allowed only for items 1_14 and 3_11, where it is left out of the mean; general
activity is the mean of three sub-means. Missing-data limits follow the English WHYMPI
scoring: a scale is unscorable when too many items are skipped (interference: 3 or more;
3–6-item scales: 2 or more; general activity: 5 or more of 18). A "not applicable"
answer is an answer, not a skip; a sub-scale left with no usable answer is unscorable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real

from .errors import InvalidAnswer, InvalidScaleScore, UnscorableBaseline, UnscorableScale

ITEM_MIN, ITEM_MAX = 0, 6
NOT_APPLICABLE = -99
NOT_APPLICABLE_ITEMS = frozenset({"1_14", "3_11"})
REVERSED_ITEMS = frozenset({"1_6"})
ITEM_KEYS: tuple[str, ...] = (
    *(f"1_{i}" for i in range(1, 23)),
    *(f"2_{i}" for i in range(1, 12)),
    *(f"3_{i}" for i in range(1, 19)),
)


@dataclass(frozen=True)
class Scale:
    key: str
    label: str
    parts: tuple[tuple[str, ...], ...]  # one part, or the sub-scales whose means are averaged
    max_skipped: int  # more skipped items than this make the scale unscorable

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(i for part in self.parts for i in part)


def _items(part: int, *numbers: int) -> tuple[str, ...]:
    return tuple(f"{part}_{n}" for n in numbers)


# Feature order of the classifier: keep in step with services.core.protocol.SCALE_KEYS.
SCALES: dict[str, Scale] = {s.key: s for s in (
    Scale("PS", "pain severity", (_items(1, 1, 7, 12),), 1),
    Scale("I", "interference", (_items(1, 2, 3, 4, 8, 9, 13, 14, 17, 19, 21),), 2),
    Scale("LC", "life control", (_items(1, 11, 16, 18),), 1),
    Scale("AD", "affective distress", (_items(1, 6, 20, 22),), 1),
    Scale("S", "support", (_items(1, 5, 10, 15),), 1),
    Scale("PR", "punishing responses", (_items(2, 2, 5, 8),), 1),
    Scale("SR", "solicitous responses", (_items(2, 1, 3, 6, 10, 11),), 1),
    Scale("DR", "distracting responses", (_items(2, 4, 7, 9),), 1),
    Scale("GA", "general activity", (
        _items(3, 3, 6, 7, 12, 13, 16, 17, 18),
        _items(3, 1, 4, 8, 10, 14),
        _items(3, 2, 5, 9, 11, 15),
    ), 4),
)}
SCALE_KEYS: tuple[str, ...] = tuple(SCALES)


def parse_item(raw: object, field: str, item: str) -> int | None:
    """One answer as an int 0-6, NOT_APPLICABLE, or None when skipped (absent or blank)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    value = _as_integer(raw)
    if value is None:
        raise InvalidAnswer(f"{field}: {raw!r} is not a whole number from 0 to 6", field=field)
    if value == NOT_APPLICABLE:
        if item in NOT_APPLICABLE_ITEMS:
            return NOT_APPLICABLE
        raise InvalidAnswer(
            f"{field}: -99 (not applicable) is allowed only for items "
            f"{', '.join(sorted(NOT_APPLICABLE_ITEMS))}", field=field)
    if not ITEM_MIN <= value <= ITEM_MAX:
        raise InvalidAnswer(f"{field}: {value} is outside 0-6", field=field)
    return value


def _as_integer(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None  # True/False are not answers, even though Python counts them as ints
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            return None
    if isinstance(raw, Real) and math.isfinite(value := float(raw)) and value.is_integer():
        return int(value)
    return None


def _score_scale(scale: Scale, answers: Mapping[str, int | None]) -> float | str:
    """The scale mean, or the reason it is unscorable."""
    skipped = sum(answers[i] is None for i in scale.items)
    if skipped > scale.max_skipped:
        return (f"{skipped} of {len(scale.items)} items skipped "
                f"(at most {scale.max_skipped} allowed)")
    means = []
    for part in scale.parts:
        values = [_keyed(i, v) for i in part if (v := answers[i]) is not None
                  and v != NOT_APPLICABLE]
        if not values:
            return f"no usable answer among items {', '.join(part)}"
        means.append(sum(values) / len(values))
    return sum(means) / len(means)


def _keyed(item: str, value: int) -> int:
    return ITEM_MAX - value if item in REVERSED_ITEMS else value


def score_mpid(answers: Mapping[str, object], *, item_prefix: str = "") -> dict[str, float]:
    """The nine scale means (in SCALE_KEYS order) from item answers.

    `answers` is keyed by item field name: `item_prefix` + item key (e.g. `mpid_1_6`
    with prefix `mpid_`); other keys are ignored. Raises `InvalidAnswer` naming the
    first bad field, or `UnscorableBaseline` naming every unscorable scale.
    """
    parsed = {i: parse_item(answers.get(item_prefix + i), item_prefix + i, i) for i in ITEM_KEYS}
    scores: dict[str, float] = {}
    problems: list[UnscorableScale] = []
    for scale in SCALES.values():
        result = _score_scale(scale, parsed)
        if isinstance(result, str):
            problems.append(UnscorableScale(scale.key, result))
        else:
            scores[scale.key] = result
    if problems:
        raise UnscorableBaseline(tuple(problems))
    return scores


def check_scale_scores(scales: Mapping[str, object]) -> dict[str, float]:
    """Scale scores given directly, validated: all nine, each a number within 0-6."""
    checked: dict[str, float] = {}
    for key in SCALE_KEYS:
        raw = scales.get(key)
        value = _as_float(raw)
        if value is None or not ITEM_MIN <= value <= ITEM_MAX:
            shown = "missing" if raw is None else f"{raw!r} is not a number from 0 to 6"
            raise InvalidScaleScore(f"scale {key}: {shown}", field=key)
        checked[key] = value
    return checked


def _as_float(raw: object) -> float | None:
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
