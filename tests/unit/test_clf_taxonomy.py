"""The taxonomy and label normalisation."""

from __future__ import annotations

import pandas as pd

from classifiers.taxonomy import BRANCH_OF, BRANCHES, CLASSES, branch_labels, normalise_labels, taxonomy_table


def test_fifteen_classes_under_three_branches():
    assert BRANCHES == ("Transient", "Stochastic", "Periodic")
    assert len(CLASSES) == len(set(CLASSES)) == 15
    assert [BRANCH_OF[c] for c in ("SNIa", "QSO", "CV/Nova", "YSO", "RRL", "Periodic-Other")] == [
        "Transient",
        "Stochastic",
        "Stochastic",
        "Stochastic",
        "Periodic",
        "Periodic",
    ]
    t = taxonomy_table()
    assert list(t["class_name"]) == list(CLASSES) and t["taxonomy_version"].nunique() == 1


def test_aliases_and_unknown_labels():
    got = normalise_labels(pd.Series(["Ceph", "EB", "SNIa", "asteroid", "bogus", None]))
    assert got.iloc[:3].tolist() == ["CEP", "E", "SNIa"]
    assert got.iloc[3:].isna().all()
    assert branch_labels(got).iloc[:3].tolist() == ["Periodic", "Periodic", "Transient"]
