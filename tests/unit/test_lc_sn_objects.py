"""Supernova detection/non-detection features, colours, object-level features and ALeRCE's input cleaning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord

from alert_broker.features.lightcurve import compute_features, prepare
from alert_broker.features.lightcurve.prepare import RB_MIN, RB_MIN_LEGACY


def det_frame(oid, t, fid, m, **cols):
    n = len(t)
    base = {
        "oid": oid,
        "candid": np.arange(n, dtype=np.int64),
        "mjd": np.asarray(t, float),
        "fid": np.asarray(fid),
        "magpsf": np.asarray(m, float),
        "sigmapsf": 0.05,
        "isdiffpos": 1,
        "rb": 0.9,
    }
    base.update(cols)
    return pd.DataFrame(base)


def test_sn_features_hand_derived():
    t = [100.0, 101.0, 103.0, 106.0, 110.0, 115.0, 102.0]
    fid = [1, 1, 1, 1, 1, 1, 2]
    m = [19.0, 18.5, 18.2, 18.4, 18.9, 19.3, 18.7]
    sign = [1, 1, 1, -1, 1, -1, 1]
    det = det_frame("sn", t, fid, m, isdiffpos=sign)
    nd = pd.DataFrame(
        {
            "oid": "sn",
            "fid": [1, 1, 1, 1, 2, 1],
            "mjd": [90.0, 95.0, 98.0, 104.0, 99.0, 98.0],  # the duplicate (fid 1, 98.0) is dropped
            "diffmaglim": [20.1, 20.5, 19.9, 19.5, 20.8, 19.9],
        }
    )
    row = compute_features(det, nd).iloc[0]
    assert row["n_det_1"] == 6 and row["n_pos_1"] == 4 and row["n_neg_1"] == 2
    assert row["positive_fraction_1"] == pytest.approx(4 / 6)
    assert row["first_mag_1"] == 19.0
    assert row["min_mag_1"] == 18.2
    assert row["mean_mag_1"] == pytest.approx(np.mean(m[:6]))
    assert row["delta_mag_fid_1"] == pytest.approx(19.3 - 18.2)
    assert row["delta_mjd_fid_1"] == 15.0
    assert row["n_non_det_before_fid_1"] == 3
    assert row["max_diffmaglim_before_fid_1"] == 20.5
    assert row["median_diffmaglim_before_fid_1"] == 20.1
    assert row["last_diffmaglim_before_fid_1"] == 19.9
    assert row["last_mjd_before_fid_1"] == 98.0
    assert row["dmag_non_det_fid_1"] == pytest.approx(20.1 - 18.2)
    assert row["dmag_first_det_fid_1"] == pytest.approx(19.9 - 19.0)
    assert row["n_non_det_after_fid_1"] == 1
    assert row["max_diffmaglim_after_fid_1"] == 19.5
    assert row["median_diffmaglim_after_fid_1"] == 19.5
    # r band: one detection (too few for variability) but its SN features exist.
    assert row["n_det_2"] == 1 and row["first_mag_2"] == 18.7
    assert row["n_non_det_before_fid_2"] == 1 and row["last_diffmaglim_before_fid_2"] == 20.8
    assert row["n_non_det_after_fid_2"] == 0 and np.isnan(row["max_diffmaglim_after_fid_2"])
    assert np.isnan(row["Amplitude_2"]) and np.isfinite(row["Amplitude_1"])


def test_colours_raw_and_corrected():
    t = np.arange(12.0)
    fid = [1, 2] * 6
    raw = np.array([18.0, 17.5, 18.2, 17.6, 18.4, 17.2, 18.1, 17.9, 18.3, 17.4, 18.6, 17.8])
    corr = raw - 0.3 * (np.array(fid) == 1)
    det = det_frame(
        "c",
        t,
        fid,
        raw,
        magpsf_corr=corr,
        sigmapsf_corr_ext=0.03,
        corrected=True,
        sgscore1=[0.1] * 11 + [np.nan],
    )
    row = compute_features(det, None).iloc[0]
    g, r = raw[0::2], raw[1::2]
    assert row["g-r_max"] == pytest.approx(g.min() - r.min())
    assert row["g-r_mean"] == pytest.approx(g.mean() - r.mean())
    assert row["g-r_max_corr"] == pytest.approx(g.min() - 0.3 - r.min())
    assert row["g-r_mean_corr"] == pytest.approx(g.mean() - 0.3 - r.mean())
    assert row["Mean_1"] == pytest.approx(g.mean() - 0.3)  # corrected magnitudes drive the features
    assert row["sgscore1"] == pytest.approx(0.1)
    # Uncorrected object: the _corr colours are NaN, as in ALeRCE.
    row = compute_features(det.assign(corrected=False), None).iloc[0]
    assert np.isnan(row["g-r_max_corr"]) and row["Mean_1"] == pytest.approx(g.mean())


def test_objects_table_decides_correction():
    t = np.arange(8.0)
    det = det_frame(
        "o", t, [1] * 8, 18.0 + 0.1 * t, magpsf_corr=17.0 + 0.1 * t, sigmapsf_corr_ext=0.02, corrected=False
    )
    objects = pd.DataFrame({"oid": ["o"], "corrected": [True]})
    assert compute_features(det, None, objects)["Mean_1"].iloc[0] == pytest.approx(17.35)
    assert compute_features(det, None)["Mean_1"].iloc[0] == pytest.approx(18.35)


def test_galactic_coordinates_match_astropy():
    rng = np.random.default_rng(0)
    frames = []
    coords = [(0.3, -89.0), (83.6, 22.0), (150.0, 2.2), (266.4, -28.9), (359.9, 45.0), (201.3, 89.5)]
    for k, (ra, dec) in enumerate(coords):
        n = 7
        frames.append(
            det_frame(f"o{k}", np.arange(n, dtype=float), [1] * n, 18 + rng.normal(0, 0.1, n), ra=ra, dec=dec)
        )
    out = compute_features(pd.concat(frames), None).set_index("oid")
    for k, (ra, dec) in enumerate(coords):
        gal = SkyCoord(ra=ra, dec=dec, unit="deg", frame="icrs").galactic
        assert out.loc[f"o{k}", "gal_b"] == pytest.approx(gal.b.degree, abs=1e-6)
        dl = (out.loc[f"o{k}", "gal_l"] - gal.l.degree + 180) % 360 - 180
        assert abs(dl * np.cos(np.radians(gal.b.degree))) < 1e-6


def test_mean_position_wraps_at_ra_zero():
    det = det_frame("w", np.arange(8.0), [1] * 8, np.full(8, 18.0), ra=[359.9999, 0.0001] * 4, dec=10.0)
    row = compute_features(det, None).iloc[0]
    gal = SkyCoord(ra=0.0, dec=10.0, unit="deg").galactic
    assert row["gal_b"] == pytest.approx(gal.b.degree, abs=1e-5)


def test_cleaning_follows_alerce():
    """rb < 0.55 (ALeRCE's cut, lc-features-1.0.0), errors outside (0, 1) and non-finite values are dropped; of
    two detections at the same mjd the higher-rb one stays; objects need 6 clean detections in g or r. Since
    lc-features-1.1.0 the rb cut is 0.3: the rb = 0.4 detection stays."""
    t = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.0, 7.0, 8.0, 9.0]
    m = [18.0, 18.1, 18.2, 18.3, 18.4, 18.5, 25.0, np.inf, 18.7, 18.8]
    rb = [0.9, 0.9, 0.9, 0.9, 0.9, 0.6, 0.95, 0.9, 0.4, 0.9]
    sig = [0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 1.5]
    det = det_frame("x", t, [1] * 10, m, rb=rb, sigmapsf=sig)
    b = prepare(det, None, rb_min=RB_MIN_LEGACY)
    assert list(b.t) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert list(prepare(det, None).t) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]
    assert RB_MIN == 0.3 and RB_MIN_LEGACY == 0.55
    assert b.mag[-1] == 25.0  # the rb = 0.95 duplicate wins
    assert b.n_objects == 1
    assert prepare(det.iloc[:5], None).n_objects == 0
    # Six detections split 3 + 3 over g and r do not qualify.
    split = det_frame("y", np.arange(6.0), [1, 2] * 3, np.full(6, 18.0))
    assert compute_features(split, None).empty


def test_median_rb_and_isdiffpos_strings():
    det = det_frame("s", np.arange(7.0), [2] * 7, np.full(7, 18.0), rb=[0.6, 0.7, 0.8, 0.9, 1.0, 0.95, 0.65])
    det["isdiffpos"] = ["t", "f", "1", "0", "t", "t", "t"]
    row = compute_features(det, None).iloc[0]
    assert row["rb"] == pytest.approx(0.8)
    assert row["n_pos_2"] == 5 and row["n_neg_2"] == 2
    assert np.isnan(row["sgscore1"])  # column absent
