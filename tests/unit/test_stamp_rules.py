"""Business rules after the stamp CNN: each rule on analytic cases, then the chain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers.stamp.rules import (
    apply_rules,
    known_solar_system_object,
    negative_difference_is_not_sn,
    renormalise,
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
