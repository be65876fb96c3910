"""Turbo-FATS-like variability statistics of one band, batched over a CSR layout of band segments.

Definitions follow ALeRCE's ``lc_classifier`` / turbo-fats (Sanchez-Saez et al. 2021); docs/features.md states each
one. One numba call computes every statistic for every (object, band) segment of a batch: the per-object loop lives
inside the compiled kernel, never in Python.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._nb import NAN, gammainc_lower, norm_logcdf, polyfit1, sorted_median, sorted_percentile

#: Column order of the kernel's output (per band; the public name appends ``_<fid>``).
BASIC_NAMES: tuple[str, ...] = (
    "Amplitude",
    "AndersonDarling",
    "Autocor_length",
    "Beyond1Std",
    "Con",
    "Eta_e",
    "Gskew",
    "MaxSlope",
    "Mean",
    "Meanvariance",
    "MedianAbsDev",
    "MedianBRP",
    "PairSlopeTrend",
    "PercentAmplitude",
    "Q31",
    "Rcs",
    "Skew",
    "SmallKurtosis",
    "Std",
    "StetsonK",
    "Pvar",
    "ExcessVar",
    "SF_ML_amplitude",
    "SF_ML_gamma",
    "LinearTrend",
    "iqr",
)
N_BASIC = len(BASIC_NAMES)

# Structure-function binning of Schmidt et al. 2010 as turbo-fats uses it: log-spaced bin edges from 5 d with
# 0.1 dex steps, pairs with 5 <= dt <= 365 d, and a power-law fit over 0.01 < tau/yr <= 0.5.
SF_EDGES = 10.0 ** np.arange(np.log10(5.0), np.log10(2000.0), 0.1)
SF_DT_MIN, SF_DT_MAX = 5.0, 365.0


@njit(cache=True)
def _anderson_darling(ms: np.ndarray, mean: float, std1: float) -> float:
    """scipy.stats.anderson(x, 'norm') statistic (no small-sample factor), squashed to (0, 1) like turbo-fats."""
    n = ms.size
    if not (std1 > 0.0):
        return NAN
    s = 0.0
    for i in range(n):
        zi = (ms[i] - mean) / std1
        zr = (ms[n - 1 - i] - mean) / std1
        # log(1 - Phi(z)) = log Phi(-z)
        s += (2.0 * (i + 1) - 1.0) * (norm_logcdf(zi) + norm_logcdf(-zr))
    a2 = -n - s / n
    arg = -10.0 * (a2 - 0.3)
    if arg > 700.0:
        return 0.0
    return 1.0 / (1.0 + math.exp(arg))


@njit(cache=True)
def _autocor_length(m: np.ndarray, mean: float) -> float:
    """First lag where the (biased, demeaned) autocorrelation drops below 1/e; n when it never does."""
    n = m.size
    c0 = 0.0
    for i in range(n):
        d = m[i] - mean
        c0 += d * d
    if not (c0 > 0.0):
        return NAN
    thr = math.exp(-1.0)
    for k in range(1, n):
        ck = 0.0
        for i in range(n - k):
            ck += (m[i] - mean) * (m[i + k] - mean)
        if ck / c0 < thr:
            return float(k)
    return float(n)


@njit(cache=True)
def _structure_function(
    t: np.ndarray, m: np.ndarray, e: np.ndarray, edges: np.ndarray
) -> tuple[float, float]:
    """Structure-function amplitude and slope (Schmidt et al. 2010 as in turbo-fats, SF_ML_*).

    t is sorted, so for each point the partners falling in a time-lag bin form a contiguous run; one forward-only
    pointer per bin edge finds the runs and prefix sums of m, m^2 and e^2 give each run's sum of
    (m_i - m_j)^2 - e_i^2 - e_j^2 in O(1). Cost O(n x bins) instead of O(n^2) pairs.
    """
    n = t.size
    nb = edges.size - 1
    nb_used = 0  # bins starting beyond the 365-day cap never receive a pair
    while nb_used < nb and edges[nb_used] <= SF_DT_MAX:
        nb_used += 1
    mu = m.mean()
    p1 = np.zeros(n + 1)
    p2 = np.zeros(n + 1)
    pe = np.zeros(n + 1)
    for j in range(n):
        d = m[j] - mu
        p1[j + 1] = p1[j] + d
        p2[j + 1] = p2[j] + d * d
        pe[j + 1] = pe[j] + e[j] * e[j]
    # ptr[k]: first j > i with t_j - t_i >= thr[k]; bin b holds the partners ptr[b] <= j < min(ptr[b + 1], cap).
    thr = np.empty(nb_used + 1)
    for k in range(nb_used + 1):
        thr[k] = edges[k]
    thr[0] = max(thr[0], SF_DT_MIN)
    ptr = np.zeros(nb_used + 1, dtype=np.int64)
    ptr_cap = 0  # first j with t_j - t_i > SF_DT_MAX
    acc = np.zeros(nb)
    cnt = np.zeros(nb, dtype=np.int64)
    for i in range(n):
        di = m[i] - mu
        ei2 = e[i] * e[i]
        ptr_cap = max(ptr_cap, i + 1)
        while ptr_cap < n and not (t[ptr_cap] - t[i] > SF_DT_MAX):
            ptr_cap += 1
        # Edges beyond the last partner within the cap are not needed for this point (stale pointers only ever
        # move forward later).
        k_end = 0
        for k in range(nb_used + 1):
            q = max(ptr[k], i + 1)
            while q < n and t[q] - t[i] < thr[k]:
                q += 1
            ptr[k] = q
            k_end = k
            if q >= ptr_cap:
                break
        for b in range(k_end):
            lo = ptr[b]
            hi = min(ptr[b + 1], ptr_cap)
            c = hi - lo
            if c <= 0:
                continue
            s1 = p1[hi] - p1[lo]
            s2 = p2[hi] - p2[lo]
            se = pe[hi] - pe[lo]
            acc[b] += c * di * di - 2.0 * di * s1 + s2 - c * ei2 - se
            cnt[b] += c
    xs = np.empty(nb)
    ys = np.empty(nb)
    k = 0
    nsf = 0
    for b in range(nb):
        if cnt[b] == 0:
            continue
        msf = acc[b] / cnt[b]
        if msf < 0.0:
            continue
        nsf += 1
        tau = 0.5 * (edges[b] + edges[b + 1]) / 365.0
        if tau <= 0.5 and tau > 0.01 and msf > 0.0:
            xs[k] = math.log10(tau)
            ys[k] = math.log10(math.sqrt(msf))
            k += 1
    if nsf < 2 or k < 2:
        return NAN, NAN
    slope, icpt = polyfit1(xs[:k], ys[:k])
    if slope != slope:
        return NAN, NAN
    a = 10.0**icpt
    gamma = slope
    if a < 0.005:
        a = 0.0
        gamma = 0.0
    elif a > 15.0:
        a = 15.0
    gamma = min(max(gamma, -0.5), 3.0)
    return a, gamma


@njit(cache=True)
def band_basic(t: np.ndarray, m: np.ndarray, e: np.ndarray, edges: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` (length N_BASIC) with the variability statistics of one time-sorted band."""
    n = m.size
    ms = np.sort(m)
    mean = 0.0
    for i in range(n):
        mean += m[i]
    mean /= n
    ss = 0.0
    s3 = 0.0
    s4 = 0.0
    for i in range(n):
        d = m[i] - mean
        ss += d * d
        s3 += d * d * d
        s4 += d * d * d * d
    var0 = ss / n
    std0 = math.sqrt(var0)
    std1 = math.sqrt(ss / (n - 1)) if n > 1 else NAN
    med = sorted_median(ms)

    # Amplitude: half the difference of the medians of the top and bottom 5 % (at least one point each).
    k5 = int(math.ceil(0.05 * n))
    out[0] = 0.5 * (sorted_median(ms[n - k5 :]) - sorted_median(ms[:k5]))
    out[1] = _anderson_darling(ms, mean, std1) if n >= 4 else NAN
    out[2] = _autocor_length(m, mean)

    # Beyond1Std around the inverse-variance weighted mean.
    sw = 0.0
    swm = 0.0
    for i in range(n):
        w = 1.0 / (e[i] * e[i])
        sw += w
        swm += w * m[i]
    wmean = swm / sw
    sd = 0.0
    for i in range(n):
        sd += (m[i] - wmean) ** 2
    sdw = math.sqrt(sd / (n - 1))
    c = 0
    for i in range(n):
        if m[i] > wmean + sdw or m[i] < wmean - sdw:
            c += 1
    out[3] = c / n

    # Con: windows of three consecutive points all outside mean +- 2 sigma.
    if n >= 3:
        c = 0
        for i in range(n - 2):
            ok = True
            for j in range(3):
                v = m[i + j]
                if not (v > mean + 2.0 * std0 or v < mean - 2.0 * std0):
                    ok = False
                    break
            if ok:
                c += 1
        out[4] = c / (n - 2)
    else:
        out[4] = 0.0

    # Eta_e (Kim et al. 2014, turbo-fats form) and MaxSlope.
    s1 = 0.0
    s2 = 0.0
    mx = 0.0
    for i in range(n - 1):
        dt = t[i + 1] - t[i]
        dm = m[i + 1] - m[i]
        w = 1.0 / (dt * dt)
        s1 += w * dm * dm
        s2 += w
        sl = abs(dm) / dt
        if sl > mx or sl != sl:
            mx = sl
    out[5] = (s1 / s2) / var0 if (n > 1 and var0 > 0.0) else NAN
    out[7] = mx if n > 1 else NAN

    # Gskew: median of the points below the 3rd and above the 97th percentile, minus twice the median.
    p3 = sorted_percentile(ms, 3.0)
    p97 = sorted_percentile(ms, 97.0)
    lo = 0
    while lo < n and ms[lo] <= p3:
        lo += 1
    hi = n
    while hi > 0 and ms[hi - 1] >= p97:
        hi -= 1
    out[6] = sorted_median(ms[:lo]) + sorted_median(ms[hi:]) - 2.0 * med

    out[8] = mean
    out[9] = std0 / mean
    dev = np.empty(n)
    for i in range(n):
        dev[i] = abs(m[i] - med)
    dev.sort()
    out[10] = sorted_median(dev)
    # MedianBRP: fraction within a tenth of the full range of the median.
    amp10 = (ms[n - 1] - ms[0]) / 10.0
    c = 0
    for i in range(n):
        if m[i] < med + amp10 and m[i] > med - amp10:
            c += 1
    out[11] = c / n
    # PairSlopeTrend over the last 30 points (always divided by 30, as turbo-fats does).
    start = max(0, n - 30)
    up = 0
    down = 0
    for i in range(start, n - 1):
        if m[i + 1] - m[i] > 0.0:
            up += 1
        else:
            down += 1
    out[12] = (up - down) / 30.0
    out[13] = dev[n - 1] / med
    q31 = sorted_percentile(ms, 75.0) - sorted_percentile(ms, 25.0)
    out[14] = q31
    # Rcs: range of the cumulative sum of deviations.
    if std0 > 0.0:
        cs = 0.0
        cmin = 0.0
        cmax = -np.inf
        cmin = np.inf
        for i in range(n):
            cs += (m[i] - mean) / (n * std0)
            cmin = min(cmin, cs)
            cmax = max(cmax, cs)
        out[15] = cmax - cmin
        out[16] = (s3 / n) / var0**1.5
    else:
        out[15] = NAN
        out[16] = NAN
    if n >= 4 and var0 > 0.0:
        c1 = n * (n + 1.0) / ((n - 1.0) * (n - 2.0) * (n - 3.0))
        c2 = 3.0 * (n - 1.0) ** 2 / ((n - 2.0) * (n - 3.0))
        out[17] = c1 * s4 / (var0 * var0) - c2
    else:
        out[17] = NAN
    out[18] = std0
    # Stetson K around the weighted mean.
    sa = 0.0
    sq = 0.0
    for i in range(n):
        r = (m[i] - wmean) / e[i]
        sa += abs(r)
        sq += r * r
    out[19] = sa / math.sqrt(n * sq) if sq > 0.0 else NAN
    # Pvar (chi2 CDF of the scatter around the plain mean) and excess variance.
    chi = 0.0
    se2 = 0.0
    for i in range(n):
        chi += (m[i] - mean) ** 2 / (e[i] * e[i])
        se2 += e[i] * e[i]
    out[20] = gammainc_lower(0.5 * (n - 1), 0.5 * chi) if n > 1 else NAN
    out[21] = (ss - se2) / (n * mean * mean)
    a, g = _structure_function(t, m, e, edges)
    out[22] = a
    out[23] = g
    slope, _ = polyfit1(t, m)
    out[24] = slope
    out[25] = q31


@njit(cache=True)
def basic_batch(
    t: np.ndarray, m: np.ndarray, e: np.ndarray, seg_off: np.ndarray, min_points: int, edges: np.ndarray
) -> np.ndarray:
    """Variability statistics for every segment; rows of segments with fewer than ``min_points`` stay NaN."""
    nseg = seg_off.size - 1
    out = np.full((nseg, N_BASIC), NAN)
    for s in range(nseg):
        a = seg_off[s]
        b = seg_off[s + 1]
        if b - a < min_points:
            continue
        band_basic(t[a:b], m[a:b], e[a:b], edges, out[s])
    return out
