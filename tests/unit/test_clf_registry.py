"""Model registry: round trips, version choice, fingerprints."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers import (
    HierarchicalClassifier,
    fingerprint,
    list_models,
    load,
    read_metadata,
    save,
    versions,
)
from alert_broker.classifiers.taxonomy import TAXONOMY_VERSION
from alert_broker.features import FEATURE_VERSION
from tests.unit.test_clf_hierarchical import synthetic


@pytest.fixture(scope="module")
def data():
    return synthetic(6, seed=11, nan_fraction=0.05)


def _model(data, version: str) -> HierarchicalClassifier:
    x, y = data
    return HierarchicalClassifier(version=version, n_estimators=8, outlier_estimators=8).fit(x, y)


def test_round_trip_gives_equal_predictions_and_metadata(tmp_path, data):
    x, y = data
    model = _model(data, "1.0.0")
    path = save(model, root=tmp_path, training_fingerprint=fingerprint(x, y), metrics={"f1": np.float64(0.5)})
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["name"] == "lc_hierarchical" and meta["version"] == "1.0.0"
    assert meta["taxonomy_version"] == TAXONOMY_VERSION and meta["feature_version"] == FEATURE_VERSION
    assert meta["features"] == ["f0", "f1", "f2", "noise"] and meta["metrics"] == {"f1": 0.5}
    assert meta["training_fingerprint"] == fingerprint(x, y) and meta["created_at"]
    loaded = load("lc_hierarchical", root=tmp_path)
    pd.testing.assert_frame_equal(loaded.predict_proba(x), model.predict_proba(x))
    pd.testing.assert_frame_equal(loaded.outlier_scores(x), model.outlier_scores(x))
    assert loaded.metadata["training_fingerprint"] == fingerprint(x, y)


def test_latest_version_is_numeric_and_selectable(tmp_path, data):
    for v in ("1.2.0", "1.10.0", "1.9.3"):
        save(_model(data, v), root=tmp_path)
    assert versions("lc_hierarchical", root=tmp_path) == ["1.2.0", "1.9.3", "1.10.0"]
    assert load("lc_hierarchical", root=tmp_path).version == "1.10.0"
    assert load("lc_hierarchical", "1.2.0", root=tmp_path).version == "1.2.0"
    assert read_metadata("lc_hierarchical", root=tmp_path)["version"] == "1.10.0"
    assert list(list_models(tmp_path)["version"]) == ["1.2.0", "1.9.3", "1.10.0"]
    with pytest.raises(FileNotFoundError, match="no version '2.0.0'"):
        load("lc_hierarchical", "2.0.0", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="no model named"):
        load("other", root=tmp_path)
    with pytest.raises(FileExistsError):
        save(_model(data, "1.2.0"), root=tmp_path)


def test_feature_version_mismatch_is_refused(tmp_path, data):
    path = save(_model(data, "1.0.0"), root=tmp_path)
    meta = json.loads((path / "metadata.json").read_text())
    meta["feature_version"] = "lc-features-0.0.1"
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="retrain"):
        load("lc_hierarchical", root=tmp_path)
    assert load("lc_hierarchical", root=tmp_path, check_feature_version=False).version == "1.0.0"


def test_fingerprint_changes_with_data_not_with_order(data):
    x, y = data
    base = fingerprint(x, y)
    assert fingerprint(x.sample(frac=1.0, random_state=1), y) == base  # row order
    assert fingerprint(x[list(reversed(x.columns))], y) == base  # column order
    changed = x.copy()
    changed.loc[3, "f1"] += 1e-9
    assert fingerprint(changed, y) != base
    relabelled = y.copy()
    relabelled.iloc[0] = "QSO" if relabelled.iloc[0] != "QSO" else "AGN"
    assert fingerprint(x, relabelled) != base
    assert fingerprint(x.iloc[1:], y) != base
    assert len(base) == 64
