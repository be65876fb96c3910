"""Real labelled sets for the light-curve classifier: loaders on the shared data (read in place), checked against
what the files themselves say (label counts, positions, catalogue periods, detection counts), and the real-data
sections of the evaluation report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers import CLASSES, HierarchicalClassifier
from alert_broker.classifiers.evaluate import evaluate_real, write_report
from alert_broker.classifiers.real_sets import (
    ALERCE_DIR,
    BTS_DIR,
    REAL_SETS,
    S82_DIR,
    SIMBAD_CLASSES,
    alerce_features,
    alerce_labelled,
    alerce_periodic,
    alerce_sne,
    alert_window,
    bts,
    load_real_set,
    s82_rrlyrae,
    simbad,
)
from alert_broker.features import feature_names
from alert_broker.features.lightcurve.prepare import RB_MIN

BOOKKEEPING = {"FEATURE_VERSION", "lastmjd", "night"}


def check_shape(feats: pd.DataFrame, labels: pd.Series, min_finite: int = 20) -> None:
    """Aligned, unique oids; our feature names only; labels in the taxonomy; no object without features."""
    assert len(feats) > 0 and feats.index.equals(labels.index) and feats.index.is_unique
    assert set(feats.columns) - BOOKKEEPING <= set(feature_names())
    assert set(labels) <= set(CLASSES)
    numeric = feats.drop(columns=[c for c in BOOKKEEPING if c in feats.columns]).to_numpy(dtype=float)
    assert (np.isfinite(numeric).sum(axis=1) >= min_finite).all()  # no all-NaN (or nearly) feature row
    assert isinstance(feats.attrs.get("notes"), list)


def test_alerce_sne_counts_match_the_readme_and_the_detections(shared_data):
    feats, labels = alerce_sne(shared_data)
    check_shape(feats, labels, min_finite=60)
    assert labels.value_counts().to_dict() == {"SNIa": 19, "SNIbc": 8, "SLSN": 2, "SNII": 1}
    # An alert 30 days after discovery: objects with >= 6 good detections (rb >= 0.3 since lc-features-1.1.0,
    # 0 < sigma < 1, one per epoch) in g or r among the first 30 days, counted straight from the CSV.
    det = pd.read_csv(shared_data / ALERCE_DIR / "30_sne_detections_corr.csv")
    first = det.groupby("objectId")["mjd"].transform("min")
    good = det[
        (det["mjd"] <= first + 30) & (det["rb"] >= RB_MIN) & (det["sigmapsf"].between(0, 1, "neither"))
    ]
    counts = good.groupby(["objectId", "fid"])["mjd"].nunique().unstack()
    expected = set(counts.index[(counts >= 6).any(axis=1)])
    feats30, labels30 = alerce_sne(shared_data, alert_day=30)
    assert set(feats30.index) == expected and len(expected) < 30
    assert feats30["delta_mjd_fid_2"].max() <= 30.0


def test_alert_window_keeps_thirty_days_before_the_alert():
    det = pd.DataFrame({"oid": ["a"] * 5 + ["b"] * 2, "mjd": [100.0, 110, 129, 131, 160, 50, 95]})
    nd = pd.DataFrame({"oid": ["a", "a", "a", "b"], "mjd": [95.0, 105.0, 140.0, 60.0]})
    d, n = alert_window(det, nd, 40.0)  # alerts at 140 (a) and 90 (b): windows [110, 140] and [60, 90]
    assert d.groupby("oid")["mjd"].apply(list).to_dict() == {"a": [110.0, 129.0, 131.0]}
    assert n["mjd"].tolist() == [140.0, 60.0]
    same = alert_window(det, nd, None)
    assert same[0] is det and same[1] is nd


def test_alerce_labelled_and_features_keep_alerce_labels(shared_data):
    feats, labels = alerce_labelled(shared_data)
    check_shape(feats, labels, min_finite=80)
    raw = pd.read_csv(shared_data / ALERCE_DIR / "100_objects_labels.csv")["classALeRCE"]
    assert len(feats) == 98 and labels.value_counts().to_dict() == raw.value_counts().to_dict()
    assert "SPM_A_1" in feats.columns and "W1-W2" not in feats.columns
    f150, l150 = alerce_features(shared_data)
    check_shape(f150, l150, min_finite=60)
    assert len(f150) == 150 and (l150.value_counts() == 10).all() and l150.nunique() == 15


def test_alerce_periodic_periods_agree_with_the_catalogue(shared_data):
    feats, labels = alerce_periodic(shared_data)
    check_shape(feats, labels, min_finite=40)
    assert labels.value_counts().to_dict() == dict.fromkeys(["CEP", "DSCT", "E", "LPV", "RRL"], 5)
    meta = pd.read_parquet(shared_data / ALERCE_DIR / "alerce_periodic_light_curve_labels_25obj.parquet")
    catalogue = pd.to_numeric(meta["period"], errors="coerce").reindex(feats.index)
    ratio = (feats["Multiband_period"] / catalogue).dropna()
    # our periodogram on ALeRCE's light curves finds the catalogue period (or half of it, for binaries)
    hits = (np.abs(ratio - 1) < 0.02) | (np.abs(ratio - 0.5) < 0.01)
    assert len(ratio) >= 15 and hits.sum() >= 10


def test_bts_subset_positions_and_labels(shared_data):
    feats, labels = bts(shared_data, limit=40)
    check_shape(feats, labels, min_finite=40)
    assert set(labels) == {"SNIa"} and 15 <= len(feats) <= 40
    meta = pd.read_csv(shared_data / BTS_DIR / "bts.csv").drop_duplicates("ZTFID").set_index("ZTFID")
    # RA/Dec parsed from the sexagesimal strings, through our galactic conversion, give BTS's own latitude
    np.testing.assert_allclose(feats["gal_b"], meta.loc[feats.index, "b"], atol=1e-3)
    assert feats["rb"].isna().all()  # said in the notes: BTS gives no rb
    assert any("SN Ia" in n for n in feats.attrs["notes"])


def test_s82_rr_lyrae_as_a_real_set(shared_data):
    feats, labels = s82_rrlyrae(shared_data)
    check_shape(feats, labels, min_finite=40)
    periods = pd.read_csv(shared_data / S82_DIR / "periods.csv")
    assert len(feats) == len(periods) == 483 and set(labels) == {"RRL"}
    assert feats.index.str.startswith("S82-").all()  # the same names as their templates' parents
    assert "s82_rrlyrae" in REAL_SETS


def test_simbad_weak_labels_follow_the_documented_mapping(shared_data):
    from alert_broker.surveys.ztf import decode_packet

    feats, labels = simbad(shared_data)
    check_shape(feats, labels, min_finite=40)
    raw = {}
    for f in sorted((shared_data / "ztf" / "simbad_labelled").glob("*.avro")):
        for rec in decode_packet(f.read_bytes()):
            raw[rec["objectId"]] = rec["cdsxmatch"]
    assert all(SIMBAD_CLASSES[raw[oid]] == lab for oid, lab in labels.items())
    assert len(labels) >= 15 and labels.nunique() >= 5
    assert SIMBAD_CLASSES["Seyfert_2"] == "AGN" and "SN" not in SIMBAD_CLASSES  # no subtype: not a class


def test_evaluate_real_sections(shared_data, tmp_path):
    x, y = alerce_features(shared_data)
    model = HierarchicalClassifier(n_estimators=10, outlier_estimators=10, random_state=0).fit(x, y)
    results = evaluate_real(model, shared_data, ["alerce_sne", "alerce_labelled"], alert_day=None)
    assert list(results) == ["alerce_sne (real)", "alerce_labelled (real)"]
    sne = results["alerce_sne (real)"]
    assert sne.n == 30 and sne.n_classes == 4 and sne.confusion_class.to_numpy().sum() == 30
    assert set(sne.summary()["recall"]) == {"SNIa", "SNIbc", "SNII", "SLSN"}
    report = write_report(results, tmp_path).read_text()
    assert "## alerce_sne (real)" in report and REAL_SETS["alerce_sne"][1] in report
    assert "### Confusion (counts; rows true, columns predicted)" in report and "Notes:" in report
    with pytest.raises(ValueError, match="unknown real set"):
        load_real_set("nope", shared_data)


def test_short_history_rows_are_the_sets_cut_to_one_alert(shared_data):
    """The rows lc_hierarchical 1.6.0 trains on beside the whole light curves: ALeRCE's periodic variables and
    SNe as one alert 30 days after the first detection carries them, grouped with their object's whole light
    curve (so the cross-validation holds both out together)."""
    from alert_broker.classifiers.crossval import SHORT_HISTORY_SETS, real_rows, short_history_rows

    cut = short_history_rows(shared_data, weight=2.0)
    whole = real_rows(shared_data, SHORT_HISTORY_SETS)
    assert set(cut.sources) == {"alerce_periodic@30", "alerce_sne@30"} and (cut.weights == 2.0).all()
    assert cut.features.index.str.match(r"alerce_(periodic|sne)@30/").all()
    # every cut's object has a whole light curve; not every whole light curve has a cut
    assert set(cut.groups) < set(whole.groups)
    # one alert's history: at most 30 days of light curve, never more detections than the whole curve
    assert (cut.features["delta_mjd_fid_2"].dropna() <= 30.0).all()
    by_oid = whole.features.set_axis(whole.groups.to_numpy())["n_det_2"]
    n_cut = cut.features.set_axis(cut.groups.to_numpy())["n_det_2"]
    assert (n_cut.fillna(0) <= by_oid.reindex(n_cut.index).fillna(0)).all()
    assert (n_cut.fillna(0) < by_oid.reindex(n_cut.index).fillna(0)).mean() > 0.5
    feats, labels = alerce_periodic(shared_data, alert_day=30)
    assert cut.labels[cut.sources == "alerce_periodic@30"].tolist() == labels.tolist()
    assert len(feats) == (cut.sources == "alerce_periodic@30").sum() < 25
