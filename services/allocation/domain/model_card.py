"""The model card: a person-readable account of a model, rendered from its manifest."""

from __future__ import annotations

from typing import Any

_SYNTHETIC_WARNING = """\
> **Synthetic origin.** This model was trained on a SYNTHETIC reference cohort drawn
> from published summary figures (cluster centroids and shares, reference means and
> SDs). It contains no patient data and has never been validated on patients. It lets
> the software run end to end; before allocating real participants, a trial team
> trains its own model from prior patients with `tailor allocation train` and puts the
> new SHA-256 into the protocol file.
"""

_LIMITS = """\
## Limits

- The forest reproduces the reference clustering, not a clinical truth: its accuracy
  is agreement with soft k-means labels of the same cohort.
- Participants unlike the reference cohort (other diagnoses, languages, ages) may be
  classified with false confidence; a top probability under the protocol's threshold
  is flagged for review, but a confident answer can still be wrong.
- Age and sex enter the forest as they did in PerPAIN; they carry little weight.
- The artifact's bytes are reproducible only with the library versions listed under Artifact.
"""

_SYNTHETIC_LIMITS = """\
- The synthetic cohort treats scales as independent within a cluster and draws items
  around each scale's level: real MPI-D answers are more correlated and more skewed,
  so real data will give other profiles and a lower accuracy.
"""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_model_card(manifest: dict[str, Any]) -> str:
    m, data, classes = manifest["metrics"], manifest["training_data"], manifest["classes"]
    synthetic = manifest["synthetic"]
    parts = [f"# Model card: {manifest['model_version']}\n"]
    if synthetic:
        parts.append(_SYNTHETIC_WARNING)
    parts.append(
        "\n## What it does\n\nPredicts a participant's MPI cluster "
        f"({', '.join(classes)}) from the nine MPI-D scale means, age and sex: a random forest "
        f"({manifest['settings']['trees']} trees, leaves of at least "
        f"{manifest['settings']['min_samples_leaf']} patients) trained on labels from soft "
        "k-means (k = 3, spherical Gaussian mixture on standardized scales, "
        f"{manifest['settings']['mixture_inits']} initialisations), the components named by "
        "the protocol's cluster profile rules.\n")
    parts.append(
        f"\n## Training data\n\n- source: `{data['source']}` "
        f"({'SYNTHETIC' if synthetic else 'patient data'}, {data['level']} level)\n"
        f"- patients used: {data['rows']}; left out: {len(data['excluded_rows'])}\n"
        f"- source SHA-256: `{data['source_sha256']}`\n"
        f"- feature matrix SHA-256: `{data['features_sha256']}`\n"
        f"- seed: {manifest['seed']}\n")
    parts.append("\n## Reference clusters (soft k-means profiles, raw 0–6 scale means)\n\n")
    scales = [f for f in manifest["features"] if f not in ("age", "sex")]
    profiles = manifest["reference_clusters"]["profiles"]
    parts.append(_table(["cluster", "patients", *scales],
                        [[c, str(m["cluster_sizes"][c]), *(f"{profiles[c][s]:.2f}" for s in scales)]
                         for c in classes]))
    parts.append(_metrics(m, classes, manifest["settings"]["cv_folds"]))
    parts.append("\n" + _LIMITS + (_SYNTHETIC_LIMITS if synthetic else ""))
    parts.append(
        f"\n## Artifact\n\n- file: `{manifest['artifact']['file']}` "
        f"({manifest['artifact']['bytes']} bytes, skops format)\n"
        f"- SHA-256: `{manifest['artifact']['sha256']}`\n- features, in order: "
        f"{', '.join(manifest['features'])}\n- libraries: "
        + ", ".join(f"{k} {v}" for k, v in manifest["library_versions"].items()) + "\n")
    return "".join(parts)


def _metrics(m: dict[str, Any], classes: list[str], folds: int) -> str:
    text = (f"\n## Metrics\n\n- out-of-bag accuracy: {_pct(m['oob_accuracy'])}\n"
            f"- stratified {folds}-fold cross-validated accuracy: {_pct(m['cv_accuracy'])} "
            f"(folds: {', '.join(_pct(a) for a in m['cv_fold_accuracies'])})\n")
    if m.get("synthetic_cluster_agreement") is not None:
        text += ("- agreement of the soft k-means labels with the clusters the synthetic "
                 f"patients were drawn from: {_pct(m['synthetic_cluster_agreement'])}\n")
    importances = ", ".join(f"{k} {_pct(v)}" for k, v in m["feature_importances"].items())
    text += f"- feature importances: {importances}\n\nCross-validated confusion matrix "
    text += "(rows: soft k-means cluster, columns: forest prediction):\n\n"
    return text + _table(["", *classes], [[c, *map(str, row)]
                                         for c, row in zip(classes, m["confusion_matrix"],
                                                           strict=True)])
