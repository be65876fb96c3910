"""Anomaly score per classified object: one isolation forest per branch, trained on that branch's objects.

A branch model answers "how unlike the training objects of the branch it was put in is this object?", which is
what a follow-up astronomer wants next to the probabilities (a new kind of transient looks like nothing in the
Transient training set even when the top level is sure it is a transient).

Scoring walks the fitted trees in one compiled pass (:class:`CompiledForest`) instead of scikit-learn's
``score_samples``, which calls each of the 200 trees from Python: on the few hundred objects of a region task that
per-tree overhead was most of the light-curve classifier step. The arithmetic is scikit-learn's, in its order, so
the scores are the same to the bit (tests/unit/test_outlier_scores.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

from alert_broker.classifiers.taxonomy import BRANCHES


@njit(cache=True)
def _forest_depths(
    x: np.ndarray,
    offsets: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_left: np.ndarray,
    leaf_depth: np.ndarray,
) -> np.ndarray:
    """Sum over trees (in order) of each row's leaf depth; nodes of tree t are ``offsets[t]:offsets[t + 1]``,
    children indices local to their tree (-1 at a leaf). A float32 value goes left when ``<=`` the float64
    threshold, a NaN where the node says missing values go: scikit-learn's tree traversal."""
    n = x.shape[0]
    depths = np.zeros(n)
    for i in range(n):
        d = 0.0
        for t in range(offsets.size - 1):
            base = offsets[t]
            node = 0
            while left[base + node] != -1:
                k = base + node
                v = x[i, feature[k]]
                if v != v:
                    node = left[k] if missing_left[k] else right[k]
                elif v <= threshold[k]:
                    node = left[k]
                else:
                    node = right[k]
            d += leaf_depth[base + node]
        depths[i] = d
    return depths


class CompiledForest:
    """A fitted ``IsolationForest``'s trees as flat arrays, scored by one compiled walk per row.

    ``score_samples(x)`` equals the forest's own, bit for bit: rows are cast to float32 as scikit-learn does, each
    tree adds ``(path length to the leaf + average path length of its training samples) - 1`` in tree order, and
    the depth is normalised by ``n_estimators * c(max_samples)`` the same way."""

    def __init__(self, forest: IsolationForest) -> None:
        if forest._max_features != forest.n_features_in_:
            raise ValueError("feature-subsampled isolation forests are not compiled")
        trees = [est.tree_ for est in forest.estimators_]
        sizes = np.array([t.node_count for t in trees], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.left = np.concatenate([t.children_left for t in trees]).astype(np.int64)
        self.right = np.concatenate([t.children_right for t in trees]).astype(np.int64)
        self.feature = np.concatenate([t.feature for t in trees]).astype(np.int64)
        self.threshold = np.concatenate([t.threshold for t in trees]).astype(np.float64)
        self.missing_left = np.concatenate([t.missing_go_to_left for t in trees]).astype(np.bool_)
        # scikit-learn adds (decision path length + average path length) - 1.0 per tree, evaluated in that order
        self.leaf_depth = np.concatenate(
            [
                (forest._decision_path_lengths[i] + forest._average_path_length_per_tree[i]) - 1.0
                for i in range(len(trees))
            ]
        ).astype(np.float64)
        self.denominator = len(forest.estimators_) * _average_path_length([forest._max_samples])
        self.n_features = forest.n_features_in_

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        """``IsolationForest.score_samples(x)``: minus the anomaly score (lower = more abnormal)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got an array of shape {x.shape}")
        depths = _forest_depths(
            x,
            self.offsets,
            self.left,
            self.right,
            self.feature,
            self.threshold,
            self.missing_left,
            self.leaf_depth,
        )
        den = self.denominator
        # For a single training sample, denominator and depth are 0: the score is 1 (scikit-learn's convention)
        return -(2 ** (-np.divide(depths, den, out=np.ones_like(depths), where=den != 0)))


def warm_up_outlier_scores() -> None:
    """Load the compiled walk (numba's on-disk cache; compiled on a first run) on a one-node forest, so a
    worker's first classification does not pay for it."""
    one = np.zeros(1, dtype=np.int64)
    _forest_depths(
        np.zeros((1, 1), dtype=np.float32),
        np.array([0, 1], dtype=np.int64),
        one - 1,
        one - 1,
        one,
        np.zeros(1),
        np.zeros(1, dtype=np.bool_),
        np.zeros(1),
    )


class BranchOutlierScorer:
    """Isolation forests per branch on the (imputed) feature matrix.

    ``score`` is ``-IsolationForest.score_samples``: in (0, 1], about 0.4-0.5 for typical objects, towards 1
    for anomalies (Liu, Ting & Zhou 2008), so scores of different branches share one scale.
    """

    def __init__(self, n_estimators: int = 200, random_state: int = 0, n_jobs: int | None = None) -> None:
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.forests_: dict[str, IsolationForest] = {}

    def fit(self, x: np.ndarray, branches: np.ndarray) -> BranchOutlierScorer:
        """Fit one forest per branch present in ``branches`` (an array of branch names aligned with ``x``)."""
        self.forests_ = {}
        for i, branch in enumerate(BRANCHES):
            rows = branches == branch
            if rows.sum() < 2:
                continue
            forest = IsolationForest(
                n_estimators=self.n_estimators, random_state=self.random_state + i, n_jobs=self.n_jobs
            )
            self.forests_[branch] = forest.fit(x[rows])
        if not self.forests_:
            raise ValueError("outlier scorer: no branch has at least 2 training objects")
        return self

    def score(self, x: np.ndarray, branches: np.ndarray) -> np.ndarray:
        """The anomaly score of each row under the forest of its branch (NaN where that branch has no forest)."""
        out = np.full(len(x), np.nan)
        for branch, forest in self.forests_.items():
            rows = branches == branch
            if rows.any():
                out[rows] = -self._compiled(branch, forest).score_samples(np.asarray(x)[rows])
        return out

    def _compiled(self, branch: str, forest: IsolationForest) -> CompiledForest:
        """The branch's forest as flat arrays, built on first use (models pickled before it existed included)."""
        cache = self.__dict__.setdefault("_compiled_forests", {})
        if cache.get(branch, (None,))[0] is not forest:
            cache[branch] = (forest, CompiledForest(forest))
        return cache[branch][1]

    def __getstate__(self) -> dict:
        """Pickled without the compiled arrays: they are rebuilt from the forests on first use."""
        state = dict(self.__dict__)
        state.pop("_compiled_forests", None)
        return state

    def score_frame(self, x: np.ndarray, branches: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """``score`` as a frame indexed like the features: columns ``branch`` and ``outlier_score``."""
        return pd.DataFrame({"branch": branches, "outlier_score": self.score(x, branches)}, index=index)
