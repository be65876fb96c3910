"""The classifier taxonomy in PostgreSQL: rows from a trained model, upserted idempotently, joinable with the
probability rows the same model writes."""

from __future__ import annotations

import pytest

from alert_broker.classifiers import HierarchicalClassifier
from alert_broker.classifiers.taxonomy import CLASSES, taxonomy_rows
from tests.unit.test_clf_hierarchical import synthetic

pytestmark = pytest.mark.integration


def test_taxonomy_rows_upsert_and_join_probabilities(summary_store):
    x, y = synthetic(6, seed=21)
    model = HierarchicalClassifier(version="3.0.0", n_estimators=5, outlier_estimators=5).fit(x, y)
    rows = taxonomy_rows(model)
    assert summary_store.upsert("taxonomy", rows) == 18
    assert summary_store.upsert("taxonomy", rows) == 18  # replayed: same rows, updated in place
    assert summary_store.count("taxonomy") == 18
    stored = summary_store.fetch_df(
        "SELECT class_name, level, parent, ord FROM taxonomy WHERE classifier_name = %s ORDER BY ord",
        ("lc_hierarchical",),
    )
    assert list(stored["class_name"]) == list(CLASSES) and stored["ord"].tolist() == list(range(15))
    assert stored["parent"].notna().all() and set(stored["level"]) == {"class"}
    top = summary_store.fetch_df("SELECT parent FROM taxonomy WHERE classifier_name = 'lc_hierarchical_top'")
    assert len(top) == 3 and top["parent"].isna().all()

    summary_store.upsert("probability", model.probabilities_long(x.iloc[:4]))
    joined = summary_store.fetch_df(
        "SELECT count(*) AS n, count(t.class_name) AS matched FROM probability p LEFT JOIN taxonomy t "
        "USING (classifier_name, classifier_version, class_name)"
    )
    assert joined["n"].iloc[0] == 4 * 18 and joined["matched"].iloc[0] == 4 * 18
