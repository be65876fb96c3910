"""The LSST stamp model's recipe: Rubin's cutouts cropped as such, its metadata, its simulated training set, the
Rubin solar-system association in the rules, and a tiny model that learns and is served for LSST alerts only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers.stamp.dataset import balanced_fractions, build_stamp_set
from alert_broker.classifiers.stamp.metadata import LSST_FEATURES, METADATA_SPEC, metadata_frame
from alert_broker.classifiers.stamp.rules import apply_rules, known_solar_system_object
from alert_broker.classifiers.stamp.surveys import LSST, STAMP_SURVEYS, ZTF, stamp_survey
from alert_broker.classifiers.stamp.taxonomy import SIM_TO_STAMP, STAMP_CLASSES

NAMES = np.array(STAMP_CLASSES, dtype=object)


@pytest.fixture(scope="module")
def lsst_set():
    return build_stamp_set(3, 60, survey="lsst")


def test_recipes_name_their_model_crop_and_rules():
    assert stamp_survey("LSST") is LSST and set(STAMP_SURVEYS) == {"ztf", "lsst"}
    assert (ZTF.model_name, ZTF.crop_size) == ("stamp_classifier", 21)
    assert (LSST.model_name, LSST.crop_size) == ("stamp_classifier_lsst", 30)
    assert set(LSST.first_alert_yield) == set(SIM_TO_STAMP) == set(ZTF.first_alert_yield)
    with pytest.raises(ValueError, match="known: \\['lsst', 'ztf'\\]"):
        stamp_survey("atlas")


def test_balanced_fractions_follow_each_surveys_yields():
    # share / yield: a class half as likely to alert on a night is simulated twice as often
    for survey, recipe in STAMP_SURVEYS.items():
        fr = balanced_fractions(survey)
        assert fr["bogus"] == pytest.approx(1.0 / recipe.first_alert_yield["bogus"])
        assert fr["SNIa"] * recipe.first_alert_yield["SNIa"] == pytest.approx(0.5)


def test_lsst_magnitude_reads_magpsf_on_lsst_range():
    m = metadata_frame(pd.DataFrame({"magpsf": [24.8, 27.5, np.nan, 12.0]}))
    # ZTF's field clips at 23 (its depth); LSST's keeps 24.8 and clips at its own 26.5 / 14
    assert m["magpsf"].tolist() == pytest.approx([23.0, 23.0, METADATA_SPEC["magpsf"][0], 12.0])
    assert m["lsst_magpsf"].tolist() == pytest.approx([24.8, 26.5, METADATA_SPEC["lsst_magpsf"][0], 14.0])


def test_lsst_set_is_balanced_rubin_first_alerts(lsst_set):
    assert lsst_set.counts() == {c: 60 for c in STAMP_CLASSES}
    f = lsst_set.frame
    assert (f["survey"] == "lsst").all() and f["oid"].str.startswith("LSST").all()
    assert f["oid"].is_unique and f["candid"].is_unique
    assert lsst_set.images.shape == (300, 30, 30, 3) and np.isfinite(lsst_set.images).all()
    assert lsst_set.features == LSST_FEATURES and lsst_set.metadata.shape == (300, 3)
    # the truth travels by candid: Rubin names its solar-system sources LSSTSSO<ssObjectId>, its others
    # LSST<diaObjectId>, so the labels can be checked against what the packets themselves say
    asteroid = NAMES[lsst_set.labels] == "asteroid"
    assert f.loc[asteroid, "oid"].str.startswith("LSSTSSO").all()
    assert not f.loc[~asteroid, "oid"].str.startswith("LSSTSSO").any()
    assert (f.loc[asteroid, "ssObjectId"] != 0).all() and (
        f.loc[~asteroid, "ssObjectId"].fillna(0) == 0
    ).all()
    assert (f["sim_class"].map(SIM_TO_STAMP) == NAMES[lsst_set.labels]).all()


def test_rubin_association_makes_an_asteroid():
    p = pd.DataFrame(np.full((3, 5), 0.2), columns=list(STAMP_CLASSES))
    alerts = pd.DataFrame({"ssObjectId": pd.array([0, 21164723922809664, None], dtype="Int64")})
    out = known_solar_system_object(p, alerts)
    assert out["asteroid"].tolist() == [0.2, 1.0, 0.2]
    assert out.loc[1, ["SN", "AGN", "VS", "bogus"]].tolist() == [0.0] * 4
    # ZTF's own test is unchanged beside it (a named SSO within 5")
    ztf = pd.DataFrame({"ssdistnr": [1.0, 30.0], "ssnamenr": ["123", "456"]})
    assert known_solar_system_object(p.iloc[:2], ztf)["asteroid"].tolist() == [1.0, 0.2]
    assert apply_rules(p, alerts).to_numpy().sum(axis=1) == pytest.approx(1.0)


def test_a_tiny_lsst_model_learns_and_is_served_from_the_registry(tmp_path):
    pytest.importorskip("keras")
    from alert_broker.classifiers.stamp.dataset import simulated_first_alerts
    from alert_broker.classifiers.stamp.inference import StampClassifier
    from alert_broker.classifiers.stamp.training import train_stamp_model

    result = train_stamp_model(
        seed=2, n_per_class=60, epochs=4, out_root=tmp_path, version="0.0.1", survey="lsst"
    )
    meta = result.metadata
    assert result.path == tmp_path / "stamp_classifier_lsst" / "0.0.1"
    assert (meta["survey"], meta["crop_size"], meta["features"]) == ("lsst", 30, list(LSST_FEATURES))
    assert meta["rules"] == list(LSST.rules)
    clf = StampClassifier.load("stamp_classifier_lsst", root=tmp_path)
    assert (clf.survey, clf.crop_size, clf.runtime) == ("lsst", 30, "onnx")
    alerts, stamps = simulated_first_alerts(2000, seed=12, survey="lsst")
    proba = clf.predict_proba(alerts, stamps, rules=None)
    truth = alerts.set_index("candid").loc[proba.index, "class"].to_numpy()
    called = NAMES[proba[list(STAMP_CLASSES)].to_numpy().argmax(axis=1)]
    assert len(proba) == len(alerts) > 100 and (called == truth).mean() > 0.4  # chance is 0.2
    with pytest.raises(ValueError, match="labelled real stamps are ZTF's"):
        train_stamp_model(seed=2, n_per_class=5, epochs=1, out_root=tmp_path, survey="lsst", real_data="x")
