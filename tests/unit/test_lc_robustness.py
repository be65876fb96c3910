"""Defined outputs for bad input: NaN, inf, duplicate times, too few points, empty or partial tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numba.core.caching import NullCache

from alert_broker.features.lightcurve import (
    FEATURE_VERSION,
    compute_features,
    feature_names,
    mhps,
    objectlevel,
    periodogram,
    spm,
    stochastic,
    supernova,
    variability,
    warm_up,
)


def lc(oid="a", n=20, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    t = 58000 + np.sort(rng.uniform(0, 200, n))
    df = pd.DataFrame(
        {
            "oid": oid,
            "candid": np.arange(n, dtype=np.int64),
            "mjd": t,
            "fid": np.where(np.arange(n) % 3 == 0, 2, 1),
            "magpsf": 18 + 0.3 * np.sin(t / 5) + rng.normal(0, 0.05, n),
            "sigmapsf": 0.05,
            "isdiffpos": np.int8(1),
            "rb": 0.8,
            "sgscore1": 0.3,
            "ra": 10.0,
            "dec": 20.0,
        }
    )
    for k, v in overrides.items():
        df[k] = v
    return df


def check_schema(out: pd.DataFrame) -> None:
    assert list(out.columns) == ["oid", *feature_names(), "FEATURE_VERSION"]
    assert (out["FEATURE_VERSION"] == FEATURE_VERSION).all()
    values = out[feature_names()].to_numpy()
    assert values.dtype == np.float64
    assert not np.isinf(values).any()


def test_schema_and_one_row_per_qualifying_object():
    det = pd.concat([lc("b", seed=1), lc("a", seed=2), lc("c", n=5, seed=3)])
    out = compute_features(det, None)
    check_schema(out)
    assert list(out["oid"]) == ["a", "b"]
    assert len(feature_names()) == len(set(feature_names()))
    for name in ("Amplitude_1", "Multiband_period", "IAR_phi_1", "SPM_tau_rise_1", "g-r_max", "gal_l", "rb"):
        assert name in feature_names()


def test_empty_inputs():
    out = compute_features(lc().iloc[:0], None)
    check_schema(out)
    assert out.empty
    nd_empty = pd.DataFrame(columns=["oid", "fid", "mjd", "diffmaglim"])
    check_schema(compute_features(lc(), nd_empty))


def test_missing_columns_raise_clear_errors():
    with pytest.raises(ValueError, match="magpsf"):
        compute_features(lc().drop(columns=["magpsf"]), None)
    with pytest.raises(ValueError, match="diffmaglim"):
        compute_features(lc(), pd.DataFrame({"oid": ["a"], "fid": [1], "mjd": [1.0]}))
    # Optional columns may be absent.
    check_schema(
        compute_features(lc().drop(columns=["rb", "isdiffpos", "sgscore1", "ra", "dec", "candid"]), None)
    )


def test_nan_and_inf_values_are_dropped_not_propagated():
    base = compute_features(lc(n=30), None).iloc[0]
    bad = lc(n=30)
    extra = bad.iloc[:6].copy()
    extra["mjd"] = [np.nan, np.inf, 58001.5, 58002.5, 58003.5, 58004.5]
    extra["magpsf"] = [18.0, 18.0, np.nan, np.inf, -np.inf, 18.0]
    extra["sigmapsf"] = [0.05, 0.05, 0.05, 0.05, 0.05, np.nan]
    out = compute_features(pd.concat([bad, extra]), None)
    check_schema(out)
    pd.testing.assert_series_equal(out.iloc[0], base)


def test_duplicate_times_and_duplicate_rows():
    det = lc(n=30)
    out = compute_features(pd.concat([det, det, det.assign(rb=0.1)]), None)
    pd.testing.assert_series_equal(out.iloc[0], compute_features(det, None).iloc[0])
    # All detections at one instant collapse to one: the object no longer qualifies.
    same = lc(n=10).assign(mjd=58000.0)
    assert compute_features(same, None).empty


def test_too_few_points_per_band_give_nan():
    det = lc(n=12)
    det["fid"] = [1] * 8 + [2] * 4
    row = compute_features(det, None).iloc[0]
    for name in ("Amplitude_2", "IAR_phi_2", "GP_DRW_tau_2", "MHPS_low_2", "Period_band_2", "Psi_CS_2"):
        assert np.isnan(row[name]), name
    assert row["n_det_2"] == 4
    assert np.isfinite(row["Amplitude_1"]) and np.isfinite(row["Multiband_period"])


@pytest.mark.parametrize("seed", range(6))
def test_random_garbage_never_crashes(seed):
    rng = np.random.default_rng(seed)
    n = 400
    det = pd.DataFrame(
        {
            "oid": rng.choice(["p", "q", "r", "s"], n),
            "mjd": np.round(58000 + rng.uniform(0, 30, n), 1),  # many exact duplicates
            "fid": rng.choice([1, 2, 3], n),
            "magpsf": rng.choice([18.0, 18.0, 25.0, -999.0, np.nan, 5.0], n) + rng.normal(0, 0.01, n),
            "sigmapsf": rng.choice([0.0, 0.05, 0.5, 2.0, np.nan], n),
            "magpsf_corr": rng.normal(18, 2, n),
            "sigmapsf_corr_ext": rng.choice([0.05, 100.0], n),
            "corrected": rng.random(n) < 0.5,
            "isdiffpos": rng.choice([-1, 1], n).astype(np.int8),
            "rb": rng.uniform(0, 1, n),
        }
    )
    nd = pd.DataFrame(
        {
            "oid": rng.choice(["p", "q", "x"], 50),
            "fid": rng.choice([1, 2], 50),
            "mjd": 58000 + rng.uniform(-5, 30, 50),
            "diffmaglim": rng.choice([19.0, np.nan, 21.0], 50),
        }
    )
    check_schema(compute_features(det, nd))


def test_kernels_are_cached_on_disk_and_warm_up_is_idempotent():
    kernels = [
        variability.basic_batch,
        stochastic.stochastic_batch,
        mhps.mhps_batch,
        supernova.sn_batch,
        spm.spm_batch,
        periodogram.period_batch,
        objectlevel.color_batch,
        objectlevel.meta_batch,
    ]
    for k in kernels:
        assert not isinstance(k._cache, NullCache), k
    warm_up()
    warm_up()
    for k in kernels:
        assert len(k.signatures) == 1, k  # one compiled signature: batches never trigger recompilation
