"""Mexican-hat power spectrum against a literal Python transcription of ALeRCE's ``mhps`` package (its C
``_conv``/``_statistics`` and Cython ``statistics``), and its behaviour on white noise and slow variability."""

from __future__ import annotations

import math

import numpy as np

from alert_broker.features.lightcurve.mhps import MHPS_CONSTANTS, MHPS_NAMES, band_mhps


def _conv(a, time, mask, c1, c2, dtmin):
    lo, hi = -6.0 * c1, 6.0 * c1
    if hi < 6.0 * dtmin:
        lo, hi = -6.0 * dtmin, 6.0 * dtmin
    step = (hi - lo) / 1000.0
    norm1 = norm2 = 0.0
    x = lo
    while x <= hi:
        norm1 += math.exp(-x * x / (2 * c1 * c1))
        norm2 += math.exp(-x * x / (2 * c2 * c2))
        x += step
    norm1 *= step
    norm2 *= step
    normf = 0.0
    x = lo
    while x <= hi:
        normf += (math.exp(-x * x / (2 * c1 * c1)) / norm1 - math.exp(-x * x / (2 * c2 * c2)) / norm2) ** 2
        x += step
    normf *= step
    n = len(a)
    b1 = np.zeros(n)
    b2 = np.zeros(n)
    for i in range(n):
        k = 0
        for j in range(n):
            d = time[j] - time[i]
            if lo < d < hi and mask[j] > 0:
                b1[i] += a[j] * math.exp(-d * d / (2 * c1 * c1)) / norm1
                b2[i] += a[j] * math.exp(-d * d / (2 * c2 * c2)) / norm2
                if lo / 3.0 * 2.0 <= d <= hi / 3.0 * 2.0:
                    k += 1
        b1[i] *= mask[i]
        b2[i] *= mask[i]
        if k <= 3:
            b1[i] = b2[i] = -1.0
    return normf, b1, b2


def mhps_reference(mag, magerr, time, t1=100.0, t2=10.0, mag0=19.0, epsilon=1.0, dt=5.0):
    flux = 10 ** ((-mag + mag0) * 0.4)
    mean, var = flux.mean(), flux.var()
    flux = (flux - mean) / math.sqrt(var)
    mask = np.ones(len(mag))
    out = {}
    pn = 0.0
    for label, tscale in (("low", t1), ("high", t2)):
        s1 = 0.225 * tscale / math.sqrt(1 + epsilon)
        s2 = (1 + epsilon) * s1
        norm, m1, m2 = _conv(mask, time, mask, s1, s2, dt)
        _, r1, r2 = _conv(flux, time, mask, s1, s2, dt)
        ik2, nonzero, pn_sum = 0.0, 0, 0.0
        for k in range(len(mag)):
            if m1[k] > 0:
                ik = r1[k] / m1[k] - r2[k] / m2[k]
                ik2 += ik * ik
                nonzero += 1
                pn_sum += math.log(10) * 10 ** (-0.4 * (mag[k] - mag0)) * 0.4 * magerr[k]
        if nonzero == 0:  # mhps' documented ZeroDivision case: every value NaN
            return (np.nan,) * 5
        ik2 = ik2 / nonzero / norm / mean**2
        if label == "low":
            pn = (pn_sum / nonzero) ** 2 / mean**2
            out["low"] = ik2 - pn
        else:
            flag = 1
            if ik2 > pn:
                ik2 -= pn
                flag = 0
            out["high"], out["non_zero"], out["flag"] = ik2, nonzero, flag
    return out["low"] / out["high"], out["low"], out["high"], out["non_zero"], out["flag"]


def run(t, m, e):
    out = np.full(len(MHPS_NAMES), np.nan)
    band_mhps(np.asarray(t, float), np.asarray(m, float), np.asarray(e, float), MHPS_CONSTANTS, out)
    return out


def test_matches_literal_transcription_of_alerce_mhps():
    rng = np.random.default_rng(0)
    for n, span in ((25, 150.0), (60, 400.0), (120, 900.0)):
        t = np.sort(rng.uniform(0, span, n))
        m = 18 + 0.3 * np.sin(t / 40) + 0.1 * np.sin(t / 3) + rng.normal(0, 0.05, n)
        e = rng.uniform(0.02, 0.08, n)
        np.testing.assert_allclose(run(t, m, e), mhps_reference(m, e, t), rtol=1e-6)


def test_slow_variability_has_more_low_frequency_power():
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 600, 150))
    e = np.full(t.size, 0.02)
    slow = run(t, 18 + 0.4 * np.sin(2 * np.pi * t / 300) + rng.normal(0, 0.02, t.size), e)
    fast = run(t, 18 + 0.4 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.02, t.size), e)
    assert slow[0] > 10 * fast[0]  # MHPS_ratio = low / high
    assert slow[4] == 0.0  # high-frequency power exceeds the photometric noise: no PN flag


def test_too_sparse_sampling_is_nan():
    """No point has more than three neighbours within the filter window: the spectrum is undefined."""
    t = np.arange(0.0, 2000.0, 200.0)
    assert np.all(np.isnan(run(t, 18 + 0.1 * np.sin(t), np.full(t.size, 0.05))))


def test_constant_light_curve_is_nan():
    t = np.linspace(0, 100, 30)
    assert np.all(np.isnan(run(t, np.full(30, 18.0), np.full(30, 0.05))))
