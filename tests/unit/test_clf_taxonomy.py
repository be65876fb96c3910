"""The taxonomy and label normalisation."""

from __future__ import annotations

import pandas as pd

from alert_broker.classifiers.taxonomy import (
    BRANCH_OF,
    BRANCHES,
    CLASSES,
    branch_labels,
    normalise_labels,
    taxonomy_table,
)


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


class _Model:
    """What taxonomy_rows reads from a loaded model."""

    name, version, taxonomy_version = "lc_test", "2.1.0", "lc-taxonomy-test"

    def __init__(self, metadata: dict | None = None) -> None:
        self.metadata = metadata or {}


def test_taxonomy_rows_join_every_probability_row():
    from alert_broker.classifiers.taxonomy import HIERARCHY, TAXONOMY_COLUMNS, taxonomy_rows

    rows = taxonomy_rows(_Model())
    assert list(rows.columns) == list(TAXONOMY_COLUMNS)
    assert not rows.duplicated(["classifier_name", "classifier_version", "class_name"]).any()
    classes = rows[rows["classifier_name"] == "lc_test"]
    assert list(classes["class_name"]) == list(CLASSES) and list(classes["ord"]) == list(range(15))
    assert (classes["parent"] == classes["class_name"].map(BRANCH_OF)).all()
    assert set(classes["level"]) == {"class"}
    top = rows[rows["classifier_name"] == "lc_test_top"]
    assert list(top["class_name"]) == list(HIERARCHY) and top["parent"].isna().all()
    assert set(top["level"]) == {"branch"} and list(top["ord"]) == [0, 1, 2]
    assert set(rows["classifier_version"]) == {"2.1.0"} and set(rows["taxonomy_version"]) == {
        "lc-taxonomy-test"
    }
    assert len(taxonomy_rows(_Model(), include_top=False)) == 15


def test_taxonomy_rows_follow_the_hierarchy_saved_with_the_model():
    from alert_broker.classifiers.taxonomy import taxonomy_rows

    old = {"hierarchy": {"Transient": ["SN"], "Variable": ["RRL", "E"]}}
    rows = taxonomy_rows(_Model(old))
    assert list(rows["class_name"]) == ["SN", "RRL", "E", "Transient", "Variable"]
    assert list(rows["parent"].iloc[:3]) == ["Transient", "Variable", "Variable"]


def test_taxonomy_table_spec_matches_the_rows():
    from alert_broker.classifiers.taxonomy import TAXONOMY_COLUMNS, flat_taxonomy_rows
    from alert_broker.storage.postgres import TABLES

    spec = TABLES["taxonomy"]
    assert tuple(spec.columns) == TAXONOMY_COLUMNS
    assert spec.key == ("classifier_name", "classifier_version", "class_name")
    flat = flat_taxonomy_rows("stamp", "1.0.0", ["SN", "AGN"], "stamp-1")
    assert list(flat["level"]) == ["class", "class"] and flat["parent"].isna().all()
