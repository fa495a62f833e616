"""Reference cohort rows (item level or scale level, with age and sex) → feature matrix.

Item-level rows are scored like a participant's baseline; a row whose baseline is
unscorable or lacks age or sex is left out and reported (prior data often has gaps).
A value that is present but invalid stops training: the team must correct the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import AllocationError, TrainingDataError, UnscorableBaseline
from .scoring import ITEM_KEYS, SCALE_KEYS, check_scale_scores, score_mpid

FEATURES: tuple[str, ...] = (*SCALE_KEYS, "age", "sex")
REFERENCE_LABEL_COLUMN = "synthetic_cluster"


@dataclass(frozen=True)
class ExcludedRow:
    row: int  # 1-based data row number (the CSV header is row 0)
    reason: str


@dataclass(frozen=True)
class ReferenceCohort:
    features: np.ndarray  # (patients, len(FEATURES)), float64
    level: str  # "item" or "scale"
    excluded: tuple[ExcludedRow, ...]
    reference_labels: tuple[str, ...] | None  # synthetic_cluster of the kept rows, if given

    @property
    def sha256(self) -> str:
        """Hash of the feature matrix the model is trained on (independent of CSV layout)."""
        digest = hashlib.sha256(",".join(FEATURES).encode())
        digest.update(np.ascontiguousarray(self.features, dtype="<f8").tobytes())
        return digest.hexdigest()


def cohort_from_rows(
    rows: Sequence[Mapping[str, object]],
    *,
    item_prefix: str,
    age_column: str = "age",
    sex_column: str = "sex",
) -> ReferenceCohort:
    """Score and check every row; raises `TrainingDataError` naming row and column."""
    if not rows:
        raise TrainingDataError("the reference data has no rows", field="rows")
    level = _level(rows[0].keys(), item_prefix)
    kept: list[list[float]] = []
    labels: list[str] = []
    excluded: list[ExcludedRow] = []
    for number, row in enumerate(rows, start=1):
        try:
            if level == "item":
                scales = score_mpid(row, item_prefix=item_prefix)
            else:
                scales = check_scale_scores(row)
            age = _covariate(row, age_column, number, lambda v: 0 < v <= 120)
            sex = _covariate(row, sex_column, number, lambda v: v in (0, 1))
        except UnscorableBaseline as err:
            excluded.append(ExcludedRow(number, str(err)))
            continue
        except _Missing as missing:
            excluded.append(ExcludedRow(number, f"{missing.column} is missing"))
            continue
        except TrainingDataError:
            raise
        except AllocationError as err:
            raise TrainingDataError(f"row {number}: {err}", field=err.field) from err
        kept.append([*scales.values(), age, sex])
        labels.append(str(row.get(REFERENCE_LABEL_COLUMN) or ""))
    features = np.array(kept, dtype=np.float64).reshape(len(kept), len(FEATURES))
    return ReferenceCohort(
        features=features,
        level=level,
        excluded=tuple(excluded),
        reference_labels=tuple(labels) if kept and all(labels) else None,
    )


def _level(columns: object, item_prefix: str) -> str:
    names = set(columns)  # type: ignore[call-overload]
    if any(item_prefix + i in names for i in ITEM_KEYS):
        return "item"
    if all(s in names for s in SCALE_KEYS):
        return "scale"
    raise TrainingDataError(
        f"columns: need MPI-D item columns ({item_prefix}1_1 … {item_prefix}3_18) or the "
        f"nine scale columns ({', '.join(SCALE_KEYS)})", field="columns")


class _Missing(Exception):
    def __init__(self, column: str) -> None:
        self.column = column


def _covariate(
    row: Mapping[str, object], column: str, number: int, valid: Callable[[float], bool],
) -> float:
    raw = row.get(column)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise _Missing(column)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not valid(value):
        raise TrainingDataError(f"row {number}: {column} = {raw!r} is not usable", field=column)
    return value
