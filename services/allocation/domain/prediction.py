"""Predicting a participant's cluster from their MPI-D baseline, age and sex.

The cluster is always the most likely one; when its probability is under the
protocol's threshold the prediction is flagged for review (it still stands).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from services.core.protocol.allocation import AllocationRules, Norm

from .artifact import ClusterModel
from .cohort import FEATURES
from .errors import InvalidCovariate
from .scoring import SCALE_KEYS, check_scale_scores, score_mpid

AGE_LIMITS = (0.0, 120.0)  # plausibility only; eligibility is the trial's business
_SKLEARN_FROM_ROWS = 256


@dataclass(frozen=True)
class Prediction:
    scales: dict[str, float]
    t_scores: dict[str, float]
    probabilities: dict[str, float]  # in the protocol's cluster order
    cluster: str
    model_version: str
    low_confidence: bool

    @property
    def top_probability(self) -> float:
        return self.probabilities[self.cluster]


def t_scores(scales: Mapping[str, float], norms: Mapping[str, Norm]) -> dict[str, float]:
    """T = 50 + 10 · (scale − reference mean) / reference SD."""
    return {k: 50 + 10 * (scales[k] - norms[k].mean) / norms[k].sd for k in SCALE_KEYS}


def check_age(raw: object, field: str = "age") -> float:
    try:
        age = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        age = float("nan")
    if isinstance(raw, bool) or not AGE_LIMITS[0] < age <= AGE_LIMITS[1]:
        raise InvalidCovariate(f"{field}: {raw!r} is not an age in years", field=field)
    return age


def check_sex(raw: object, field: str = "sex") -> int:
    """The classifier's coding: 1 = female, 0 = male."""
    if isinstance(raw, bool) or raw not in (0, 1):
        raise InvalidCovariate(f"{field}: {raw!r} is not 1 (female) or 0 (male)", field=field)
    return int(raw)  # type: ignore[call-overload]


def sex_from_redcap(raw: object, codes: Mapping[str, int], field: str) -> int:
    """A REDCap choice code (e.g. "1"/"2") → 1 = female, 0 = male, via the protocol's codes."""
    code = str(raw).strip() if raw is not None else ""
    if code not in codes:
        raise InvalidCovariate(
            f"{field}: {raw!r} is none of the protocol's codes {sorted(codes)}", field=field)
    return check_sex(codes[code], field)


class ClusterPredictor:
    """A verified model plus the protocol's norms and threshold; safe to share."""

    def __init__(self, model: ClusterModel, *, norms: Mapping[str, Norm],
                 low_confidence_threshold: float) -> None:
        self.model = model
        self.norms = dict(norms)
        self.threshold = low_confidence_threshold

    @classmethod
    def from_rules(cls, model: ClusterModel, rules: AllocationRules) -> ClusterPredictor:
        return cls(model, norms=rules.reference_norms,
                   low_confidence_threshold=rules.low_confidence_threshold)

    def predict_items(
        self, answers: Mapping[str, object], *, age: object, sex: object,
        item_prefix: str = "", age_field: str = "age", sex_field: str = "sex",
    ) -> Prediction:
        """From item answers keyed `item_prefix + item` (e.g. REDCap's `mpid_1_6`).

        Raises `InvalidAnswer`, `UnscorableBaseline` or `InvalidCovariate`.
        """
        scales = score_mpid(answers, item_prefix=item_prefix)
        return self._predict(scales, check_age(age, age_field), check_sex(sex, sex_field))

    def predict_scales(self, scales: Mapping[str, object], *, age: object, sex: object
                       ) -> Prediction:
        """From the nine scale scores; raises `InvalidScaleScore` or `InvalidCovariate`."""
        return self._predict(check_scale_scores(scales), check_age(age), check_sex(sex))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Batch: rows in FEATURES order (already validated) → (rows, clusters)."""
        if features.ndim != 2 or features.shape[1] != len(FEATURES):
            raise ValueError(f"features must have the columns {FEATURES}")
        if features.shape[0] < _SKLEARN_FROM_ROWS:
            return self.model.flat.predict_proba(features)
        # Large batches: scikit-learn's per-tree loop is cheaper once spread over many rows.
        return np.asarray(self.model.forest.predict_proba(features))

    def _predict(self, scales: dict[str, float], age: float, sex: int) -> Prediction:
        row = np.array([[*(scales[k] for k in SCALE_KEYS), age, sex]])
        proba = self.model.flat.predict_proba(row)[0]
        clusters = self.model.clusters
        best = int(np.argmax(proba))
        return Prediction(
            scales=scales,
            t_scores=t_scores(scales, self.norms),
            probabilities={c: float(p) for c, p in zip(clusters, proba, strict=True)},
            cluster=clusters[best],
            model_version=self.model.version,
            low_confidence=bool(proba[best] < self.threshold),
        )
