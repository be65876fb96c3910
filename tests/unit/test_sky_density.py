"""The Galactic-latitude prior: its densities are relative to the survey's sky, its weights are Bayes' rule, and a
hierarchical model that names it answers with it at both levels."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers import BRANCHES, CLASSES, HIERARCHY, HierarchicalClassifier
from alert_broker.classifiers.sky_density import (
    CLASS_POPULATION,
    FOOTPRINT_AREA_SHARE,
    FOOTPRINT_MIN_DEC_DEG,
    GALACTIC_LATITUDE_PRIOR,
    LATITUDE_DENSITY,
    LATITUDE_EDGES_DEG,
    LATITUDE_PRIOR_EXPONENT,
    apply_latitude_prior,
    apply_sky_prior,
    gal_b_column,
    latitude_weights,
)
from tests.unit.test_clf_hierarchical import synthetic


def test_footprint_area_shares_match_an_independent_sky():
    """Area shares per |b| bin of dec > -30 deg, from random points through astropy's Galactic frame."""
    from astropy.coordinates import SkyCoord

    rng = np.random.default_rng(7)
    n = 400_000
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.rad2deg(np.arcsin(rng.uniform(np.sin(np.deg2rad(FOOTPRINT_MIN_DEC_DEG)), 1.0, n)))
    b = SkyCoord(ra=ra, dec=dec, unit="deg").galactic.b.deg
    shares = np.histogram(np.abs(b), LATITUDE_EDGES_DEG)[0] / n
    np.testing.assert_allclose(FOOTPRINT_AREA_SHARE, shares, atol=0.002)
    assert sum(FOOTPRINT_AREA_SHARE) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("population", sorted(LATITUDE_DENSITY))
def test_every_density_averages_to_one_over_the_survey_sky(population):
    d = np.asarray(LATITUDE_DENSITY[population])
    assert len(d) == len(LATITUDE_EDGES_DEG) - 1 and (d > 0).all()  # no bin rules a class out
    assert float(np.dot(d, FOOTPRINT_AREA_SHARE)) == pytest.approx(1.0, abs=2e-3)


def test_the_populations_behave_as_the_sky_does():
    e, rrl, xgal = LATITUDE_DENSITY["E"], LATITUDE_DENSITY["RRL"], LATITUDE_DENSITY["extragalactic"]
    assert e[1] > 100 * e[-1]  # disk stars crowd the plane
    assert 0.3 < rrl[-1] < 1.0 < rrl[1] < 10  # halo RR Lyrae much less so
    assert np.all(np.diff(xgal) > 0)  # the dust thins away from it
    assert xgal[0] < 0.05 < 1.0 < xgal[-1]
    assert set(CLASS_POPULATION.values()) <= set(LATITUDE_DENSITY)
    assert {c for c in CLASSES if c not in CLASS_POPULATION} == set()  # every light-curve class has a prior


def test_weights_pick_the_bin_of_abs_b_and_are_one_where_unknown():
    classes = ["E", "SNIa", "asteroid"]
    b = np.array([0.0, -1.99, 2.0, -45.0, 90.0, np.nan, -999.0, 120.0])
    w = latitude_weights(classes, b)
    e, x = LATITUDE_DENSITY["E"], LATITUDE_DENSITY["extragalactic"]
    np.testing.assert_allclose(w[:5, 0], [e[0], e[0], e[1], e[7], e[8]])
    np.testing.assert_allclose(w[:5, 1], [x[0], x[0], x[1], x[7], x[8]])
    np.testing.assert_allclose(w[:, 2], 1.0)  # a class without a population
    np.testing.assert_allclose(w[5:], 1.0)  # NaN, ZTF's -999, nonsense
    np.testing.assert_allclose(latitude_weights(classes, [30.0]), latitude_weights(classes, [-30.0]))


def test_the_prior_is_bayes_rule_and_keeps_rows_that_sum_to_zero():
    proba = pd.DataFrame(
        [[0.5, 0.3, 0.2], [0.0, 0.0, 0.0]], columns=["LPV", "QSO", "asteroid"], index=["a", "b"]
    )
    out = apply_latitude_prior(proba, [50.0, 50.0], exponent=1.0)
    np.testing.assert_allclose(out.loc["a"].sum(), 1.0)
    lpv, xgal = LATITUDE_DENSITY["LPV"][7], LATITUDE_DENSITY["extragalactic"][7]
    assert out.loc["a", "LPV"] / out.loc["a", "QSO"] == pytest.approx((0.5 * lpv) / (0.3 * xgal), rel=1e-12)
    assert out.loc["a", "QSO"] / out.loc["a", "asteroid"] == pytest.approx(1.5 * xgal, rel=1e-12)
    np.testing.assert_allclose(out.loc["b"], 0.0)
    half = apply_latitude_prior(proba, [50.0, 50.0])  # the shipped exponent: odds scale by sqrt(density)
    assert LATITUDE_PRIOR_EXPONENT == 0.5
    assert half.loc["a", "LPV"] / half.loc["a", "QSO"] == pytest.approx(
        5 / 3 * np.sqrt(lpv / xgal), rel=1e-12
    )
    assert list(out.index) == ["a", "b"] and list(out.columns) == list(proba.columns)
    with pytest.raises(ValueError, match="unknown sky prior"):
        apply_sky_prior("galactic-latitude-0", proba, [0.0, 0.0])


def test_the_latitude_column_is_read_leniently():
    frame = pd.DataFrame({"gal_b": [12.5, None, "n/a", -999.0]}, dtype=object)
    np.testing.assert_array_equal(gal_b_column(frame), [12.5, np.nan, np.nan, -999.0])
    assert np.isnan(gal_b_column(pd.DataFrame({"oid": ["a", "b"]}))).all()


@pytest.fixture(scope="module")
def fitted() -> HierarchicalClassifier:
    x, y = synthetic(12, seed=1)
    return HierarchicalClassifier(n_estimators=25, outlier_estimators=25, random_state=0).fit(x, y)


def test_a_model_that_names_the_prior_answers_with_it_at_both_levels(fitted):
    x, _ = synthetic(3, seed=2)
    x["gal_b"] = np.resize([1.0, 12.0, -70.0, np.nan], len(x))  # a column the model never trained on
    plain = fitted.predict_proba(x)
    model = pickle.loads(pickle.dumps(fitted))
    model.sky_prior_ = GALACTIC_LATITUDE_PRIOR
    p = model.predict_proba(x)
    pd.testing.assert_frame_equal(p, apply_latitude_prior(plain, x["gal_b"].to_numpy()))
    top = model.predict_branch_proba(x)
    for b, classes in HIERARCHY.items():  # P(branch) is still the sum of its classes
        np.testing.assert_allclose(p[list(classes)].sum(axis=1), top[b], atol=1e-12)
    long, outliers = model.classify(x)
    wide = long[long["classifier_name"] == "lc_hierarchical"].pivot(index="oid", columns="class_name")
    np.testing.assert_allclose(wide["probability"][list(CLASSES)].loc[p.index], p, atol=1e-12)
    best = top.columns.to_numpy()[top.to_numpy().argmax(axis=1)]
    assert (outliers.set_index("oid").loc[top.index, "branch"].to_numpy() == best).all()
    unknown = x["gal_b"].isna().to_numpy()
    np.testing.assert_allclose(p[unknown], plain[unknown], atol=1e-15)  # no latitude, no prior
    assert (np.abs(p[~unknown] - plain[~unknown]).to_numpy().max(axis=1) > 1e-3).any()  # and it acts
    no_b = x.drop(columns="gal_b")  # without a latitude the model answers as without the prior
    pd.testing.assert_frame_equal(model.predict_proba(no_b), fitted.predict_proba(no_b))
    assert set(top.columns) == set(BRANCHES)


def test_models_pickled_before_the_prior_load_without_it(fitted):
    state = fitted.__getstate__()
    state.pop("sky_prior_")
    model = HierarchicalClassifier.__new__(HierarchicalClassifier)
    model.__setstate__(state)
    assert model.sky_prior_ is None


def test_the_shipped_default_light_curve_model_names_the_prior_and_its_figures_show_it():
    from alert_broker.classifiers import load

    model = load("lc_hierarchical", "1.5.0")
    assert model.sky_prior_ == GALACTIC_LATITUDE_PRIOR == model.metadata["sky_prior"]
    assert load("lc_hierarchical", "1.4.0").sky_prior_ is None  # older versions answer as before
    m = model.metadata["metrics"]
    with_prior, without = m["out_of_fold"], m["out_of_fold_without_sky_prior"]
    for name in ("alerce_labelled", "simbad"):  # the sets whose objects sit at real, varied latitudes
        assert with_prior[name]["class_balanced_accuracy"] > without[name]["class_balanced_accuracy"] + 0.05
    for name in ("alerce_periodic", "s82_rrlyrae"):  # no positions: untouched
        assert with_prior[name] == without[name]
    assert m["held_out_simulation"]["branch_balanced_accuracy"] >= 0.95
    assert m["held_out_simulation"]["class_macro_f1"] >= 0.85


def test_the_shipped_default_also_learnt_one_alerts_history():
    """lc_hierarchical 1.6.0 (the default): 1.5.0's recipe and prior, plus the real light curves cut to one alert's
    30-day history in training; its out-of-fold figures include those cuts, BTS at one alert's history is
    scored by a model that saw no BTS object, and the held-out targets still hold."""
    from alert_broker.classifiers import load

    model = load("lc_hierarchical")
    assert model.metadata["version"] == "1.6.0" and model.sky_prior_ == GALACTIC_LATITUDE_PRIOR
    short = model.metadata["training_set"]["short_histories"]
    assert short["real_sets"] == ["alerce_periodic@30", "alerce_sne@30"] and short["objects"] == 0
    assert short["history_days"] == 30.0
    m = model.metadata["metrics"]
    assert {"alerce_periodic@30", "alerce_sne@30"} <= set(m["out_of_fold"])
    assert m["out_of_fold"]["alerce_periodic@30"]["n"] == 15 and m["out_of_fold"]["alerce_sne@30"]["n"] == 23
    assert m["leave_set_out"]["bts"]["class_balanced_accuracy"] >= 0.85  # issue 17's BTS target
    assert m["leave_set_out"]["bts@30"]["n"] == 1315
    assert m["held_out_simulation"]["branch_balanced_accuracy"] >= 0.95
    assert m["held_out_simulation"]["class_macro_f1"] >= 0.85
    assert m["held_out_simulation_30d"]["n"] > 1000  # the held-out objects seen as one alert sees them
