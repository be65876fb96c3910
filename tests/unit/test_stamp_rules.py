"""Business rules after the stamp CNN: each rule on analytic cases, then the chain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers.stamp.metadata import sky_latitudes
from alert_broker.classifiers.stamp.rules import (
    ASTEROID_ECLIPTIC_SIGMA_DEG,
    ASTEROID_SKY_FLOOR,
    DEFAULT_RULES,
    RULES_BY_NAME,
    SKY_PRIOR_RULES,
    apply_rules,
    asteroid_sky_weight,
    asteroids_keep_near_the_ecliptic,
    known_solar_system_object,
    negative_difference_is_not_sn,
    renormalise,
    rule_names,
    rules_named,
    star_counterpart_is_not_sn,
)
from alert_broker.classifiers.stamp.taxonomy import STAMP_CLASSES

P = [0.5, 0.2, 0.2, 0.05, 0.05]  # SN, AGN, VS, asteroid, bogus


def _proba(*rows) -> pd.DataFrame:
    return pd.DataFrame([list(r) for r in rows], columns=list(STAMP_CLASSES))


def test_negative_difference_removes_sn_and_keeps_the_other_ratios():
    alerts = pd.DataFrame({"isdiffpos": np.array([-1, 1], dtype=np.int8)})
    out = negative_difference_is_not_sn(_proba(P, P), alerts)
    np.testing.assert_allclose(out.iloc[0], [0.0, 0.4, 0.4, 0.1, 0.1])
    np.testing.assert_allclose(out.iloc[1], P)  # a positive difference is left alone


def test_negative_difference_reads_raw_ztf_strings():
    out = negative_difference_is_not_sn(_proba(P, P), pd.DataFrame({"isdiffpos": ["f", "t"]}))
    assert out["SN"].tolist() == [0.0, 0.5]


@pytest.mark.parametrize(
    ("sgscore1", "distpsnr1", "fires"),
    [
        (0.9, 0.5, True),  # a star under the alert
        (0.9, 1.5, False),  # a star, but 1.5" away: a host-less SN next to a star stays possible
        (0.3, 0.5, False),  # a galaxy under the alert: the SN host
        (0.5, 0.2, False),  # PS1's undecided 0.5 is not > 0.5
        (-999.0, -999.0, False),  # no PS1 source
    ],
)
def test_star_counterpart_rule(sgscore1, distpsnr1, fires):
    alerts = pd.DataFrame({"sgscore1": [sgscore1], "distpsnr1": [distpsnr1]})
    out = star_counterpart_is_not_sn(_proba(P), alerts)
    if fires:
        np.testing.assert_allclose(out.iloc[0], [0.0, 0.4, 0.4, 0.1, 0.1])
    else:
        np.testing.assert_allclose(out.iloc[0], P)


@pytest.mark.parametrize(
    ("ssdistnr", "ssnamenr", "fires"),
    [
        (0.0, "2012LU23", True),
        (2.0, "175766", True),
        (5.0, "8806", True),  # at the radius
        (6.0, "8806", False),  # beyond it: an SSO passing nearby is not this source
        (-999.0, "null", False),  # ZTF's "no match"
        (60.0, "null", False),  # the no-match values of Fink-serialised alerts
        (0.0, "null", False),  # a distance without a name is no match
        (np.nan, None, False),
    ],
)
def test_known_solar_system_object_rule(ssdistnr, ssnamenr, fires):
    alerts = pd.DataFrame({"ssdistnr": [ssdistnr], "ssnamenr": [ssnamenr]})
    out = known_solar_system_object(_proba(P), alerts)
    expected = [0, 0, 0, 1, 0] if fires else P
    np.testing.assert_allclose(out.iloc[0], expected)


def test_solar_system_rule_radius_is_a_parameter_and_name_is_optional():
    alerts = pd.DataFrame({"ssdistnr": [12.0]})  # ALeRCE's 21 labelled alerts carry no ssnamenr column
    assert known_solar_system_object(_proba(P), alerts)["asteroid"].iloc[0] == 0.05
    assert known_solar_system_object(_proba(P), alerts, max_dist_arcsec=30)["asteroid"].iloc[0] == 1.0


def test_a_row_whose_mass_was_all_sn_spreads_evenly():
    out = negative_difference_is_not_sn(_proba([1.0, 0, 0, 0, 0]), pd.DataFrame({"isdiffpos": [-1]}))
    np.testing.assert_allclose(out.iloc[0], [0.0, 0.25, 0.25, 0.25, 0.25])


def test_renormalise_and_empty_rows():
    out = renormalise(_proba([2, 1, 1, 0, 0], [0, 0, 0, 0, 0]))
    np.testing.assert_allclose(out.iloc[0], [0.5, 0.25, 0.25, 0, 0])
    np.testing.assert_allclose(out.iloc[1], [0.2] * 5)


def test_chain_applies_every_rule_and_asteroid_overrides():
    alerts = pd.DataFrame(
        {
            "isdiffpos": np.array([-1, 1, 1, -1], dtype=np.int8),
            "sgscore1": [0.1, 0.99, 0.1, 0.99],
            "distpsnr1": [5.0, 0.2, 5.0, 0.2],
            "ssdistnr": [-999.0, -999.0, -999.0, 1.0],
            "ssnamenr": ["null", "null", "null", "433"],
        },
        index=[10, 11, 12, 13],  # the rules align by position, whatever the index
    )
    out = apply_rules(_proba(P, P, P, P), alerts)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert out["SN"].tolist()[:3] == [0.0, 0.0, 0.5]
    np.testing.assert_allclose(out.iloc[3], [0, 0, 0, 1, 0])
    with pytest.raises(ValueError, match="probability rows"):
        apply_rules(_proba(P), alerts)
    with pytest.raises(ValueError, match="lack classes"):
        apply_rules(_proba(P).drop(columns="bogus"), alerts.iloc[:1])


# -- the asteroids' sky prior -------------------------------------------------------------------------------


def test_asteroid_sky_weight_is_a_density_relative_to_a_uniform_sky():
    """Its mean over the sphere is 1 (area element cos(beta) / 2 in beta), whatever sigma and floor."""
    beta = np.linspace(-90.0, 90.0, 400_001)
    area = np.cos(np.deg2rad(beta)) / 2.0 * np.deg2rad(beta[1] - beta[0])
    for sigma, floor in (
        (ASTEROID_ECLIPTIC_SIGMA_DEG, ASTEROID_SKY_FLOOR),
        (5.0, 0.0),
        (10.0, 0.5),
        (8.0, 1.0),
    ):
        w = asteroid_sky_weight(beta, sigma, floor)
        assert np.sum(w * area) == pytest.approx(1.0, abs=1e-6)
    w = asteroid_sky_weight(np.array([0.0, 10.0, 20.0, 45.0, 89.0, 90.0, -20.0]))
    assert w[0] > w[1] > w[2] > w[3] >= ASTEROID_SKY_FLOOR  # falls away from the ecliptic
    assert w[4] == pytest.approx(ASTEROID_SKY_FLOOR, abs=1e-12) and w[5] == ASTEROID_SKY_FLOOR
    assert w[6] == w[2]  # symmetric
    # the closed form at beta = 0: (1 - f) * 2 / (sigma * sqrt(2 pi)) + f, sigma in radians
    s = np.deg2rad(ASTEROID_ECLIPTIC_SIGMA_DEG)
    expected = (1 - ASTEROID_SKY_FLOOR) * 2 / (s * np.sqrt(2 * np.pi)) + ASTEROID_SKY_FLOOR
    assert w[0] == pytest.approx(expected, rel=1e-12)
    # a floor of 1 is the uniform sky: no prior at all
    np.testing.assert_allclose(asteroid_sky_weight(np.array([0.0, 30.0, 80.0]), 10.0, 1.0), 1.0)


def _on_ecliptic_latitude(beta_deg: list[float]) -> pd.DataFrame:
    """Alerts at ecliptic longitude 90 deg and the given latitudes (ra, dec from the inverse rotation)."""
    eps = np.deg2rad(23.4392911)
    lam, b = np.deg2rad(90.0), np.deg2rad(np.asarray(beta_deg, dtype=float))
    x, y, z = np.cos(b) * np.cos(lam), np.cos(b) * np.sin(lam), np.sin(b)
    y2, z2 = y * np.cos(eps) - z * np.sin(eps), y * np.sin(eps) + z * np.cos(eps)
    return pd.DataFrame({"ra": np.rad2deg(np.arctan2(y2, x)) % 360.0, "dec": np.rad2deg(np.arcsin(z2))})


def test_the_ecliptic_rule_is_bayes_rule_for_the_asteroid_prior():
    alerts = _on_ecliptic_latitude([0.0, 25.0, 60.0])
    np.testing.assert_allclose(sky_latitudes(alerts["ra"], alerts["dec"])[0], [0.0, 25.0, 60.0], atol=1e-9)
    p = [0.1, 0.1, 0.1, 0.6, 0.1]
    out = asteroids_keep_near_the_ecliptic(_proba(p, p, p), alerts)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    w = asteroid_sky_weight(np.array([0.0, 25.0, 60.0]))
    for i in range(3):  # odds of asteroid against each other class scale by w; the other ratios are kept
        row = out.iloc[i]
        assert row["asteroid"] / row["SN"] == pytest.approx(6.0 * w[i], rel=1e-9)
        assert row["VS"] / row["SN"] == pytest.approx(1.0, rel=1e-12)
    assert out["asteroid"].iloc[0] > 0.6 > out["asteroid"].iloc[1] > out["asteroid"].iloc[2]
    assert out.iloc[2].idxmax() != "asteroid"  # far from the ecliptic a 0.6 asteroid is not one any more


def test_the_ecliptic_rule_leaves_rows_without_a_position_and_a_known_sso_still_decides():
    alerts = pd.DataFrame(
        {
            "ra": [np.nan, 200.0, 200.0],
            "dec": [10.0, 80.0, 80.0],  # far from the ecliptic
            "ssdistnr": [-999.0, -999.0, 1.0],
            "ssnamenr": ["null", "null", "433"],
            "isdiffpos": [1, 1, 1],
        }
    )
    p = [0.1, 0.1, 0.1, 0.6, 0.1]
    alone = asteroids_keep_near_the_ecliptic(_proba(p, p, p), alerts)
    np.testing.assert_allclose(alone.iloc[0], p)
    out = apply_rules(_proba(p, p, p), alerts, SKY_PRIOR_RULES)
    assert out.iloc[1].idxmax() != "asteroid"
    np.testing.assert_allclose(out.iloc[2], [0, 0, 0, 1, 0])
    no_position = asteroids_keep_near_the_ecliptic(_proba(p), pd.DataFrame({"isdiffpos": [1]}))
    np.testing.assert_allclose(no_position.iloc[0], p)


def test_rules_round_trip_through_their_names():
    assert rules_named(rule_names(SKY_PRIOR_RULES)) == SKY_PRIOR_RULES
    assert rules_named(rule_names(DEFAULT_RULES)) == DEFAULT_RULES
    assert set(RULES_BY_NAME) == {r.__name__ for r in SKY_PRIOR_RULES}
    with pytest.raises(ValueError, match="unknown stamp rules"):
        rules_named(["known_solar_system_object", "a_rule_of_newer_code"])
    with pytest.raises(ValueError, match="not in RULES_BY_NAME"):
        rule_names([lambda p, a: p])
