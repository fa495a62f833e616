"""Model artifacts: the forest saved with skops, a manifest beside it, checked on load.

Never pickle or joblib: a skops file is data, and loading it does not run code.
Only one type outside skops' default trust list is accepted: scikit-learn's `Tree`
(the forest's node storage), and only after the file's SHA-256 matches the one the
protocol names; the tree structures are then bounds-checked (`FlatForest`).

skops output is made byte-reproducible here. skops records each object's memory
address (`id()`) as its `__id__` in the schema and names array files after it, and
stamps zip entries with the current time. The archive is rewritten with ids and file
names numbered in the order the schema first mentions them (a one-to-one renaming, so
shared references stay shared) and a fixed 1980-01-01 timestamp. Entries are stored
uncompressed, so the hash does not depend on the zlib build either. The same data,
seed and library versions thus give the same SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cohort import FEATURES
from .errors import ArtifactIntegrityError, ModelArtifactError
from .forest import FlatForest

if TYPE_CHECKING:  # skops and scikit-learn load only where a model is written or read
    from sklearn.ensemble import RandomForestClassifier

FORMAT = "tailor-cluster-model/1"
MANIFEST_NAME = "manifest.json"
MODEL_CARD_NAME = "MODEL_CARD.md"
TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)
_SCHEMA = "schema.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize_forest(forest: RandomForestClassifier) -> bytes:
    """The forest as a skops archive whose bytes depend only on the forest."""
    import skops.io as sio

    raw = zipfile.ZipFile(io.BytesIO(sio.dumps(forest)))
    schema = json.loads(raw.read(_SCHEMA))
    renumber = _Renumbering(set(raw.namelist()) - {_SCHEMA})
    renumber.walk(schema)
    if len(renumber.files) != len(raw.namelist()) - 1:
        raise ModelArtifactError("skops wrote files its schema does not mention", field="artifact")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        # compact JSON: the indented schema skops writes is most of the file
        _write(archive, _SCHEMA, json.dumps(schema, separators=(",", ":")).encode())
        for old, new in renumber.files.items():
            _write(archive, new, raw.read(old))
    return out.getvalue()


class _Renumbering:
    """Replaces memory addresses in a skops schema by first-mention order numbers."""

    def __init__(self, files: set[str]) -> None:
        self.known_files = files
        self.files: dict[str, str] = {}
        self.ids: dict[int, int] = {}

    def walk(self, node: Any) -> None:
        if isinstance(node, dict):
            name = node.get("file")
            if isinstance(name, str) and name in self.known_files:
                new = self.files.setdefault(name, f"{len(self.files):05d}{Path(name).suffix}")
                node["file"] = new
            if isinstance(node.get("__id__"), int):
                # start at 1: skops does not memoize an object whose id is falsy
                node["__id__"] = self.ids.setdefault(node["__id__"], len(self.ids) + 1)
            for value in node.values():
                self.walk(value)
        elif isinstance(node, list):
            for value in node:
                self.walk(value)


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.create_system = 3  # what Unix writes; fixed so Windows builds give the same bytes
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


@dataclass(frozen=True)
class ClusterModel:
    """A loaded, verified model: what prediction needs."""

    forest: RandomForestClassifier
    flat: FlatForest
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["model_version"])

    @property
    def clusters(self) -> tuple[str, ...]:
        return tuple(self.manifest["classes"])

    @property
    def sha256(self) -> str:
        return str(self.manifest["artifact"]["sha256"])


def load_model(
    artifact: bytes, manifest: dict[str, Any], *, expected_sha256: str, clusters: Sequence[str],
) -> ClusterModel:
    """Verify and load; raises `ArtifactIntegrityError` or `ModelArtifactError`."""
    actual = sha256_hex(artifact)
    if actual != expected_sha256.lower():
        raise ArtifactIntegrityError(
            f"model artifact SHA-256 is {actual}, the protocol expects {expected_sha256}; "
            "refusing to load it", field="allocation.model.sha256")
    _check_manifest(manifest, actual, clusters)
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    untrusted = set(sio.get_untrusted_types(data=artifact)) - set(TRUSTED_TYPES)
    if untrusted:
        raise ModelArtifactError(
            f"model artifact holds types that are not trusted: {sorted(untrusted)}",
            field="artifact")
    forest = sio.loads(artifact, trusted=list(TRUSTED_TYPES))
    if not isinstance(forest, RandomForestClassifier):
        raise ModelArtifactError(
            f"model artifact holds a {type(forest).__name__}, not a random forest",
            field="artifact")
    if forest.n_features_in_ != len(FEATURES) or not np.array_equal(
            forest.classes_, np.arange(len(clusters))):
        raise ModelArtifactError(
            "the forest's inputs or classes do not match its manifest", field="artifact")
    try:
        flat = FlatForest.from_forest(forest)
    except ValueError as err:
        raise ModelArtifactError(str(err), field="artifact") from err
    return ClusterModel(forest, flat, manifest)


def _check_manifest(manifest: dict[str, Any], sha256: str, clusters: Sequence[str]) -> None:
    def refuse(what: str, key: str) -> ModelArtifactError:
        return ModelArtifactError(f"model manifest: {what}", field=f"manifest.{key}")

    if manifest.get("format") != FORMAT:
        raise refuse(f"format is {manifest.get('format')!r}, expected {FORMAT!r}", "format")
    if manifest.get("artifact", {}).get("sha256") != sha256:
        raise refuse("describes a different artifact (SHA-256 differs)", "artifact.sha256")
    if tuple(manifest.get("features", ())) != FEATURES:
        raise refuse(f"feature order {manifest.get('features')} is not {list(FEATURES)}",
                     "features")
    if tuple(manifest.get("classes", ())) != tuple(clusters):
        raise refuse(f"classes {manifest.get('classes')} are not the protocol's clusters "
                     f"{list(clusters)}", "classes")
    if not manifest.get("model_version"):
        raise refuse("model_version is missing", "model_version")


def read_model(
    artifact_path: Path, *, expected_sha256: str, clusters: Sequence[str],
    manifest_path: Path | None = None,
) -> ClusterModel:
    """Load the artifact and the manifest beside it (or at `manifest_path`) from disk."""
    manifest_path = manifest_path or artifact_path.with_name(MANIFEST_NAME)
    try:
        artifact = artifact_path.read_bytes()
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelArtifactError(f"cannot read the model: {err}", field="allocation.model.path"
                                 ) from err
    return load_model(artifact, manifest, expected_sha256=expected_sha256, clusters=clusters)
