"""A random forest flattened into arrays, for fast probability predictions.

scikit-learn's `predict_proba` visits the trees one by one with per-call overhead
(about 8 ms for one participant and 200 trees); walking all trees at once over
concatenated node arrays takes a fraction of a millisecond and gives the same
probabilities. Building it also bounds-checks every node index, so a loaded artifact
whose tree structure is corrupt is refused instead of reading out of bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scikit-learn loads only where a model is trained or read
    from sklearn.ensemble import RandomForestClassifier

_LEAF = -1


@dataclass(frozen=True)
class FlatForest:
    left: np.ndarray  # global index of the left child, or _LEAF
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    leaf_proba: np.ndarray  # (nodes, classes): class fractions, each row sums to 1
    roots: np.ndarray  # global index of each tree's root
    max_steps: int  # children come after their parent, so no walk is longer than a tree
    n_features: int

    @classmethod
    def from_forest(cls, forest: RandomForestClassifier) -> FlatForest:
        n_classes = len(forest.classes_)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("l", "r", "f", "t", "v")}
        roots, offset, longest = [], 0, 0
        for estimator in forest.estimators_:
            tree = estimator.tree_
            _check_tree(tree, forest.n_features_in_, n_classes)
            leaf = tree.children_left == _LEAF
            parts["l"].append(np.where(leaf, _LEAF, tree.children_left + offset))
            parts["r"].append(np.where(leaf, _LEAF, tree.children_right + offset))
            parts["f"].append(np.where(leaf, 0, tree.feature))
            parts["t"].append(tree.threshold)
            value = tree.value[:, 0, :].astype(np.float64)
            parts["v"].append(value / value.sum(axis=1, keepdims=True))
            roots.append(offset)
            offset += tree.node_count
            longest = max(longest, tree.node_count)
        return cls(
            left=np.concatenate(parts["l"]).astype(np.intp),
            right=np.concatenate(parts["r"]).astype(np.intp),
            feature=np.concatenate(parts["f"]).astype(np.intp),
            threshold=np.concatenate(parts["t"]),
            leaf_proba=np.concatenate(parts["v"]),
            roots=np.asarray(roots, dtype=np.intp),
            max_steps=longest,
            n_features=forest.n_features_in_,
        )

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Mean class fractions over the trees, rows of `x` as in scikit-learn."""
        # scikit-learn compares float32 features with float64 thresholds: do the same.
        x32 = np.asarray(x, dtype=np.float32).astype(np.float64)
        rows = np.arange(x32.shape[0])[:, None]
        node = np.broadcast_to(self.roots, (x32.shape[0], self.roots.size)).copy()
        for _ in range(self.max_steps):
            left = self.left[node]
            inner = left != _LEAF
            if not inner.any():
                break
            go_left = x32[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, left, self.right[node]), node)
        return self.leaf_proba[node].mean(axis=1)


def _check_tree(tree: object, n_features: int, n_classes: int) -> None:
    n = tree.node_count  # type: ignore[attr-defined]
    left, right = tree.children_left, tree.children_right  # type: ignore[attr-defined]
    leaf = left == _LEAF
    parent = np.arange(n)[~leaf]
    ok = (
        np.array_equal(leaf, right == _LEAF)
        and np.all((left[~leaf] > parent) & (left[~leaf] < n))
        and np.all((right[~leaf] > parent) & (right[~leaf] < n))
        and np.all((tree.feature[~leaf] >= 0) & (tree.feature[~leaf] < n_features))  # type: ignore[attr-defined]
        and tree.value.shape == (n, 1, n_classes)  # type: ignore[attr-defined]
        and np.all(np.isfinite(tree.threshold))  # type: ignore[attr-defined]
        and np.all(tree.value.sum(axis=2) > 0)  # type: ignore[attr-defined]
    )
    if not ok:
        raise ValueError("a tree of the forest has an inconsistent node structure")
