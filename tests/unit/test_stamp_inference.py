"""Stamp classifier serving: first-alert selection, predict_proba / long rows, the cached loader."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers.stamp.inference import first_alert_mask

pytest.importorskip("keras")


def _alerts(rows):
    return pd.DataFrame(rows, columns=["oid", "candid", "mjd"])


def test_first_alert_is_the_earliest_alert_of_each_object():
    al = _alerts(
        [("a", 3, 60001.5), ("a", 2, 60001.2), ("b", 9, 60000.0), ("a", 1, 60001.2), ("c", 4, 60002.0)]
    )
    # a: two alerts at the same time -> the smaller candid; b and c alone
    assert first_alert_mask(al).tolist() == [False, False, True, True, True]


def test_an_earlier_detection_in_the_history_means_not_first():
    al = _alerts([("a", 1, 60010.0), ("b", 2, 60010.0), ("c", 3, 60010.0)])
    det = pd.DataFrame(
        {
            "oid": ["a", "a", "b", "c"],
            "candid": [1, 11, 2, 33],
            "mjd": [60010.0, 59995.0, 60010.0, 60011.0],  # a: detected 15 d before; c: only later
        }
    )
    assert first_alert_mask(al, det).tolist() == [False, True, True]
    assert first_alert_mask(al, det, known_oids=["b"]).tolist() == [False, False, True]
    assert first_alert_mask(al.iloc[:0]).tolist() == []


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from alert_broker.classifiers.registry import save_keras
    from alert_broker.classifiers.stamp.dataset import build_stamp_set
    from alert_broker.classifiers.stamp.model import CNNConfig
    from alert_broker.classifiers.stamp.training import fit_model, inference_copy, model_metadata

    root = tmp_path_factory.mktemp("models")
    data = build_stamp_set(6, 30)
    model = fit_model(data, seed=1, epochs=2)
    meta = model_metadata(data, CNNConfig(), seed=1, epochs=2, seconds=0.0)
    save_keras(inference_copy(model), name="stamp_classifier", version="0.0.1", metadata=meta, root=root)
    return root


@pytest.fixture(scope="module")
def batch():
    """Decoded first alerts and stamps of a small simulation, as the pipeline's tables."""
    from alert_broker.classifiers.stamp.dataset import simulated_first_alerts

    alerts, stamps = simulated_first_alerts(600, seed=12)
    return alerts.drop(columns=["class", "sim_class"]), stamps


def test_predict_proba_is_indexed_by_candid_and_sums_to_one(registry, batch):
    from alert_broker.classifiers.stamp.inference import StampClassifier

    alerts, stamps = batch
    clf = StampClassifier.load(root=registry)
    assert clf.version == "0.0.1" and clf.name == "stamp_classifier"
    stamps = stamps.copy()
    stamps.loc[stamps.index[0], "cutout_template"] = None  # an alert without a template is not classified
    p = clf.predict_proba(alerts, stamps.iloc[::-1])  # stamps in another order: joined on candid
    assert p.index.name == "candid" and list(p.columns) == ["oid", "SN", "AGN", "VS", "asteroid", "bogus"]
    assert len(p) == len(alerts) - 1 and alerts["candid"].iloc[0] not in p.index
    np.testing.assert_allclose(p.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-9)
    assert (p["oid"] == alerts.set_index("candid").loc[p.index, "oid"]).all()
    raw = clf.predict_proba(alerts, stamps, rules=None)
    sso = alerts.set_index("candid").loc[p.index, "ssdistnr"].between(0, 5).to_numpy()
    assert sso.any() and (p["asteroid"].to_numpy()[sso] == 1.0).all()  # the SSO rule ...
    assert (raw["asteroid"].to_numpy()[sso] < 1.0).all()  # ... and not the network


def test_long_rows_have_the_light_curve_classifier_format(registry, batch):
    from alert_broker.classifiers.hierarchical import _long
    from alert_broker.classifiers.stamp.inference import StampClassifier

    alerts, stamps = batch
    clf = StampClassifier.load(root=registry)
    rows = clf.probabilities_long(alerts.iloc[:20], stamps)
    reference = _long(
        pd.DataFrame([[0.1, 0.9]], index=pd.Index(["x"], name="oid"), columns=["A", "B"]), "lc", "1"
    )
    assert list(rows.columns) == list(reference.columns)
    assert (rows.dtypes == reference.dtypes).all()
    assert len(rows) == 20 * 5 and set(rows["classifier_name"]) == {"stamp_classifier"}
    for _, g in rows.groupby("oid"):
        assert sorted(g["ranking"]) == [1, 2, 3, 4, 5]
        assert g.loc[g["ranking"] == 1, "probability"].iloc[0] == g["probability"].max()
        assert g["probability"].sum() == pytest.approx(1.0)


def test_classify_first_alerts_uses_the_cached_model_and_only_first_alerts(registry, batch):
    from alert_broker.classifiers.stamp.inference import classify_first_alerts, load_stamp_classifier

    alerts, stamps = batch
    assert load_stamp_classifier(registry, "stamp_classifier", None) is load_stamp_classifier(
        registry, "stamp_classifier", None
    )
    later = alerts.iloc[:3].assign(candid=alerts["candid"].iloc[:3] + 1, mjd=alerts["mjd"].iloc[:3] + 1.0)
    both = pd.concat([alerts, later], ignore_index=True)
    rows = classify_first_alerts(both, stamps, (registry, "stamp_classifier", None))
    assert rows["oid"].nunique() == len(alerts) and len(rows) == 5 * len(alerts)
    empty = classify_first_alerts(
        alerts.iloc[:0], stamps.iloc[:0], (str(registry), "stamp_classifier", "0.0.1")
    )
    assert empty.empty and list(empty.columns) == list(rows.columns)


def test_a_model_made_for_other_inputs_is_refused(registry, tmp_path):
    import shutil

    from alert_broker.classifiers.stamp.inference import StampClassifier

    shutil.copytree(registry / "stamp_classifier", tmp_path / "stamp_classifier")
    md_path = tmp_path / "stamp_classifier" / "0.0.1" / "metadata.json"
    md = json.loads(md_path.read_text())
    md["feature_version"] = "stamp-inputs-0.1"
    md_path.write_text(json.dumps(md))
    with pytest.raises(ValueError, match="retrain"):
        StampClassifier.load(root=tmp_path)


def test_a_model_serves_the_rules_its_metadata_names(registry, batch, tmp_path):
    import shutil

    from alert_broker.classifiers.stamp.inference import StampClassifier
    from alert_broker.classifiers.stamp.rules import DEFAULT_RULES, SKY_PRIOR_RULES, apply_rules, rule_names

    alerts, stamps = batch
    old = StampClassifier.load(root=registry)
    assert old.rules == DEFAULT_RULES  # a version that names none runs ALeRCE's
    shutil.copytree(registry / "stamp_classifier", tmp_path / "stamp_classifier")
    md_path = tmp_path / "stamp_classifier" / "0.0.1" / "metadata.json"
    md = json.loads(md_path.read_text())
    md["rules"] = rule_names(SKY_PRIOR_RULES)
    md_path.write_text(json.dumps(md))
    new = StampClassifier.load(root=tmp_path)
    assert new.rules == SKY_PRIOR_RULES
    raw = new.predict_proba(alerts, stamps, rules=None)
    al = alerts.set_index("candid").loc[raw.index].reset_index()
    expected = apply_rules(
        raw[["SN", "AGN", "VS", "asteroid", "bogus"]].reset_index(drop=True), al, SKY_PRIOR_RULES
    )
    served = new.predict_proba(alerts, stamps)
    np.testing.assert_allclose(served.iloc[:, 1:].to_numpy(), expected.to_numpy(), atol=1e-12)
    legacy = new.predict_proba(alerts, stamps, rules=DEFAULT_RULES)  # an explicit choice still wins
    assert not np.allclose(legacy.iloc[:, 1:].to_numpy(), served.iloc[:, 1:].to_numpy())
    with pytest.raises(ValueError, match="rule functions"):
        new.predict_proba(alerts, stamps, rules="alerce")
    md["rules"] = ["a_rule_of_newer_code"]
    md_path.write_text(json.dumps(md))
    with pytest.raises(ValueError, match="unknown stamp rules"):
        StampClassifier.load(root=tmp_path)
