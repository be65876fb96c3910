"""Balanced hierarchical classifier (ALeRCE's light-curve classifier, Sánchez-Sáez et al. 2021).

A top-level model separates Transient / Stochastic / Periodic; one model per branch separates its classes;
P(class) = P(branch) x P(class | branch), so the 15 probabilities of an object sum to 1. Every model is balanced
because the training classes are very unequal and rare classes matter most. Two interchangeable backends:
``"rf"``, random forests with balanced bootstrap weights (ALeRCE's choice), and ``"xgb"``, gradient-boosted
trees (XGBoost) with balanced sample weights. Both are deterministic for a given ``random_state``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils.class_weight import compute_sample_weight

from alert_broker.classifiers.outlier import BranchOutlierScorer
from alert_broker.classifiers.sky_density import apply_sky_prior, gal_b_column
from alert_broker.classifiers.taxonomy import BRANCH_OF, BRANCHES, CLASSES, TAXONOMY_VERSION, normalise_labels

#: ALeRCE imputes missing features with -999 before the forests: "missing" becomes a value trees can split on.
SENTINEL = -999.0

#: Columns of a features table that are bookkeeping, not features.
#: Calendar dates are among them: the date of the last non-detection before the first detection
#: (``last_mjd_before_fid_*``, kept in the features table for users) says when an object was seen, not what it
#: is, and it separated training sources instead (simulated objects at MJD ~60,660, ALeRCE's labelled SNe at
#: ~58,770): trees split on it to recognise a data set. Models from lc_hierarchical 1.4.0 on leave it out;
#: earlier ones keep reading it (a model reads the columns it was fitted on, ``feature_columns_``).
DATE_COLUMNS = frozenset({"lastmjd", "last_mjd_before_fid_1", "last_mjd_before_fid_2"})
NON_FEATURE_COLUMNS = (
    frozenset({"oid", "FEATURE_VERSION", "night", "survey", "class", "label"}) | DATE_COLUMNS
)

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


#: The selectable tree backends.
BACKENDS = ("rf", "xgb")


def balanced_weights(y: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Per-row weights giving every class the same total weight (``n / k`` each): scikit-learn's "balanced"
    weights when ``sample_weight`` is None, else ``sample_weight`` rescaled within each class so that rows keep
    their relative weights inside a class (a real light curve can count more than a simulated one) while classes
    stay balanced."""
    if sample_weight is None:
        return compute_sample_weight("balanced", y)
    w = np.asarray(sample_weight, dtype=np.float64)
    classes, codes = np.unique(y, return_inverse=True)
    totals = np.bincount(codes, weights=w, minlength=len(classes))
    return w * (len(y) / len(classes)) / totals[codes]


def temper(p: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of probabilities raised to 1/T and renormalised (temperature scaling on log-probabilities; T > 1
    softens over-confident outputs). Zeros stay zero."""
    if temperature == 1.0 or p.size == 0:
        return p
    with np.errstate(divide="ignore"):
        logp = np.log(np.clip(p, 0.0, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    q = np.exp(logp)
    return q / q.sum(axis=1, keepdims=True)


def impute(features: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The float matrix of ``columns`` (absent columns, NaN and +-inf -> :data:`SENTINEL`), rows as given."""
    x = np.array(features.reindex(columns=columns).to_numpy(dtype=np.float64, na_value=np.nan), copy=True)
    x[~np.isfinite(x)] = SENTINEL
    return x


class XGBBranchModel:
    """A multi-class XGBoost model with a scikit-learn forest's surface (``classes_``, ``predict_proba``).

    Balanced like the forests: every training row is weighted by ``n / (k * n_class)``, so each class carries
    the same total weight. A model trained on a single class answers probability 1 for it (XGBoost refuses
    one-class training).
    """

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        max_depth: int = 6,
        learning_rate: float = 0.1,
        subsample: float = 0.8,
        colsample_bytree: float = 0.5,
        random_state: int = 0,
        n_jobs: int | None = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.classes_: np.ndarray = np.array([], dtype=object)
        self.booster_ = None

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> XGBBranchModel:
        import xgboost as xgb  # lazy: ~0.75 s to import; only the optional xgb backend trains with it

        self.classes_ = np.unique(y)  # sorted, as scikit-learn orders classes_
        self.booster_ = None
        if len(self.classes_) < 2:
            return self
        codes = np.searchsorted(self.classes_, y)
        self.booster_ = xgb.XGBClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            tree_method="hist",
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        ).fit(x, codes, sample_weight=balanced_weights(y, sample_weight))
        return self

    def set_n_jobs(self, n_jobs: int | None) -> None:
        self.n_jobs = n_jobs
        if self.booster_ is not None:
            self.booster_.set_params(n_jobs=n_jobs)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.booster_ is None:
            return np.ones((len(x), len(self.classes_)))
        if len(x) == 0:
            return np.zeros((0, len(self.classes_)))
        p = self.booster_.predict_proba(x).astype(np.float64)
        return p / p.sum(axis=1, keepdims=True)  # XGBoost answers float32: make rows sum to 1 in float64


#: Temperatures tried by :func:`fit_temperatures` (log-spaced; 1 = no change).
TEMPERATURE_GRID = np.exp(np.linspace(np.log(0.3), np.log(5.0), 61))


def fit_temperatures(
    top: np.ndarray, cond: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """(T_top, T_branch) minimising the (weighted) log loss of the top level on the true branch and of the
    within-branch models on the true class given its branch, from untempered outputs
    (``HierarchicalClassifier.raw_probabilities``: top (n, 3) in BRANCHES order, cond (n, 15) in CLASSES
    order). Tempering both levels keeps P(class) = P(branch) x P(class | branch) and the branch sums."""
    y = np.asarray(labels, dtype=object)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    b_idx = np.array([BRANCHES.index(BRANCH_OF[c]) for c in y])
    c_idx = np.array([CLASSES.index(c) for c in y])
    groups = {b: [CLASSES.index(c) for c in CLASSES if BRANCH_OF[c] == b] for b in BRANCHES}

    def nll_top(t: float) -> float:
        p = temper(top, t)[np.arange(len(y)), b_idx]
        return float(-(w * np.log(np.clip(p, 1e-12, 1))).sum())

    def nll_cond(t: float) -> float:
        total = 0.0
        for bi, b in enumerate(BRANCHES):
            rows = b_idx == bi
            cols = groups[b]
            sub = cond[np.ix_(rows, cols)]
            if not rows.any() or len(cols) < 2 or not (sub.sum(axis=1) > 0).all():
                continue
            q = temper(sub, t)
            pos = np.array([cols.index(c) for c in c_idx[rows]])
            total -= float((w[rows] * np.log(np.clip(q[np.arange(rows.sum()), pos], 1e-12, 1))).sum())
        return total

    if len(y) == 0:
        return 1.0, 1.0
    return float(min(TEMPERATURE_GRID, key=nll_top)), float(min(TEMPERATURE_GRID, key=nll_cond))


class HierarchicalClassifier:
    """Top-level model + one model per branch, balanced, with an isolation-forest outlier score per branch.

    ``fit(features, labels)`` takes a features table (``oid`` column or index; every numeric column that is not
    bookkeeping is a feature) and labels aligned on oid (aliases such as ALeRCE's "Ceph" and "EB" accepted;
    rows whose label is not one of the 15 classes are dropped).

    ``backend`` is ``"rf"`` (balanced random forests) or ``"xgb"`` (XGBoost, balanced sample weights; its
    ``max_depth`` defaults to 6 and ``learning_rate`` applies). ``n_jobs`` is the thread count used for
    inference (default 1: a worker runs one task per thread); ``fit(..., n_jobs=k)`` trains the forests on
    ``k`` threads without changing the result (XGBoost always trains on one, see ``_model``).
    """

    def __init__(
        self,
        *,
        name: str = "lc_hierarchical",
        version: str = "1.0.0",
        backend: str = "rf",
        n_estimators: int = 300,
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        max_features: str | float = "sqrt",
        learning_rate: float = 0.1,
        outlier_estimators: int = 200,
        random_state: int = 0,
        n_jobs: int | None = 1,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.name = name
        self.backend = backend
        self.learning_rate = learning_rate
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
        self.top_: RandomForestClassifier | XGBBranchModel | None = None
        self.branch_models_: dict[str, RandomForestClassifier | XGBBranchModel] = {}
        self.outlier_: BranchOutlierScorer | None = None
        #: Temperature scaling of the top level and of the within-branch models (1 = none; ``calibrate``).
        self.temperature_top_: float = 1.0
        self.temperature_branch_: float = 1.0
        #: Name of the sky prior applied to the final probabilities (``sky_density.SKY_PRIORS``; None = none).
        self.sky_prior_: str | None = None
        self.metadata: dict = {}

    # -- pickling -----------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        # The registry keeps metadata (creation time, metrics, timings) in metadata.json and restores it on
        # load; leaving it out of the pickle makes model.joblib a pure function of training data and seed.
        state = self.__dict__.copy()
        state["metadata"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("backend", "rf")  # models pickled before the XGBoost backend existed
        state.setdefault("learning_rate", 0.1)
        state.setdefault("temperature_top_", 1.0)  # models pickled before calibration existed
        state.setdefault("temperature_branch_", 1.0)
        state.setdefault("sky_prior_", None)  # models pickled before the sky prior existed
        self.__dict__.update(state)

    # -- training -----------------------------------------------------------------------------------
    def _model(self, seed_offset: int, n_jobs: int | None) -> RandomForestClassifier | XGBBranchModel:
        seed = self.random_state + seed_offset
        if self.backend == "xgb":
            # Always one training thread: XGBoost's multi-threaded histograms sum gradients in another order,
            # which changes the last bits of some leaves; a model must not depend on the machine's cores.
            return XGBBranchModel(
                n_estimators=self.n_estimators,
                max_depth=6 if self.max_depth is None else self.max_depth,
                learning_rate=self.learning_rate,
                random_state=seed,
                n_jobs=1,
            )
        return RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            class_weight="balanced_subsample",
            random_state=seed,
            n_jobs=n_jobs,
        )

    def set_n_jobs(self, n_jobs: int | None) -> HierarchicalClassifier:
        """Threads for inference in every sub-model (trees are independent of it; results do not change)."""
        self.n_jobs = n_jobs
        for model in [self.top_, *self.branch_models_.values()]:
            if isinstance(model, XGBBranchModel):
                model.set_n_jobs(n_jobs)
            elif model is not None:
                model.n_jobs = n_jobs
        if self.outlier_ is not None:
            self.outlier_.n_jobs = n_jobs
            for forest in self.outlier_.forests_.values():
                forest.n_jobs = n_jobs
        return self

    def fit(
        self,
        features: pd.DataFrame,
        labels: pd.Series,
        *,
        n_jobs: int | None = None,
        sample_weight: pd.Series | np.ndarray | None = None,
    ) -> HierarchicalClassifier:
        """Train every model; ``n_jobs`` threads for training only (default: the instance's ``n_jobs``).

        ``sample_weight`` (aligned with ``features`` rows, or a Series indexed like them) weights rows within
        their class; classes stay balanced (:func:`balanced_weights`). Row labels are looked up by index, so
        the index must be unique."""
        fit_jobs = self.n_jobs if n_jobs is None else n_jobs
        feats = as_oid_indexed(features)
        labels = labels.copy()
        labels.index = labels.index.astype(str)
        y = normalise_labels(labels.reindex(feats.index))
        keep = y.notna().to_numpy()
        if keep.sum() == 0:
            raise ValueError(
                "fit(): no object has a label among the 15 classes (labels must be indexed by oid)"
            )
        if isinstance(sample_weight, pd.Series):
            sample_weight = sample_weight.set_axis(sample_weight.index.astype(str)).reindex(feats.index)
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)[keep]
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
        self.top_ = self._fit_one(self._model(0, fit_jobs), x, branch, sw)
        self.branch_models_ = {}
        for i, b in enumerate(BRANCHES, start=1):
            rows = branch == b
            if rows.any():
                self.branch_models_[b] = self._fit_one(
                    self._model(i, fit_jobs), x[rows], y[rows], None if sw is None else sw[rows]
                )
        self.outlier_ = BranchOutlierScorer(self.outlier_estimators, self.random_state, fit_jobs)
        self.outlier_.fit(x, branch)
        return self.set_n_jobs(self.n_jobs)

    @staticmethod
    def _fit_one(model, x: np.ndarray, y: np.ndarray, sw: np.ndarray | None):
        if sw is None:
            return model.fit(x, y)  # forests balance through class_weight, XGBoost through its own weights
        if isinstance(model, XGBBranchModel):
            return model.fit(x, y, sw)
        return model.fit(x, y, sample_weight=sw)  # class_weight="balanced_subsample" multiplies these

    def raw_probabilities(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Untempered outputs: (P(branch) as (n, 3) in BRANCHES order, P(class | its branch) as (n, 15) in
        CLASSES order: each branch's conditional distribution in its own classes' columns)."""
        self._check_fitted()
        feats = as_oid_indexed(features)
        x = impute(feats, self.feature_columns_)
        top = np.zeros((len(x), len(BRANCHES)))
        if len(x):
            top[:, [BRANCHES.index(b) for b in self.top_.classes_]] = self.top_.predict_proba(x)
        cond = np.zeros((len(x), len(CLASSES)))
        for model in self.branch_models_.values():
            if len(x):
                cond[:, [CLASSES.index(c) for c in model.classes_]] = model.predict_proba(x)
        return top, cond

    def calibrate(self, features: pd.DataFrame, labels: pd.Series) -> tuple[float, float]:
        """Fit the temperatures (:func:`fit_temperatures`) on a labelled set the model did not train on and
        keep them; returns (T_top, T_branch)."""
        feats = as_oid_indexed(features)
        y = normalise_labels(labels.set_axis(labels.index.astype(str)).reindex(feats.index))
        keep = y.notna().to_numpy()
        top, cond = self.raw_probabilities(feats[keep])
        self.temperature_top_, self.temperature_branch_ = fit_temperatures(
            top, cond, y[keep].to_numpy(object)
        )
        return self.temperature_top_, self.temperature_branch_

    def _check_fitted(self) -> None:
        if self.top_ is None:
            raise RuntimeError(f"classifier {self.name} {self.version} is not trained: call fit() first")

    # -- inference ----------------------------------------------------------------------------------
    def _branch_proba(self, x: np.ndarray, index: pd.Index) -> pd.DataFrame:
        p = temper(self.top_.predict_proba(x), self.temperature_top_)
        out = pd.DataFrame(0.0, index=index, columns=list(BRANCHES))
        out[list(self.top_.classes_)] = p
        return out

    def _proba(
        self, feats: pd.DataFrame, classes: bool = True
    ) -> tuple[np.ndarray, pd.DataFrame | None, pd.DataFrame]:
        """(imputed inputs, P(class), P(branch)) of oid-indexed features. With a sky prior the class
        probabilities move to the object's place on the sky and P(branch) becomes their branch sums, so the
        two levels stay one answer. Without one, ``classes=False`` skips the branch models (P(class) None)."""
        x = impute(feats, self.feature_columns_)
        top = self._branch_proba(x, feats.index)
        if not classes and self.sky_prior_ is None:
            return x, None, top
        proba = self._class_proba(x, top)
        if self.sky_prior_ is not None:
            proba = apply_sky_prior(self.sky_prior_, proba, gal_b_column(feats))
            top = pd.DataFrame(
                {b: proba[[c for c in CLASSES if BRANCH_OF[c] == b]].sum(axis=1) for b in BRANCHES},
                index=proba.index,
            )
        return x, proba, top

    def predict_branch_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        """P(branch) per object: DataFrame (oid x Transient/Stochastic/Periodic), rows summing to 1."""
        self._check_fitted()
        return self._proba(as_oid_indexed(features), classes=False)[2]

    def predict_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        """P(class) = P(branch) x P(class | branch) (times the sky prior, if any): DataFrame (oid x the 15
        classes), rows summing to 1."""
        self._check_fitted()
        return self._proba(as_oid_indexed(features))[1]

    def _class_proba(self, x: np.ndarray, top: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(0.0, index=top.index, columns=list(CLASSES))
        for b in BRANCHES:
            model = self.branch_models_.get(b)
            if model is None:
                continue
            cond = model.predict_proba(x) if len(x) else np.zeros((0, len(model.classes_)))
            cond = temper(cond, self.temperature_branch_)
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
        x, _, top = self._proba(as_oid_indexed(features), classes=False)
        return self._outliers(x, top)

    def _outliers(self, x: np.ndarray, top: pd.DataFrame) -> pd.DataFrame:
        branch = top.columns.to_numpy()[top.to_numpy().argmax(axis=1)] if len(top) else np.array([], object)
        out = self.outlier_.score_frame(x, branch, top.index)
        out.insert(0, "classifier_version", self.version)
        out.insert(0, "classifier_name", self.name)
        return out.reset_index()

    def _long_rows(self, proba: pd.DataFrame, top: pd.DataFrame, include_top: bool) -> pd.DataFrame:
        parts = [_long(proba, self.name, self.version)]
        if include_top:
            parts.append(_long(top, f"{self.name}_top", self.version))
        return pd.concat(parts, ignore_index=True)

    def probabilities_long(self, features: pd.DataFrame, *, include_top: bool = True) -> pd.DataFrame:
        """ALeRCE's probability table rows: (oid, classifier_name, classifier_version, class_name, probability,
        ranking), ranking 1 = most probable within (oid, classifier_name). With ``include_top`` the branch
        probabilities come too, under ``<name>_top`` (as ALeRCE stores its top-level classifier)."""
        self._check_fitted()
        _, proba, top = self._proba(as_oid_indexed(features))
        return self._long_rows(proba, top, include_top)

    def classify(
        self, features: pd.DataFrame, *, include_top: bool = True
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(probabilities_long(features), outlier_scores(features))`` with the top level evaluated once: what
        a worker stores per batch, cheaper than calling both (each evaluates the top-level model)."""
        self._check_fitted()
        x, proba, top = self._proba(as_oid_indexed(features))
        return self._long_rows(proba, top, include_top), self._outliers(x, top)


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
