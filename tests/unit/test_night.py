"""Observing-night labels: hand-worked cases on both sides of local noon, and an independent stdlib derivation."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from alert_broker.features.night import ATLAS_UNITS, SITES, observing_night

MJD0 = datetime(1858, 11, 17)


def mjd(iso: str) -> float:
    return (datetime.fromisoformat(iso) - MJD0).total_seconds() / 86400.0


def night(iso: str, site: str | float) -> int:
    lon = SITES[site] if isinstance(site, str) else site
    out = observing_night(np.array([mjd(iso)]), lon)
    assert out.dtype == np.int32
    return int(out[0])


def test_data_model_example():
    # docs/data-model.md: 2020-01-01T05:00 UTC at Palomar is 21:13 local mean time on Dec 31.
    assert night("2020-01-01T05:00:00", "ztf") == 20191231


def test_palomar_label_changes_at_local_noon():
    # Palomar is 116.865/15 = 7.791 h = 7 h 47 m 27.6 s behind UTC, so local noon is 19:47:27.6 UTC.
    assert night("2020-01-01T19:47:00", "ztf") == 20191231
    assert night("2020-01-01T19:48:00", "ztf") == 20200101
    # A whole Palomar night (dusk ~01:00 UTC, dawn ~14:00 UTC) keeps one label although the UTC date changes.
    assert night("2020-01-02T01:30:00", "ztf") == 20200101
    assert night("2020-01-02T13:50:00", "ztf") == 20200101


def test_chilean_night_spanning_two_utc_dates():
    # Cerro Pachon is 70.7494/15 = 4.7166 h (4 h 42 m 59.9 s) behind UTC; the evening of 2024-03-10 starts ~23:30 UTC and the
    # night ends ~09:30 UTC on the 11th: two UTC dates, one night label.
    labels = {night(t, "lsst") for t in ("2024-03-10T23:30:00", "2024-03-11T03:00:00", "2024-03-11T09:30:00")}
    assert labels == {20240310}
    # Local noon is 12:00 + 4 h 42 m 59.9 s = 16:42:59.9 UTC: a minute either side changes the label.
    assert night("2024-03-11T16:42:00", "lsst") == 20240310
    assert night("2024-03-11T16:44:00", "lsst") == 20240311


def test_east_longitude_site():
    # Sutherland (ATLAS unit 03a, 20.81 E) is 1.387 h ahead of UTC: local noon at 10:36:45 UTC.
    lon = ATLAS_UNITS["03a"]
    assert night("2024-06-01T10:36:00", lon) == 20240531
    assert night("2024-06-01T10:37:30", lon) == 20240601
    assert night("2024-06-01T18:00:00", lon) == 20240601  # evening of June 1st
    assert night("2024-06-02T03:00:00", lon) == 20240601  # same night after UTC midnight


def test_month_year_and_leap_day_boundaries():
    assert night("2024-03-01T03:00:00", "ztf") == 20240229
    assert night("2023-03-01T03:00:00", "ztf") == 20230228
    assert night("2021-01-01T10:00:00", "ztf") == 20201231
    assert night("1999-12-31T22:00:00", "ztf") == 19991231


def test_vectorised_shapes_and_longitude_forms():
    values = np.array([[mjd("2020-01-01T05:00:00"), mjd("2020-01-01T20:00:00")]] * 3)
    out = observing_night(values, SITES["ztf"])
    assert out.shape == (3, 2) and out.dtype == np.int32
    assert out.tolist() == [[20191231, 20200101]] * 3
    assert observing_night(mjd("2020-01-01T05:00:00"), -116.865).shape == ()
    # 0..360 east longitudes (as the MPC lists them) give the same labels.
    np.testing.assert_array_equal(observing_night(values, 243.135), out)
    assert observing_night(np.array([], dtype=float), 0.0).shape == (0,)


def test_nan_or_bad_longitude_raises():
    with pytest.raises(ValueError, match="NaN"):
        observing_night(np.array([59000.0, np.nan]), SITES["ztf"])
    with pytest.raises(ValueError, match="longitude"):
        observing_night(np.array([59000.0]), -400.0)


def test_matches_independent_stdlib_derivation():
    rng = np.random.default_rng(42)
    mjds = rng.uniform(40000.0, 70000.0, 2000)
    lons = rng.uniform(-180.0, 180.0, 2000)
    for m, lon in zip(mjds, lons, strict=True):
        shifted = m + lon / 360.0 - 0.5
        if min(shifted % 1.0, 1.0 - shifted % 1.0) < 1e-6:  # float ties at the boundary are not the point
            continue
        expected = int((MJD0 + timedelta(days=float(m), hours=lon / 15.0 - 12.0)).strftime("%Y%m%d"))
        assert int(observing_night(np.array([m]), lon)[0]) == expected, (m, lon)


def test_site_table():
    assert set(SITES) >= {"ztf", "lsst", "atlas"}
    assert SITES["ztf"] == pytest.approx(-116.865) and SITES["lsst"] == pytest.approx(-70.7494)
    assert SITES["atlas"] == ATLAS_UNITS["01a"]
    assert set(ATLAS_UNITS) == {"01a", "02a", "03a", "04a"}
    # The two Hawaiian units share nights; Sutherland is east of Greenwich, El Sauce is in Chile.
    assert abs(ATLAS_UNITS["01a"] - ATLAS_UNITS["02a"]) < 1.0
    assert ATLAS_UNITS["03a"] > 0 and abs(ATLAS_UNITS["04a"] - SITES["lsst"]) < 0.5
