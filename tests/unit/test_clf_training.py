"""End to end on a few hundred simulated objects (simulator -> decoder -> features -> forests), evaluation,
the report and the mapping of ALeRCE's real feature vectors."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers import CLASSES, HIERARCHY, load
from alert_broker.classifiers.evaluate import (
    alerce_feature_frame,
    evaluate,
    evaluate_alerce_features,
    write_report,
)
from alert_broker.classifiers.registry import save
from alert_broker.classifiers.training import build_training_set, register, train
from alert_broker.features import feature_names


@pytest.fixture(scope="module")
def sim_sets():
    train_set = build_training_set(n_objects=3000, nights=10, seed=5)
    test_set = build_training_set(n_objects=1500, nights=10, seed=6)
    return train_set, test_set


def test_training_set_is_labelled_features(sim_sets):
    (feats, labels), _ = sim_sets
    assert len(feats) >= 200 and feats.index.equals(labels.index)
    assert set(labels) <= set(CLASSES) and labels.nunique() >= 12
    assert set(feature_names()) <= set(feats.columns)


def test_small_end_to_end_beats_chance(sim_sets, tmp_path):
    (feats, labels), (test_f, test_y) = sim_sets
    model = train(feats, labels, n_estimators=60, seed=0)
    ev = evaluate(model, test_f, test_y)
    # chance: 1/3 for branches, 1/15 for classes
    assert ev.branch_balanced_accuracy > 0.75
    assert ev.class_balanced_accuracy > 0.35
    assert ev.confusion_class.to_numpy().sum() == ev.n == len(test_y)
    report = write_report({"held-out": ev}, tmp_path / "report", model=model)
    text = report.read_text()
    assert (
        "15-class macro F1" in text and (tmp_path / "report" / "confusion_set0_class.png").stat().st_size > 0
    )
    save(model, root=tmp_path / "models")
    probs = load(model.name, root=tmp_path / "models").probabilities_long(test_f.iloc[:5])
    assert len(probs) == 5 * (len(CLASSES) + 3)


class _Oracle:
    """A stand-in model whose answers are fixed, to check the metric code against hand-counted values."""

    def __init__(self, pred: pd.Series) -> None:
        self.pred = pred

    def predict(self, features):
        return self.pred.reindex(features.index)

    def predict_branch_proba(self, features):
        from alert_broker.classifiers.taxonomy import BRANCH_OF, BRANCHES

        b = self.pred.reindex(features.index).map(BRANCH_OF)
        return pd.DataFrame({k: (b == k).astype(float) for k in BRANCHES}, index=features.index)


def test_metrics_against_hand_counts():
    oids = [f"o{i}" for i in range(4)]
    truth = pd.Series(["SNIa", "SNIa", "QSO", "RRL"], index=oids)
    pred = pd.Series(["SNIa", "SNII", "QSO", "QSO"], index=oids)
    ev = evaluate(_Oracle(pred), pd.DataFrame({"x": np.zeros(4)}, index=oids), truth)
    # classes present: SNIa recall 1/2, QSO 1, RRL 0 -> balanced accuracy 0.5
    assert ev.class_balanced_accuracy == pytest.approx(0.5)
    # branches: Transient 2/2, Stochastic 1/1, Periodic 0/1
    assert ev.branch_balanced_accuracy == pytest.approx(2 / 3)
    assert (
        ev.confusion_class.loc["RRL", "QSO"] == 1 and ev.confusion_branch.loc["Transient", "Transient"] == 2
    )
    # macro F1 over SNIa (2/3), QSO (2/3), RRL (0)
    assert ev.class_macro_f1 == pytest.approx(4 / 9)


def test_alerce_vectors_map_onto_our_names(shared_data, sim_sets):
    raw = pd.read_parquet(
        shared_data / "lightcurves/alerce_labelled/alerce_some_features_150obj_15class.parquet"
    )
    mapped, notes = alerce_feature_frame(raw)
    assert len(mapped) == 150 and set(mapped.columns) <= set(feature_names())
    assert {"MHPS_ratio_1", "Psi_CS_2", "Period_band_2", "Multiband_period"} <= set(mapped.columns)
    np.testing.assert_array_equal(mapped["MHPS_low_1"].to_numpy(), raw["paps_low_1"].to_numpy())
    assert any("SPM_A_1" in n for n in notes)  # ALeRCE's set has no SPM: said, not hidden
    (feats, labels), _ = sim_sets
    model = train(feats, labels, n_estimators=20, seed=0)
    ev, _ = evaluate_alerce_features(model, shared_data)
    assert ev.n == 150 and ev.per_class["support"].sum() == 150


def test_cli_registers_train_lc_and_evaluate():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["train", "lc", "--objects", "10", "--version", "2.0.0"])
    assert args.objects == 10 and args.version == "2.0.0" and callable(args.func)
    args = parser.parse_args(["evaluate", "--seed", "7"])
    assert args.seed == 7 and args.version is None
    assert set(HIERARCHY) == {"Transient", "Stochastic", "Periodic"}


def test_cli_backend_out_and_real_options():
    from alert_broker.classifiers.training import real_set_names

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["train", "lc", "--backend", "rf", "--out", "m", "--n-jobs", "2", "--seed", "3"])
    assert (args.backend, args.models, args.n_jobs, args.seed) == ("rf", "m", 2, 3)
    assert parser.parse_args(["train", "lc"]).backend == "xgb"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "lc", "--backend", "svm"])
    args = parser.parse_args(["evaluate", "--real", "bts,simbad", "--alert-day", "30", "--objects", "0"])
    assert args.real == "bts,simbad" and args.alert_day == 30.0 and args.objects == 0
    assert parser.parse_args(["evaluate", "--real-data", "/d"]).data == "/d"
    assert real_set_names("bts, simbad", False) == ["bts", "simbad"]
    assert real_set_names(None, True) == ["alerce_features"] and real_set_names(None, False) == []
    assert len(real_set_names("all", False)) == 7 and "s82_rrlyrae" in real_set_names("all", False)
    args = parser.parse_args(["evaluate", "--real", "all", "--cross-validate", "--cv-objects", "500"])
    assert args.cross_validate and args.cv_objects == 500 and args.cv_folds == 5 and args.templates
    args = parser.parse_args(
        ["train", "lc", "--feature-version", "lc-features-1.0.0", "--history-window", "0"]
    )
    assert (args.feature_version, args.history_window) == ("lc-features-1.0.0", 0.0)
    plain = parser.parse_args(["train", "lc"])
    assert plain.short_histories == 0 and not plain.one_alert_cuts  # models before 1.6.0: none
    args = parser.parse_args(["train", "lc", "--short-histories", "22000", "--one-alert-cuts"])
    assert args.short_histories == 22000 and args.one_alert_cuts
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "lc", "--feature-version", "lc-features-0.1"])
    with pytest.raises(SystemExit, match="unknown set"):
        real_set_names("bts,nope", False)


def test_train_lc_twice_gives_the_same_model_file(tmp_path):
    """`broker train lc` end to end (simulation, decoding, features, training, registry) is a pure function of
    its arguments: the same seed writes the same model.joblib, byte for byte; another seed another one."""
    import hashlib
    import json

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    common = ["train", "lc", "--objects", "1200", "--nights", "8", "--n-estimators", "8", "--n-jobs", "2"]
    digests = {}
    for run, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        args = parser.parse_args([*common, "--seed", seed, "--out", str(tmp_path / run)])
        assert args.func(args) == 0
        folder = tmp_path / run / "lc_hierarchical" / "1.0.0"
        digests[run] = hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest()
        meta = json.loads((folder / "metadata.json").read_text())
        assert meta["backend"] == "xgb" and meta["hyperparameters"]["n_estimators"] == 8
        assert meta["training_set"]["seed"] == int(seed) and "xgboost" in meta["libraries"]
    assert digests["a"] == digests["b"] != digests["c"]


def test_train_lc_lsst_with_real_templates(tmp_path, shared_data, monkeypatch):
    """`broker train lc --survey lsst --real-data`: simulated LSST objects and real ZTF light curves seen by
    Rubin; the templates' out-of-fold figures (one per template set, every row scored) and the held-out
    simulation in the metadata, the flux feature version recorded; the combinations it cannot honour refused."""
    import json

    from alert_broker.classifiers import crossval
    from alert_broker.features import FLUX_FEATURE_VERSION

    monkeypatch.setattr(crossval, "TEMPLATE_COUNTS", {"periodic": 2, "s82": 0, "sne": 2, "bts": 0})
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    base = ["train", "lc", "--survey", "lsst", "--real-data", str(shared_data), "--objects", "2500"]
    base += ["--nights", "8", "--n-estimators", "8", "--n-jobs", "2", "--out", str(tmp_path)]
    args = parser.parse_args([*base, "--cv-folds", "2", "--eval-objects", "1500"])
    assert args.func(args) == 0
    meta = json.loads((tmp_path / "lc_hierarchical_lsst" / "1.0.0" / "metadata.json").read_text())
    assert meta["feature_version"] == FLUX_FEATURE_VERSION
    by_source = meta["training_set"]["rows_by_source"]
    assert set(by_source) == {"simulation", "template:alerce_periodic", "template:alerce_sne"}
    oof = meta["metrics"]["out_of_fold"]
    assert set(oof) == {"template:alerce_periodic", "template:alerce_sne"}
    for src, m in oof.items():
        assert m["n"] == by_source[src]  # every template row answered out of fold
        assert 0.0 <= m["class_balanced_accuracy"] <= 1.0
    assert meta["metrics"]["held_out"]["survey"] == "lsst"
    # `broker evaluate` puts the model's own template figures (in sample here) beside its recipe's out-of-fold ones
    ev = parser.parse_args(
        ["evaluate", "--name", "lc_hierarchical_lsst", "--models", str(tmp_path), "--objects", "0"]
        + ["--real-data", str(shared_data), "--cross-validate", "--cv-objects", "2500", "--cv-folds", "2"]
        + ["--cv-estimators", "8", "--nights", "8", "--out", str(tmp_path / "report")]
    )
    assert ev.func(ev) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    for src in ("template:alerce_periodic", "template:alerce_sne"):
        assert f"{src} (out-of-fold)" in report and "in sample: the model trained on these rows" in report
    with pytest.raises(SystemExit, match="drop --no-templates"):
        a = parser.parse_args([*base, "--no-templates"])
        a.func(a)
