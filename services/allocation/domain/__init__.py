"""Pure allocation domain: MPI-D scoring, cluster model training, artifacts, prediction.

No database, no HTTP, no bus. Trial specifics (clusters, norms, thresholds, profile
rules, training settings) come in as arguments, from the protocol's `allocation` section.
"""

from .artifact import (
    MANIFEST_NAME,
    MODEL_CARD_NAME,
    TRUSTED_TYPES,
    ClusterModel,
    load_model,
    read_model,
    serialize_forest,
    sha256_hex,
)
from .cohort import FEATURES, ExcludedRow, ReferenceCohort, cohort_from_rows
from .errors import (
    AllocationError,
    AmbiguousClusterNaming,
    ArtifactIntegrityError,
    InvalidAnswer,
    InvalidCovariate,
    InvalidScaleScore,
    ModelArtifactError,
    TrainingDataError,
    UnscorableBaseline,
    UnscorableScale,
)
from .naming import name_components
from .prediction import (
    ClusterPredictor,
    Prediction,
    check_age,
    check_sex,
    sex_from_redcap,
    t_scores,
)
from .publish import TrainingSource, build_manifest, write_model
from .scoring import ITEM_KEYS, SCALE_KEYS, SCALES, check_scale_scores, score_mpid
from .synthetic import synthesize_reference, within_cluster_sd
from .training import TrainedModel, TrainingMetrics, train_cluster_model

__all__ = [
    "FEATURES", "ITEM_KEYS", "MANIFEST_NAME", "MODEL_CARD_NAME", "SCALES", "SCALE_KEYS",
    "TRUSTED_TYPES", "AllocationError", "AmbiguousClusterNaming", "ArtifactIntegrityError",
    "ClusterModel", "ClusterPredictor", "ExcludedRow", "InvalidAnswer", "InvalidCovariate",
    "InvalidScaleScore", "ModelArtifactError", "Prediction", "ReferenceCohort",
    "TrainedModel", "TrainingDataError", "TrainingMetrics", "TrainingSource",
    "UnscorableBaseline", "UnscorableScale", "build_manifest", "check_age",
    "check_scale_scores", "check_sex", "cohort_from_rows", "load_model", "name_components",
    "read_model", "score_mpid", "serialize_forest", "sex_from_redcap", "sha256_hex",
    "synthesize_reference", "t_scores", "train_cluster_model", "within_cluster_sd",
    "write_model",
]
