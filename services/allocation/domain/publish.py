"""Publishing a trained model: artifact, manifest and model card, side by side.

The manifest is what a reviewer and the service read: the artifact's SHA-256, the
hash of the training data, feature order, class names, seed and settings, metrics,
the cluster profiles and the library versions the artifact was made with (the
artifact's bytes are reproducible only with the same versions).
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .artifact import FORMAT, MANIFEST_NAME, MODEL_CARD_NAME, serialize_forest, sha256_hex
from .cohort import FEATURES, ReferenceCohort
from .model_card import render_model_card
from .training import TrainedModel

_LIBRARIES = ("numpy", "scipy", "scikit-learn", "skops")


@dataclass(frozen=True)
class TrainingSource:
    """Where the training rows came from, as recorded in the manifest."""

    file_name: str
    file_sha256: str
    synthetic: bool


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{lib: version(lib) for lib in _LIBRARIES}}


def build_manifest(
    trained: TrainedModel, cohort: ReferenceCohort, source: TrainingSource, *,
    model_name: str, artifact_file: str, artifact: bytes,
) -> dict[str, Any]:
    sha = sha256_hex(artifact)
    return {
        "format": FORMAT,
        "model_version": f"{model_name}@{sha[:12]}",
        "synthetic": source.synthetic,
        "artifact": {"file": artifact_file, "sha256": sha, "bytes": len(artifact)},
        "training_data": {
            "source": source.file_name,
            "source_sha256": source.file_sha256,
            "synthetic": source.synthetic,
            "level": cohort.level,
            "rows": int(cohort.features.shape[0]),
            "excluded_rows": [asdict(e) for e in cohort.excluded],
            "features_sha256": cohort.sha256,
        },
        "features": list(FEATURES),
        "classes": list(trained.clusters),
        "seed": trained.settings.seed,
        "settings": trained.settings.model_dump(),
        "metrics": asdict(trained.metrics),
        "reference_clusters": {
            "method": "soft k-means (spherical Gaussian mixture) on standardized scales",
            "converged": trained.reference.converged,
            "profiles": trained.reference.profiles,
        },
        "library_versions": library_versions(),
    }


def write_model(
    directory: Path, trained: TrainedModel, cohort: ReferenceCohort, source: TrainingSource, *,
    model_name: str, artifact_file: str,
) -> dict[str, Any]:
    """Write artifact, manifest.json and MODEL_CARD.md into `directory`; return the manifest."""
    artifact = serialize_forest(trained.forest)
    manifest = build_manifest(trained, cohort, source, model_name=model_name,
                              artifact_file=artifact_file, artifact=artifact)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / artifact_file).write_bytes(artifact)
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n",
                                           encoding="utf-8")
    (directory / MODEL_CARD_NAME).write_text(render_model_card(manifest), encoding="utf-8")
    return manifest
