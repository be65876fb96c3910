"""Basic variability statistics: hand-derived values, scipy/numpy derivations, and null values for constant stars."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alert_broker.features.lightcurve import compute_features
from alert_broker.features.lightcurve.variability import BASIC_NAMES, SF_EDGES, band_basic


def basic(t, m, e) -> dict[str, float]:
    out = np.full(len(BASIC_NAMES), np.nan)
    band_basic(np.asarray(t, float), np.asarray(m, float), np.asarray(e, float), SF_EDGES, out)
    return dict(zip(BASIC_NAMES, out, strict=True))


def test_hand_derived_ramp():
    """m = 1..6 at t = 0..5 with equal errors: every value below is worked out by hand from the definitions."""
    f = basic(np.arange(6.0), np.arange(1.0, 7.0), np.full(6, 0.1))
    var0 = 17.5 / 6  # population variance of 1..6
    assert f["Mean"] == pytest.approx(3.5)
    assert f["Std"] == pytest.approx(math.sqrt(var0))
    assert f["Amplitude"] == pytest.approx(2.5)  # ceil(5 % of 6) = 1 point at each end
    assert f["MedianAbsDev"] == pytest.approx(1.5)
    assert f["MaxSlope"] == pytest.approx(1.0)
    assert f["LinearTrend"] == pytest.approx(1.0)
    assert f["PairSlopeTrend"] == pytest.approx(5 / 30)
    assert f["MedianBRP"] == 0.0  # nothing strictly within 0.5 of the median 3.5
    assert f["PercentAmplitude"] == pytest.approx(2.5 / 3.5)
    assert f["Q31"] == pytest.approx(4.75 - 2.25)
    assert f["iqr"] == pytest.approx(2.5)
    assert f["Beyond1Std"] == pytest.approx(2 / 6)  # 1 and 6 lie beyond sqrt(17.5 / 5) of 3.5
    assert f["Con"] == 0.0
    assert f["Eta_e"] == pytest.approx((5 / 5) / var0)
    assert f["Rcs"] == pytest.approx(4.5 / (6 * math.sqrt(var0)))
    assert f["Skew"] == pytest.approx(0.0, abs=1e-12)
    assert f["Gskew"] == pytest.approx(1 + 6 - 2 * 3.5)
    assert f["StetsonK"] == pytest.approx(90 / math.sqrt(6 * 1750))
    assert f["Autocor_length"] == 2.0  # acf(1) = 8.75/17.5 = 0.5, acf(2) = 1/17.5 < 1/e
    s4 = 2 * (2.5**4 + 1.5**4 + 0.5**4)
    assert f["SmallKurtosis"] == pytest.approx(0.7 * s4 / var0**2 - 6.25)
    assert f["Meanvariance"] == pytest.approx(math.sqrt(var0) / 3.5)
    assert f["ExcessVar"] == pytest.approx((17.5 - 6 * 0.01) / (6 * 3.5**2))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_against_scipy_and_numpy():
    rng = np.random.default_rng(11)
    for n in (7, 30, 200):
        t = np.sort(rng.uniform(0, 400, n))
        m = 18 + 0.2 * np.sin(t / 9) + rng.normal(0, 0.1, n) + 0.3 * rng.exponential(0.2, n)
        e = rng.uniform(0.03, 0.15, n)
        f = basic(t, m, e)
        a2 = stats.anderson(m, dist="norm").statistic
        assert f["AndersonDarling"] == pytest.approx(1 / (1 + math.exp(-10 * (a2 - 0.3))), rel=1e-9)
        assert f["Skew"] == pytest.approx(stats.skew(m), rel=1e-9)
        assert f["iqr"] == pytest.approx(stats.iqr(m), rel=1e-12)
        assert f["LinearTrend"] == pytest.approx(stats.linregress(t, m).slope, rel=1e-9)
        chi = np.sum((m - m.mean()) ** 2 / e**2)
        assert f["Pvar"] == pytest.approx(stats.chi2.cdf(chi, n - 1), rel=1e-9, abs=1e-15)
        p3, p97 = np.percentile(m, (3, 97))
        gskew = np.median(m[m <= p3]) + np.median(m[m >= p97]) - 2 * np.median(m)
        assert f["Gskew"] == pytest.approx(gskew, rel=1e-12)
        d = m - m.mean()
        acf = np.array([np.sum(d[: n - k] * d[k:]) for k in range(n)]) / np.sum(d * d)
        below = np.flatnonzero(acf < np.exp(-1))
        assert f["Autocor_length"] == (below[0] if below.size else n)


def test_pvar_intermediate_and_kurtosis_sample_formula():
    """Pvar away from its 0/1 saturation, and SmallKurtosis against the textbook small-sample estimator."""
    rng = np.random.default_rng(3)
    n = 40
    e = np.full(n, 0.1)
    m = 17 + rng.normal(0, 0.1, n)  # scatter equal to the errors: chi2 ~ n - 1
    f = basic(np.arange(n, dtype=float), m, e)
    chi = np.sum((m - m.mean()) ** 2) / 0.01
    assert 0.01 < f["Pvar"] < 0.99
    assert f["Pvar"] == pytest.approx(stats.chi2.cdf(chi, n - 1), rel=1e-9)
    # turbo-fats uses the population std inside the G2 formula: G2_turbofats = (G2 + c2) (n/(n-1))^2 - c2.
    g2 = stats.kurtosis(m, fisher=True, bias=False)
    c2 = 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))
    assert f["SmallKurtosis"] == pytest.approx((g2 + c2) * (n / (n - 1)) ** 2 - c2, rel=1e-9)


def test_structure_function_power_law():
    """A random walk has SF(tau) proportional to tau^0.5: the fitted gamma must come out near 0.5."""
    rng = np.random.default_rng(5)
    t = np.arange(0.0, 900.0, 1.0)
    m = 18 + np.cumsum(rng.normal(0, 0.02, t.size))
    f = basic(t, m, np.full(t.size, 1e-4))
    assert f["SF_ML_gamma"] == pytest.approx(0.5, abs=0.12)
    # SF(1 yr) = 0.02 mag * sqrt(365)
    assert f["SF_ML_amplitude"] == pytest.approx(0.02 * math.sqrt(365), rel=0.3)


def _frame(oid, t, m, e, fid):
    return pd.DataFrame(
        {"oid": oid, "mjd": t, "fid": fid, "magpsf": m, "sigmapsf": e, "isdiffpos": 1, "rb": 0.9}
    )


def test_constant_star_null_values():
    n = 40
    t = np.sort(np.random.default_rng(0).uniform(58000, 58200, n))
    det = _frame("const", t, np.full(n, 16.5), np.full(n, 0.02), np.where(np.arange(n) % 2 == 0, 1, 2))
    row = compute_features(det, None).iloc[0]
    for band in (1, 2):
        for name in (
            "Amplitude",
            "Std",
            "MedianAbsDev",
            "Q31",
            "iqr",
            "MaxSlope",
            "LinearTrend",
            "Beyond1Std",
            "Con",
        ):
            assert row[f"{name}_{band}"] == 0.0, name
        for name in ("Meanvariance", "PercentAmplitude", "Gskew", "MedianBRP", "Pvar"):
            assert row[f"{name}_{band}"] == 0.0, name
        assert row[f"ExcessVar_{band}"] == pytest.approx(-(0.02**2) / 16.5**2)
        assert row[f"Mean_{band}"] == 16.5
        # Statistics normalised by the (zero) scatter are undefined, not zero.
        for name in (
            "Eta_e",
            "Rcs",
            "Skew",
            "SmallKurtosis",
            "StetsonK",
            "AndersonDarling",
            "Autocor_length",
        ):
            assert np.isnan(row[f"{name}_{band}"]), name
        for name in ("IAR_phi", "GP_DRW_tau", "SF_ML_amplitude", "Psi_CS", "MHPS_low"):
            assert np.isnan(row[f"{name}_{band}"]), name
    assert np.isnan(row["Multiband_period"])


def test_white_noise_star_statistical_nulls():
    """Pure Gaussian noise at the quoted errors: each statistic near its expectation for a non-variable star."""
    rng = np.random.default_rng(1)
    n = 4000
    t = np.arange(n, dtype=float)
    e = np.full(n, 0.05)
    f = basic(t, 17 + rng.normal(0, 0.05, n), e)
    assert f["StetsonK"] == pytest.approx(math.sqrt(2 / math.pi), abs=0.01)
    assert f["Beyond1Std"] == pytest.approx(0.3173, abs=0.02)
    assert f["Skew"] == pytest.approx(0.0, abs=0.1)
    assert f["SmallKurtosis"] == pytest.approx(0.0, abs=0.2)
    assert f["Eta_e"] == pytest.approx(2.0, abs=0.1)  # von Neumann ratio of white noise
    assert f["ExcessVar"] == pytest.approx(0.0, abs=3e-6)
    assert f["AndersonDarling"] < 0.5
    assert f["Autocor_length"] == 1.0
    assert f["SF_ML_amplitude"] < 0.01  # no variability beyond the errors (0.05 mag)
