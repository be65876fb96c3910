"""Hierarchical classifier on tiny synthetic feature tables where the 15 classes are separable by design."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from classifiers import BRANCHES, CLASSES, HIERARCHY, SENTINEL, HierarchicalClassifier


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
