"""Mexican-hat power spectrum (Arevalo et al. 2012) at two timescales, as ALeRCE's ``mhps`` package defines it.

The light curve is turned into a standardised flux, convolved with two Gaussians whose difference is a Mexican
hat of scale ``t``; the variance of the filtered curve, normalised by the filter's own power and the mean flux,
estimates the power at 1/t. The low (100 d) estimate has the photometric-noise power removed; the high (10 d)
estimate has it removed only when it exceeds it (``MHPS_PN_flag`` = 1 otherwise). The Gaussian normalisations
are discrete sums that depend only on the timescale, so they are computed once in Python, not per light curve.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._nb import NAN

MHPS_NAMES: tuple[str, ...] = ("MHPS_ratio", "MHPS_low", "MHPS_high", "MHPS_non_zero", "MHPS_PN_flag")
N_MHPS = len(MHPS_NAMES)

T_LOW = 100.0
T_HIGH = 10.0
EPSILON = 1.0
MAG0 = 19.0
DT_MIN = 5.0


def filter_constants(tscale: float, epsilon: float = EPSILON, dtmin: float = DT_MIN) -> np.ndarray:
    """(sigma1, sigma2, window, norm1, norm2, normf) of the Mexican hat of one timescale (mhps' discrete sums)."""
    sigma1 = 0.225 * tscale / math.sqrt(1.0 + epsilon)
    sigma2 = (1.0 + epsilon) * sigma1
    lo, hi = -6.0 * sigma1, 6.0 * sigma1
    if hi < 6.0 * dtmin:
        lo, hi = -6.0 * dtmin, 6.0 * dtmin
    step = (hi - lo) / 1000.0
    grid = lo + step * np.arange(1001)
    grid = grid[grid <= hi]
    g1 = np.exp(-grid * grid / (2 * sigma1 * sigma1))
    g2 = np.exp(-grid * grid / (2 * sigma2 * sigma2))
    norm1 = g1.sum() * step
    norm2 = g2.sum() * step
    normf = ((g1 / norm1 - g2 / norm2) ** 2).sum() * step
    return np.array([sigma1, sigma2, hi, norm1, norm2, normf])


MHPS_CONSTANTS = np.stack([filter_constants(T_LOW), filter_constants(T_HIGH)])


@njit(cache=True)
def _filtered_power(
    t: np.ndarray, flux: np.ndarray, c: np.ndarray, pn_terms: np.ndarray
) -> tuple[float, int, float]:
    """Mexican-hat response power of a time-sorted curve.

    Returns the mean squared response divided by the filter power, the number of usable points (more than three
    neighbours within 2/3 of the window) and the mean of ``pn_terms`` over those points.
    """
    n = t.size
    s1 = c[0]
    s2 = c[1]
    hi = c[2]
    n1 = c[3]
    n2 = c[4]
    normf = c[5]
    inner = hi / 3.0 * 2.0
    acc = 0.0
    pn = 0.0
    nonzero = 0
    j0 = 0
    for i in range(n):
        while t[j0] - t[i] <= -hi:
            j0 += 1
        r1 = 0.0
        r2 = 0.0
        k1 = 0.0
        k2 = 0.0
        cnt = 0
        for j in range(j0, n):
            d = t[j] - t[i]
            if d >= hi:
                break
            g1 = math.exp(-d * d / (2.0 * s1 * s1)) / n1
            g2 = math.exp(-d * d / (2.0 * s2 * s2)) / n2
            r1 += flux[j] * g1
            r2 += flux[j] * g2
            k1 += g1
            k2 += g2
            if d >= -inner and d <= inner:
                cnt += 1
        if cnt <= 3 or not (k1 > 0.0):
            continue
        ik = r1 / k1 - r2 / k2
        acc += ik * ik
        pn += pn_terms[i]
        nonzero += 1
    if nonzero == 0:
        return NAN, 0, NAN
    return acc / nonzero / normf, nonzero, pn / nonzero


@njit(cache=True)
def band_mhps(t: np.ndarray, mag: np.ndarray, err: np.ndarray, consts: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` with (ratio, low, high, non_zero, PN_flag) for one time-sorted band."""
    n = mag.size
    flux = np.empty(n)
    pn_terms = np.empty(n)
    for i in range(n):
        flux[i] = 10.0 ** (0.4 * (MAG0 - mag[i]))
        pn_terms[i] = math.log(10.0) * flux[i] * 0.4 * err[i]
    mean = flux.mean()
    var = 0.0
    for i in range(n):
        var += (flux[i] - mean) ** 2
    var /= n
    if not (var > 0.0):
        return
    z = (flux - mean) / math.sqrt(var)
    low, _, pn = _filtered_power(t, z, consts[0], pn_terms)
    if low != low:
        return
    # Photometric-noise power: squared mean flux error of the points the low-frequency filter used.
    pn = pn * pn / (mean * mean)
    low = low / (mean * mean) - pn
    high, nonzero, _ = _filtered_power(t, z, consts[1], pn_terms)
    if high != high:
        return
    high = high / (mean * mean)
    flag = 1.0
    if high > pn:
        high -= pn
        flag = 0.0
    out[0] = low / high
    out[1] = low
    out[2] = high
    out[3] = float(nonzero)
    out[4] = flag


@njit(cache=True)
def mhps_batch(
    t: np.ndarray, m: np.ndarray, e: np.ndarray, seg_off: np.ndarray, min_points: int, consts: np.ndarray
) -> np.ndarray:
    nseg = seg_off.size - 1
    out = np.full((nseg, N_MHPS), NAN)
    for s in range(nseg):
        a = seg_off[s]
        b = seg_off[s + 1]
        if b - a < min_points:
            continue
        band_mhps(t[a:b], m[a:b], e[a:b], consts, out[s])
    return out
