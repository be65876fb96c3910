"""Anomaly score per classified object: one isolation forest per branch, trained on that branch's objects.

A branch model answers "how unlike the training objects of the branch it was put in is this object?", which is
what a follow-up astronomer wants next to the probabilities (a new kind of transient looks like nothing in the
Transient training set even when the top level is sure it is a transient).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from alert_broker.classifiers.taxonomy import BRANCHES


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
                out[rows] = -forest.score_samples(x[rows])
        return out

    def score_frame(self, x: np.ndarray, branches: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """``score`` as a frame indexed like the features: columns ``branch`` and ``outlier_score``."""
        return pd.DataFrame({"branch": branches, "outlier_score": self.score(x, branches)}, index=index)
