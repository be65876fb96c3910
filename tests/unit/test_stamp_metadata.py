"""Stamp classifier metadata: fills, sentinels, clipping, sky latitudes, and the class mapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers.stamp.metadata import (
    DEFAULT_FEATURES,
    METADATA_SPEC,
    metadata_frame,
    metadata_matrix,
    sky_latitudes,
)
from alert_broker.classifiers.stamp.taxonomy import SIM_TO_STAMP, STAMP_CLASSES, stamp_labels
from alert_broker.simulator.config import CLASSES as SIM_CLASSES


def test_missing_columns_nan_and_ztf_sentinels_get_the_documented_fills():
    alerts = pd.DataFrame(
        {
            "sgscore1": [0.9, -999.0, np.nan],
            "distpsnr1": [0.3, -999.0, 2.0],
            "chinr": [1.2, -99.0, np.nan],
            "fwhm": [np.nan, 3.0, 2.0],
            "ndethist": pd.array([3, None, 1], dtype="Int32"),
        }
    )
    m = metadata_frame(alerts)
    assert list(m.columns) == list(METADATA_SPEC) and (m.dtypes == np.float32).all()
    assert m["sgscore1"].tolist() == pytest.approx([0.9, -1.0, -1.0])  # no PS1 source -> -1 (ALeRCE's clip)
    assert m["distpsnr1"].tolist() == pytest.approx([0.3, -1.0, 2.0])
    assert m["chinr"].tolist() == pytest.approx([1.2, -1.0, -1.0])  # -99 (2018 schemas) is a sentinel too
    assert m["fwhm"].tolist() == pytest.approx([METADATA_SPEC["fwhm"][0], 3.0, 2.0])
    assert m["ndethist"].tolist() == [3.0, 1.0, 1.0]
    # columns the alerts do not carry at all: their fill on every row
    for name in ("sgscore3", "magpsf", "classtar", "sharpnr", "ecl_lat"):
        assert (m[name] == np.float32(METADATA_SPEC[name][0])).all(), name


def test_values_are_clipped_to_alerce_ranges_and_non_detections_derived():
    alerts = pd.DataFrame(
        {
            "ndethist": [500, 2],
            "ncovhist": [9000, 10],
            "distpsnr1": [120.0, 0.5],  # Fink's no-match value, far beyond ZTF's 30" search
            "chinr": [40.0, 0.8],
            "sharpnr": [3.0, -5.0],
        }
    )
    m = metadata_frame(alerts)
    assert m["ndethist"].tolist() == [20.0, 2.0]
    assert m["ncovhist"].tolist() == [3000.0, 10.0]
    assert m["non_detections"].tolist() == [2000.0, 8.0]  # 9000 - 500 clipped; 10 - 2
    assert m["distpsnr1"].tolist() == [30.0, 0.5]
    assert m["chinr"].tolist() == [15.0, pytest.approx(0.8)]
    assert m["sharpnr"].tolist() == [1.5, -1.0]


def test_isdiffpos_from_contract_int8_or_raw_ztf_strings():
    as_int = metadata_frame(pd.DataFrame({"isdiffpos": np.array([1, -1], dtype=np.int8)}))["isdiffpos"]
    as_str = metadata_frame(pd.DataFrame({"isdiffpos": ["t", "f"]}))["isdiffpos"]
    as_num = metadata_frame(pd.DataFrame({"isdiffpos": ["1", "0"]}))["isdiffpos"]
    assert as_int.tolist() == as_str.tolist() == as_num.tolist() == [1.0, -1.0]


def test_sky_latitudes_agree_with_astropy():
    from astropy import units as u
    from astropy.coordinates import BarycentricMeanEcliptic, SkyCoord

    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 360, 200)
    dec = np.rad2deg(np.arcsin(rng.uniform(-1, 1, 200)))
    ecl, gal = sky_latitudes(ra, dec)
    c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    np.testing.assert_allclose(gal, c.galactic.b.deg, atol=2e-3)
    np.testing.assert_allclose(
        ecl, c.transform_to(BarycentricMeanEcliptic(equinox="J2000")).lat.deg, atol=2e-3
    )
    # the poles, analytically: the north galactic pole has b = 90
    assert sky_latitudes(192.85948, 27.12825)[1] == pytest.approx(90.0, abs=1e-6)


def test_metadata_matrix_order_and_unknown_names():
    alerts = pd.DataFrame({"magpsf": [18.5], "sigmapsf": [0.05]})
    x = metadata_matrix(alerts, ("sigmapsf", "magpsf"))
    assert x.dtype == np.float32 and x.tolist() == [[pytest.approx(0.05), 18.5]]
    assert metadata_matrix(alerts).shape == (1, len(DEFAULT_FEATURES))
    with pytest.raises(ValueError, match="unknown metadata features"):
        metadata_matrix(alerts, ("magpsf", "rb"))


def test_every_simulator_class_maps_to_a_stamp_class():
    assert set(SIM_TO_STAMP) == set(SIM_CLASSES)
    assert set(SIM_TO_STAMP.values()) == set(STAMP_CLASSES)
    for sn in ("SNIa", "SNIbc", "SNII", "SLSN"):
        assert SIM_TO_STAMP[sn] == "SN"
    for agn in ("AGN", "QSO", "Blazar"):
        assert SIM_TO_STAMP[agn] == "AGN"
    labels = stamp_labels(pd.Series(["SN", "sn", "RRL", "QSO", "asteroid", "Bogus", "galaxy", None]))
    assert labels.tolist()[:6] == ["SN", "SN", "VS", "AGN", "asteroid", "bogus"]
    assert labels.isna().tolist()[6:] == [True, True]
