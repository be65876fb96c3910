"""Hierarchical classifier on tiny synthetic feature tables where the 15 classes are separable by design."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers import BRANCHES, CLASSES, HIERARCHY, SENTINEL, HierarchicalClassifier


def synthetic(n_per_class: int, seed: int, nan_fraction: float = 0.0) -> tuple[pd.DataFrame, pd.Series]:
    """Each class is a tight blob around its own corner: f0 encodes the branch, f1 the class inside it."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for k, c in enumerate(CLASSES):
        b = BRANCHES.index(next(b for b, cl in HIERARCHY.items() if c in cl))
        centre = np.array([10.0 * b, 5.0 * k, -3.0 * k, 1.0])
        rows.append(centre + rng.normal(0, 0.3, size=(n_per_class, 4)))
        labels += [c] * n_per_class
    x = np.vstack(rows)
    x[rng.random(x.shape) < nan_fraction] = np.nan
    oids = [f"ZTF{seed:02d}{i:07d}" for i in range(len(x))]
    df = pd.DataFrame(x, columns=["f0", "f1", "f2", "noise"])
    df.insert(0, "oid", oids)
    df["FEATURE_VERSION"] = "test"
    return df, pd.Series(labels, index=pd.Index(oids, name="oid"), name="class")


@pytest.fixture(scope="module")
def fitted() -> HierarchicalClassifier:
    x, y = synthetic(12, seed=1, nan_fraction=0.05)
    return HierarchicalClassifier(n_estimators=25, outlier_estimators=25, random_state=0).fit(x, y)


def test_product_sums_to_one_and_matches_branch_probabilities(fitted):
    x, _ = synthetic(5, seed=2)
    p = fitted.predict_proba(x)
    assert list(p.columns) == list(CLASSES) and list(p.index) == list(x["oid"])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    top = fitted.predict_branch_proba(x)
    for b, classes in HIERARCHY.items():  # P(branch) = sum over its classes of P(branch) P(class|branch)
        np.testing.assert_allclose(p[list(classes)].sum(axis=1), top[b], atol=1e-12)


def test_separable_classes_are_recovered(fitted):
    x, y = synthetic(6, seed=3)
    pred = fitted.predict(x)
    assert (pred.to_numpy() == y.to_numpy()).mean() >= 0.95


def test_probabilities_long_ranking(fitted):
    x, _ = synthetic(2, seed=4)
    long = fitted.probabilities_long(x)
    assert set(long["classifier_name"]) == {"lc_hierarchical", "lc_hierarchical_top"}
    assert list(long.columns) == [
        "oid",
        "classifier_name",
        "classifier_version",
        "class_name",
        "probability",
        "ranking",
    ]
    for (_, name), g in long.groupby(["oid", "classifier_name"]):
        k = len(CLASSES) if name == "lc_hierarchical" else len(BRANCHES)
        assert sorted(g["ranking"]) == list(range(1, k + 1))
        by_rank = g.sort_values("ranking")["probability"].to_numpy()
        assert np.all(np.diff(by_rank) <= 0)  # rank 1 is the most probable
    wide = fitted.predict_proba(x)
    best = long[(long["ranking"] == 1) & (long["classifier_name"] == "lc_hierarchical")].set_index("oid")
    assert (best.loc[wide.index, "class_name"].to_numpy() == wide.idxmax(axis=1).to_numpy()).all()


def test_nan_inf_and_missing_columns_equal_the_sentinel(fitted):
    x, _ = synthetic(2, seed=5)
    x.loc[x.index[:10], "f2"] = np.nan
    x.loc[x.index[10:15], "f1"] = np.inf
    explicit = x.copy()
    explicit[["f1", "f2"]] = explicit[["f1", "f2"]].replace([np.nan, np.inf], SENTINEL)
    pd.testing.assert_frame_equal(fitted.predict_proba(x), fitted.predict_proba(explicit))
    dropped = fitted.predict_proba(x.drop(columns=["noise"]))  # absent column -> sentinel, no error
    np.testing.assert_allclose(dropped.sum(axis=1), 1.0)
    allnan = pd.DataFrame({"oid": ["a"], "f0": [np.nan]})
    np.testing.assert_allclose(fitted.predict_proba(allnan).sum(axis=1), 1.0)


def test_outlier_score_higher_for_an_object_unlike_training(fitted):
    x, _ = synthetic(3, seed=6)
    odd = pd.DataFrame({"oid": ["odd"], "f0": [0.0], "f1": [500.0], "f2": [400.0], "noise": [-50.0]})
    scores = fitted.outlier_scores(pd.concat([x, odd], ignore_index=True)).set_index("oid")
    assert set(scores["branch"]) <= set(BRANCHES)
    assert scores.loc["odd", "outlier_score"] > scores["outlier_score"].drop("odd").quantile(0.95)


def test_errors_are_clear():
    x, y = synthetic(3, seed=7)
    with pytest.raises(RuntimeError, match="not trained"):
        HierarchicalClassifier().predict_proba(x)
    with pytest.raises(ValueError, match="no object has a label"):
        HierarchicalClassifier(n_estimators=5).fit(x, pd.Series(["asteroid"] * len(y), index=y.index))
    one_branch = y.isin(HIERARCHY["Periodic"])
    with pytest.raises(ValueError, match="two of the three branches"):
        HierarchicalClassifier(n_estimators=5).fit(x[one_branch.to_numpy()], y[one_branch])


def test_aliases_accepted_and_other_labels_dropped():
    x, y = synthetic(6, seed=8)
    y = y.replace({"CEP": "Ceph", "E": "EB"})
    y.iloc[:3] = "bogus"
    model = HierarchicalClassifier(n_estimators=10, outlier_estimators=10).fit(x, y)
    assert set(model.branch_models_["Periodic"].classes_) == set(HIERARCHY["Periodic"])
    assert "f0" in model.feature_columns_ and "FEATURE_VERSION" not in model.feature_columns_


def test_calendar_dates_are_not_features():
    """A date says when an object was seen, not what it is: a column that would separate the classes perfectly
    by date (as the dates of the last non-detection separated simulated from real training sources) is left
    out of the inputs, while the other columns are kept; a model fitted with such a column in its inputs (one
    trained before the rule) still reads it."""
    x, y = synthetic(6, seed=9)
    codes = pd.Series(pd.factorize(y)[0], index=y.index)
    x = x.assign(last_mjd_before_fid_1=58000.0 + codes.to_numpy(), last_mjd_before_fid_2=60000.0, lastmjd=1.0)
    model = HierarchicalClassifier(n_estimators=5, outlier_estimators=5).fit(x, y)
    assert not {"last_mjd_before_fid_1", "last_mjd_before_fid_2", "lastmjd"} & set(model.feature_columns_)
    assert "f0" in model.feature_columns_
    model.feature_columns_ = [
        *model.feature_columns_[:-1],
        "last_mjd_before_fid_1",
    ]  # an older model's inputs
    assert len(model.predict_proba(x)) == len(x)


# -- backends and determinism ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_xgb() -> HierarchicalClassifier:
    # 30 per class: with 12, XGBoost's regularisation (min_child_weight=1 on softmax hessians) leaves stumps
    # that underfit this toy; real training sets have hundreds of rows per class
    x, y = synthetic(30, seed=1, nan_fraction=0.05)
    return HierarchicalClassifier(backend="xgb", n_estimators=50, outlier_estimators=25, random_state=0).fit(
        x, y
    )


def test_xgb_backend_keeps_the_hierarchy_and_recovers_classes(fitted_xgb):
    x, y = synthetic(6, seed=3)
    p = fitted_xgb.predict_proba(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    top = fitted_xgb.predict_branch_proba(x)
    for b, classes in HIERARCHY.items():
        np.testing.assert_allclose(p[list(classes)].sum(axis=1), top[b], atol=1e-12)
    assert (fitted_xgb.predict(x).to_numpy() == y.to_numpy()).mean() >= 0.95
    assert list(fitted_xgb.branch_models_["Stochastic"].classes_) == sorted(HIERARCHY["Stochastic"])


def test_xgb_balances_by_sample_weight():
    """A 10:1 imbalanced pair with overlapping blobs: unweighted boosting would favour the big class; balanced
    weights put the decision boundary near the midpoint, so the small class keeps a fair recall."""
    from alert_broker.classifiers.hierarchical import XGBBranchModel

    rng = np.random.default_rng(0)
    big, small = rng.normal(0.0, 1.0, (1000, 1)), rng.normal(1.5, 1.0, (100, 1))
    x = np.vstack([big, small])
    y = np.array(["a"] * 1000 + ["b"] * 100, dtype=object)
    model = XGBBranchModel(n_estimators=30, max_depth=2, random_state=0).fit(x, y)
    test_small = rng.normal(1.5, 1.0, (2000, 1))
    recall_small = (model.predict_proba(test_small)[:, 1] > 0.5).mean()
    assert 0.6 < recall_small < 0.9  # the midpoint 0.75 gives ~0.77; an unweighted model gives < 0.3
    one = XGBBranchModel().fit(x[:5], np.array(["a"] * 5, dtype=object))
    np.testing.assert_array_equal(one.predict_proba(x[:3]), np.ones((3, 1)))


@pytest.mark.parametrize("backend", ["rf", "xgb"])
def test_same_seed_same_probabilities_and_same_pickle(backend):
    import io

    import joblib

    x, y = synthetic(8, seed=9, nan_fraction=0.05)
    probe, _ = synthetic(3, seed=10)

    def fit(seed: int, jobs: int) -> HierarchicalClassifier:
        model = HierarchicalClassifier(
            backend=backend, n_estimators=15, outlier_estimators=15, random_state=seed
        )
        model.metadata = {"created_at": f"run {jobs}"}  # must not reach the pickle
        return model.fit(x, y, n_jobs=jobs)

    def dumped(model) -> bytes:
        buf = io.BytesIO()
        joblib.dump(model, buf, compress=3)
        return buf.getvalue()

    a, b, c = fit(4, 1), fit(4, 1), fit(4, 2)
    pd.testing.assert_frame_equal(a.predict_proba(probe), b.predict_proba(probe), check_exact=True)
    pd.testing.assert_frame_equal(a.predict_proba(probe), c.predict_proba(probe), check_exact=True)
    pd.testing.assert_frame_equal(a.outlier_scores(probe), c.outlier_scores(probe), check_exact=True)
    assert dumped(a) == dumped(b) == dumped(c)  # threads used for training leave no trace
    other = fit(5, 1).predict_proba(probe)
    assert not np.array_equal(other.to_numpy(), a.predict_proba(probe).to_numpy())


def test_classify_equals_the_separate_calls(fitted, fitted_xgb):
    x, _ = synthetic(2, seed=12)
    for model in (fitted, fitted_xgb):
        probs, outliers = model.classify(x)
        pd.testing.assert_frame_equal(probs, model.probabilities_long(x))
        pd.testing.assert_frame_equal(outliers, model.outlier_scores(x))


def test_inference_threads_are_settable_and_backend_checked(fitted):
    assert fitted.n_jobs == 1 and fitted.top_.n_jobs == 1  # a worker runs one task per thread
    fitted.set_n_jobs(2)
    assert all(m.n_jobs == 2 for m in fitted.branch_models_.values())
    fitted.set_n_jobs(1)
    with pytest.raises(ValueError, match="backend must be one of"):
        HierarchicalClassifier(backend="svm")
