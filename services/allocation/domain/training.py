"""Training the cluster model: soft k-means reference clusters, then a random forest.

1. Soft k-means (k = number of clusters) on the nine scales standardized by the
   cohort's own means and SDs: EM for spherical Gaussians, scikit-learn's
   `GaussianMixture(covariance_type="spherical")`, several initialisations, fixed seed.
2. The components are named after the protocol's clusters by its profile rules
   (see `naming`); each patient's label is their most likely component.
3. A random forest on the nine scales + age + sex learns those labels; it is what
   predicts new participants. Out-of-bag accuracy, stratified cross-validated
   accuracy and the cross-validated confusion matrix describe how well.

Labels are integers indexing the protocol's cluster order, so the saved forest holds
only numbers (class names live in the manifest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from services.core.protocol.allocation import ClusterProfile, TrainingSettings

from .cohort import FEATURES
from .errors import TrainingDataError
from .naming import name_components
from .scoring import SCALE_KEYS

if TYPE_CHECKING:  # scikit-learn loads only when a model is trained
    from sklearn.ensemble import RandomForestClassifier

_N_SCALES = len(SCALE_KEYS)


@dataclass(frozen=True)
class ReferenceClusters:
    labels: np.ndarray  # per patient: index into the cluster order
    memberships: np.ndarray  # (patients, clusters) soft k-means responsibilities
    profiles: dict[str, dict[str, float]]  # cluster → scale → mean on the raw 0-6 scale
    converged: bool


@dataclass(frozen=True)
class TrainingMetrics:
    oob_accuracy: float
    cv_accuracy: float
    cv_fold_accuracies: tuple[float, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]  # rows: clustered as, columns: predicted as
    cluster_sizes: dict[str, int]
    feature_importances: dict[str, float]
    synthetic_cluster_agreement: float | None = None


@dataclass(frozen=True)
class TrainedModel:
    forest: RandomForestClassifier
    clusters: tuple[str, ...]
    reference: ReferenceClusters
    metrics: TrainingMetrics
    settings: TrainingSettings


def find_reference_clusters(
    scales: np.ndarray,
    *,
    clusters: Sequence[str],
    rules: Mapping[str, ClusterProfile],
    settings: TrainingSettings,
) -> ReferenceClusters:
    """Soft k-means on the standardized scales, components named after `clusters`."""
    mean, sd = scales.mean(axis=0), scales.std(axis=0)
    if np.any(sd == 0):
        flat = [SCALE_KEYS[i] for i in np.flatnonzero(sd == 0)]
        raise TrainingDataError(f"scales {flat} do not vary in the reference data", field=flat[0])
    z = (scales - mean) / sd
    from sklearn.mixture import GaussianMixture

    mixture = GaussianMixture(
        n_components=len(clusters), covariance_type="spherical",
        n_init=settings.mixture_inits, max_iter=1000, random_state=settings.seed,
    ).fit(z)
    order = name_components(mixture.means_, rules, clusters=clusters,
                            margin=settings.naming_margin_sd)
    memberships = mixture.predict_proba(z)[:, order]
    raw = mixture.means_[order] * sd + mean
    return ReferenceClusters(
        labels=memberships.argmax(axis=1),
        memberships=memberships,
        profiles={c: dict(zip(SCALE_KEYS, map(float, raw[i]), strict=True))
                  for i, c in enumerate(clusters)},
        converged=bool(mixture.converged_),
    )


def new_forest(settings: TrainingSettings, *, oob: bool = False) -> RandomForestClassifier:
    from sklearn.ensemble import RandomForestClassifier

    # n_jobs=1: deterministic and cheap for the few hundred patients a reference holds.
    return RandomForestClassifier(
        n_estimators=settings.trees, min_samples_leaf=settings.min_samples_leaf,
        oob_score=oob, random_state=settings.seed, n_jobs=1)


def train_cluster_model(
    features: np.ndarray,
    *,
    clusters: Sequence[str],
    rules: Mapping[str, ClusterProfile],
    settings: TrainingSettings,
    synthetic_clusters: Sequence[str] | None = None,
) -> TrainedModel:
    """Cluster the reference cohort and fit the forest; `features` in FEATURES order."""
    if features.ndim != 2 or features.shape[1] != len(FEATURES):
        raise TrainingDataError(f"features must have the columns {FEATURES}", field="features")
    reference = find_reference_clusters(
        features[:, :_N_SCALES], clusters=clusters, rules=rules, settings=settings)
    sizes = np.bincount(reference.labels, minlength=len(clusters))
    if sizes.min() < settings.cv_folds:
        raise TrainingDataError(
            f"cluster sizes {dict(zip(clusters, sizes.tolist(), strict=True))}: every cluster "
            f"needs at least {settings.cv_folds} patients for {settings.cv_folds}-fold "
            "cross-validation", field="rows")
    forest = new_forest(settings, oob=True).fit(features, reference.labels)
    metrics = _evaluate(forest, features, reference.labels, clusters, settings)
    if synthetic_clusters is not None:
        drawn = np.array([list(clusters).index(c) for c in synthetic_clusters])
        metrics = _with_agreement(metrics, float(np.mean(drawn == reference.labels)))
    return TrainedModel(forest, tuple(clusters), reference, metrics, settings)


def _evaluate(
    forest: RandomForestClassifier, x: np.ndarray, y: np.ndarray,
    clusters: Sequence[str], settings: TrainingSettings,
) -> TrainingMetrics:
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = StratifiedKFold(settings.cv_folds, shuffle=True, random_state=settings.seed)
    predicted = cross_val_predict(new_forest(settings), x, y, cv=folds)
    fold_accuracy = tuple(float(np.mean(predicted[test] == y[test]))
                          for _, test in folds.split(x, y))
    matrix = confusion_matrix(y, predicted, labels=range(len(clusters)))
    return TrainingMetrics(
        oob_accuracy=float(forest.oob_score_),
        cv_accuracy=float(np.mean(predicted == y)),
        cv_fold_accuracies=fold_accuracy,
        confusion_matrix=tuple(tuple(int(v) for v in r) for r in matrix),
        cluster_sizes={c: int(n) for c, n in zip(clusters, np.bincount(y, minlength=len(clusters)),
                                                 strict=True)},
        feature_importances={f: float(v) for f, v in
                             zip(FEATURES, forest.feature_importances_, strict=True)},
    )


def _with_agreement(metrics: TrainingMetrics, agreement: float) -> TrainingMetrics:
    return replace(metrics, synthetic_cluster_agreement=agreement)
