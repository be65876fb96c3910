"""Balanced hierarchical random forest (ALeRCE's light-curve classifier, Sánchez-Sáez et al. 2021).

A top-level forest separates Transient / Stochastic / Periodic; one forest per branch separates its classes;
P(class) = P(branch) x P(class | branch), so the 15 probabilities of an object sum to 1. Every forest is trained
with balanced bootstrap weights because the training classes are very unequal and rare classes matter most.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from classifiers.outlier import BranchOutlierScorer
from classifiers.taxonomy import BRANCH_OF, BRANCHES, CLASSES, TAXONOMY_VERSION, normalise_labels

#: ALeRCE imputes missing features with -999 before the forests: "missing" becomes a value trees can split on.
SENTINEL = -999.0

#: Columns of a features table that are bookkeeping, not features.
NON_FEATURE_COLUMNS = frozenset({"oid", "FEATURE_VERSION", "lastmjd", "night", "survey", "class", "label"})

PROBABILITY_COLUMNS = (
    "oid",
    "classifier_name",
    "classifier_version",
    "class_name",
    "probability",
    "ranking",
)


def as_oid_indexed(features: pd.DataFrame) -> pd.DataFrame:
    """The features indexed by oid: accepts the `features` table (an ``oid`` column) or an oid-indexed frame."""
    if "oid" in features.columns:
        features = features.set_index("oid")
    return features.set_axis(pd.Index(features.index.astype(str), name="oid"), axis=0)


def impute(features: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The float matrix of ``columns`` (absent columns, NaN and +-inf -> :data:`SENTINEL`), rows as given."""
    x = np.array(features.reindex(columns=columns).to_numpy(dtype=np.float64, na_value=np.nan), copy=True)
    x[~np.isfinite(x)] = SENTINEL
    return x


class HierarchicalClassifier:
    """Top-level forest + one forest per branch, balanced, with an isolation-forest outlier score per branch.

    ``fit(features, labels)`` takes a features table (``oid`` column or index; every numeric column that is not
    bookkeeping is a feature) and labels aligned on oid (aliases such as ALeRCE's "Ceph" and "EB" accepted;
    rows whose label is not one of the 15 classes are dropped).
    """

    def __init__(
        self,
        *,
        name: str = "lc_hierarchical",
        version: str = "1.0.0",
        n_estimators: int = 300,
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        max_features: str | float = "sqrt",
        outlier_estimators: int = 200,
        random_state: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.taxonomy_version = TAXONOMY_VERSION
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.outlier_estimators = outlier_estimators
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.feature_columns_: list[str] = []
        self.top_: RandomForestClassifier | None = None
        self.branch_models_: dict[str, RandomForestClassifier] = {}
        self.outlier_: BranchOutlierScorer | None = None
        self.metadata: dict = {}

    # -- training -----------------------------------------------------------------------------------
    def _forest(self, seed_offset: int) -> RandomForestClassifier:
        return RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            class_weight="balanced_subsample",
            random_state=self.random_state + seed_offset,
            n_jobs=self.n_jobs,
        )

    def fit(self, features: pd.DataFrame, labels: pd.Series) -> HierarchicalClassifier:
        feats = as_oid_indexed(features)
        labels = labels.copy()
        labels.index = labels.index.astype(str)
        y = normalise_labels(labels.reindex(feats.index))
        keep = y.notna().to_numpy()
        if keep.sum() == 0:
            raise ValueError(
                "fit(): no object has a label among the 15 classes (labels must be indexed by oid)"
            )
        feats, y = feats[keep], y[keep].to_numpy(dtype=object)
        self.feature_columns_ = [
            c
            for c in feats.columns
            if c not in NON_FEATURE_COLUMNS and pd.api.types.is_numeric_dtype(feats[c])
        ]
        if not self.feature_columns_:
            raise ValueError("fit(): the features table has no numeric feature column")
        x = impute(feats, self.feature_columns_)
        branch = np.array([BRANCH_OF[c] for c in y], dtype=object)
        if len(set(branch)) < 2:
            raise ValueError("fit(): the training set must cover at least two of the three branches")
        self.top_ = self._forest(0).fit(x, branch)
        self.branch_models_ = {}
        for i, b in enumerate(BRANCHES, start=1):
            rows = branch == b
            if rows.any():
                self.branch_models_[b] = self._forest(i).fit(x[rows], y[rows])
        self.outlier_ = BranchOutlierScorer(self.outlier_estimators, self.random_state, self.n_jobs)
        self.outlier_.fit(x, branch)
        return self

    def _check_fitted(self) -> None:
        if self.top_ is None:
            raise RuntimeError(f"classifier {self.name} {self.version} is not trained: call fit() first")

    # -- inference ----------------------------------------------------------------------------------
    def _branch_proba(self, x: np.ndarray, index: pd.Index) -> pd.DataFrame:
        p = self.top_.predict_proba(x)
        out = pd.DataFrame(0.0, index=index, columns=list(BRANCHES))
        out[list(self.top_.classes_)] = p
        return out

    def predict_branch_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        """P(branch) per object: DataFrame (oid x Transient/Stochastic/Periodic), rows summing to 1."""
        self._check_fitted()
        feats = as_oid_indexed(features)
        return self._branch_proba(impute(feats, self.feature_columns_), feats.index)

    def predict_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        """P(class) = P(branch) x P(class | branch): DataFrame (oid x the 15 classes), rows summing to 1."""
        self._check_fitted()
        feats = as_oid_indexed(features)
        x = impute(feats, self.feature_columns_)
        top = self._branch_proba(x, feats.index)
        out = pd.DataFrame(0.0, index=feats.index, columns=list(CLASSES))
        for b in BRANCHES:
            model = self.branch_models_.get(b)
            if model is None:
                continue
            cond = model.predict_proba(x) if len(x) else np.zeros((0, len(model.classes_)))
            out[list(model.classes_)] = cond * top[[b]].to_numpy()
        # A branch without a trained model (absent from training) keeps P(branch) unassigned; renormalise.
        total = out.sum(axis=1).to_numpy()
        return out.div(np.where(total > 0, total, 1.0), axis=0)

    def predict(self, features: pd.DataFrame) -> pd.Series:
        """The most probable of the 15 classes per object."""
        p = self.predict_proba(features)
        return pd.Series(p.columns[p.to_numpy().argmax(axis=1)], index=p.index, name="class_name")

    def outlier_scores(self, features: pd.DataFrame) -> pd.DataFrame:
        """Per object: the most probable ``branch`` and its isolation-forest ``outlier_score`` (higher = odder),
        with ``classifier_name`` / ``classifier_version`` so the rows can sit next to the probabilities."""
        self._check_fitted()
        feats = as_oid_indexed(features)
        x = impute(feats, self.feature_columns_)
        top = self._branch_proba(x, feats.index)
        branch = top.columns.to_numpy()[top.to_numpy().argmax(axis=1)] if len(top) else np.array([], object)
        out = self.outlier_.score_frame(x, branch, feats.index)
        out.insert(0, "classifier_version", self.version)
        out.insert(0, "classifier_name", self.name)
        return out.reset_index()

    def probabilities_long(self, features: pd.DataFrame, *, include_top: bool = True) -> pd.DataFrame:
        """ALeRCE's probability table rows: (oid, classifier_name, classifier_version, class_name, probability,
        ranking), ranking 1 = most probable within (oid, classifier_name). With ``include_top`` the branch
        probabilities come too, under ``<name>_top`` (as ALeRCE stores its top-level classifier)."""
        parts = [_long(self.predict_proba(features), self.name, self.version)]
        if include_top:
            parts.append(_long(self.predict_branch_proba(features), f"{self.name}_top", self.version))
        return pd.concat(parts, ignore_index=True)


def _long(proba: pd.DataFrame, name: str, version: str) -> pd.DataFrame:
    """Wide probabilities -> long rows with a dense 1..k ranking per object (ties broken by class order)."""
    p = proba.to_numpy()
    n, k = p.shape
    order = np.argsort(-p, axis=1, kind="stable")
    ranking = np.empty_like(order)
    np.put_along_axis(ranking, order, np.arange(1, k + 1)[None, :].repeat(n, axis=0), axis=1)
    out = pd.DataFrame(
        {
            "oid": np.repeat(proba.index.to_numpy(dtype=object), k),
            "classifier_name": name,
            "classifier_version": version,
            "class_name": np.tile(proba.columns.to_numpy(dtype=object), n),
            "probability": p.ravel(),
            "ranking": ranking.ravel().astype("int16"),
        }
    )
    out["oid"] = out["oid"].astype("string")
    out["class_name"] = out["class_name"].astype("string")
    return out[list(PROBABILITY_COLUMNS)]
