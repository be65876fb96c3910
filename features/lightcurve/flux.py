"""Light-curve features from difference fluxes (Rubin/LSST ``psfFlux`` in nJy; bands u g r i z y).

``compute_flux_features(detections, forced=None)`` returns one row per object with at least
``MIN_FLUX_DETECTIONS`` clean detections summed over all bands: ``oid``, the float64 features of
``flux_feature_names()`` (per band ``<name>_<band>``, multi-band names bare) and ``FEATURE_VERSION``
(``FLUX_FEATURE_VERSION``). Every definition works on signed fluxes (no logarithm of a negative flux is ever
taken); definitions and minimum numbers of points: docs/features.md, "Features from difference fluxes (LSST)".

Layout: clean detections sorted by (object, band, mjd); object ``o`` owns six band segments ``6*o + b`` delimited
by ``seg_off``. Times are days since the object's first detection (any band). The cheap statistics come from the
``light-curve`` package's batch API over an Arrow list array of the segments (zero copy); the Bazin fit is our
own compiled Levenberg-Marquardt with several starting points (light-curve's LMSDER fit lands in a wrong basin
for about a third of noise-free supernova curves); the period search is light-curve's fast (FFT) Lomb-Scargle on
the chi-weighted residuals of all bands pooled (one FFT per object rather than one per band), its peak then
polished on the true multiband power (every band its own mean, amplitude and phase; one frequency) by compiled
code, which also gives the per-band sinusoid at that period. No Python loop runs per object or per band.

Forced photometry (``forced``, LSST's prvDiaForcedSources) is used by ``ForcedChi2_flux_<b>`` (chi2 per point of
the forced fluxes about zero: is there flux at the position at every visit, detected or not),
``Baseline_flux_<b>`` (the weighted mean forced flux before the object's first detection, the pre-explosion
baseline) and ``PeakSignificance_flux_<b>`` (the band's peak above that baseline in units of the combined error)
only. Everything else uses detections, so it does not change with whether forced photometry was supplied.
"""

from __future__ import annotations

import math

import light_curve as lc
import numpy as np
import pandas as pd
import pyarrow as pa
from numba import njit

from ._nb import NAN, solve_small

#: Version of the flux feature definitions, stored in every row's ``FEATURE_VERSION`` column.
FLUX_FEATURE_VERSION = "flux-1.0"
#: Passbands in output order; detections in any other band are ignored.
FLUX_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")
N_BANDS = len(FLUX_BANDS)
#: Adjacent band pairs of the peak colours.
COLOUR_PAIRS: tuple[tuple[str, str], ...] = tuple(zip(FLUX_BANDS[:-1], FLUX_BANDS[1:], strict=True))
#: Fewest clean detections (all bands together) an object needs to get a feature row.
MIN_FLUX_DETECTIONS = 6
#: Fewest points in a band for the Bazin fit.
MIN_FIT_POINTS = 6
#: Fewest points in a band for the sinusoid at the object's period (and for the band to count in the multiband
#: power).
MIN_SINE_POINTS = 5
#: Periodogram grid: angular frequencies linspace(0, 2 pi PERIOD_FMAX, 2**k + 1) with 2**k >= FMAX * span * OFAC,
#: k clipped to PERIOD_LOG2_GRID (light-curve's fast periodogram needs this grid shape).
PERIOD_FMAX = 10.0  # cycles / day: periods down to 2.4 hours
PERIOD_OFAC = 2.0
PERIOD_LOG2_GRID = (8, 16)
#: Periodogram peaks tried per object, rounds polishing each and the winner, harmonics of the ranking fit.
PERIOD_N_CANDIDATES = 5
PERIOD_REFINE_ITER = 2
PERIOD_POLISH_ITER = 2
PERIOD_N_HARMONICS = 4
#: Threads light-curve may use; 1 because Dask already runs one task per core.
N_JOBS = 1
REQUIRED_COLUMNS = ("oid", "band", "mjd", "flux", "flux_err")

#: light-curve extractor output -> our per-band name.
_LC_STATS: tuple[tuple[str, str], ...] = (
    ("weighted_mean", "WeightedMean_flux"),
    ("standard_deviation", "Std_flux"),
    ("amplitude", "Amplitude_flux"),
    ("skew", "Skew_flux"),
    ("kurtosis", "Kurtosis_flux"),
    ("median_absolute_deviation", "MedianAbsDev_flux"),
    ("chi2", "ReducedChi2_flux"),
    ("excess_variance", "ExcessVar_flux"),
    ("stetson_K", "StetsonK_flux"),
    ("eta", "Eta_flux"),
    ("linear_fit_slope", "LinearTrend_flux"),
    ("maximum_slope", "MaxSlope_flux"),
)
_STATS_EXTRACTOR = lc.Extractor(
    lc.WeightedMean(),
    lc.StandardDeviation(),
    lc.Amplitude(),
    lc.Skew(),
    lc.Kurtosis(),
    lc.MedianAbsoluteDeviation(),
    lc.ReducedChi2(),
    lc.ExcessVariance(),
    lc.StetsonK(),
    lc.Eta(),
    lc.LinearFit(),
    lc.MaximumSlope(),
)
_STATS_COLUMNS = np.array([_STATS_EXTRACTOR.names.index(src) for src, _ in _LC_STATS])
_ARROW_FIELDS = {"t": "t", "m": "m", "sigma": "s"}

BAZIN_NAMES: tuple[str, ...] = (
    "Bazin_A_flux",
    "Bazin_t0_flux",
    "Bazin_tau_rise_flux",
    "Bazin_tau_fall_flux",
    "Bazin_chi2_flux",
)
N_BAZIN_OUT = len(BAZIN_NAMES)
FLUX_BAND_NAMES: tuple[str, ...] = (
    ("n_det_flux",)
    + tuple(name for _, name in _LC_STATS)
    + ("Peak_flux", "RiseTime_flux", "DeclineTime_flux")
    + BAZIN_NAMES
    + ("PeriodPower_flux", "PeriodAmplitude_flux")
    + ("ForcedChi2_flux", "Baseline_flux", "PeakSignificance_flux")
)
FLUX_OBJECT_NAMES: tuple[str, ...] = (
    ("n_det_flux", "NegativeFraction_flux", "Duration_flux")
    + tuple(f"{a}-{b}_peak_flux" for a, b in COLOUR_PAIRS)
    + ("Period_flux", "PeriodPower_flux", "PeriodSNR_flux")
)


def flux_feature_names() -> list[str]:
    """Every feature column of ``compute_flux_features``' output, in order (without ``oid`` and the version)."""
    per_band = [f"{name}_{band}" for name in FLUX_BAND_NAMES for band in FLUX_BANDS]
    return per_band + list(FLUX_OBJECT_NAMES)


# --------------------------------------------------------------------------------------------------- cleaning


def _float_column(df: pd.DataFrame, name: str) -> np.ndarray:
    col = df[name]
    if col.dtype == object or isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(col):
        col = pd.to_numeric(col, errors="coerce")
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def _clean(df: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(oid as str, band code 0..5, mjd, flux, err) of the usable rows of ``df``."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lack required columns {missing} (oid, band, mjd, flux, flux_err)")
    band = pd.Categorical(df["band"].to_numpy(dtype=object), categories=list(FLUX_BANDS)).codes
    t = _float_column(df, "mjd")
    f = _float_column(df, "flux")
    e = _float_column(df, "flux_err")
    oid = df["oid"].to_numpy(dtype=object)
    with np.errstate(invalid="ignore"):
        keep = (band >= 0) & np.isfinite(t) & np.isfinite(f) & np.isfinite(e) & (e > 0.0) & ~pd.isna(oid)
    idx = np.flatnonzero(keep)
    return oid[idx].astype(str), band[idx].astype(np.int64), t[idx], f[idx], e[idx]


def _dedupe_sorted(
    code: np.ndarray, band: np.ndarray, t: np.ndarray, e: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Order by (object, band, mjd, error) and a mask keeping the first row of each (object, band, mjd)."""
    order = np.lexsort((e, t, band, code))
    c, b, tt = code[order], band[order], t[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (c[1:] != c[:-1]) | (b[1:] != b[:-1]) | (tt[1:] != tt[:-1])
    return order, first


# ------------------------------------------------------------------------------------------------- Bazin fit

N_BAZIN_PAR = 5  # A, B, t0, tau_rise, tau_fall
BAZIN_MAX_ITER = 30
BAZIN_N_POLISH = 2
BAZIN_TAU_RISE = (0.01, 100.0)  # days
BAZIN_TAU_FALL = (0.1, 1000.0)  # days
BAZIN_T0_MARGIN = 100.0  # days before the band's first / after its last point


@njit(cache=True)
def bazin_model(
    t: np.ndarray, ie: np.ndarray, p: np.ndarray, out: np.ndarray, jac: np.ndarray, want_jac: bool
) -> None:
    """Weighted Bazin model ``(A g(t) + B) * ie`` into ``out`` (and its 5 x n Jacobian into ``jac``).

    g(t) = exp(-(t - t0)/tau_fall) / (1 + exp(-(t - t0)/tau_rise)), evaluated in log space with a stable softplus
    so neither exponential overflows on its own; the exponent is capped so a wild trial stays finite.
    """
    amp, base, t0, tr, tf = p[0], p[1], p[2], p[3], p[4]
    for i in range(t.size):
        x = t[i] - t0
        z = -x / tr
        if z > 0.0:
            ez = math.exp(-z)
            sp = z + math.log1p(ez)
            sig = 1.0 / (1.0 + ez)
        else:
            ez = math.exp(z)
            sp = math.log1p(ez)
            sig = ez / (1.0 + ez)
        g = math.exp(min(-x / tf - sp, 700.0))
        w = ie[i]
        out[i] = (amp * g + base) * w
        if want_jac:
            ag = amp * g * w
            jac[0, i] = g * w
            jac[1, i] = w
            jac[2, i] = ag * (1.0 / tf - sig / tr)
            jac[3, i] = -ag * sig * x / (tr * tr)
            jac[4, i] = ag * x / (tf * tf)


@njit(cache=True)
def _cost(y: np.ndarray, pred: np.ndarray) -> float:
    c = 0.0
    for i in range(y.size):
        r = pred[i] - y[i]
        c += r * r
    return c if c == c else np.inf


@njit(cache=True)
def bazin_lm(
    t: np.ndarray,
    y: np.ndarray,
    ie: np.ndarray,
    p: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    max_iter: int,
    ws: np.ndarray,
) -> float:
    """Bounded Levenberg-Marquardt on weighted residuals (``y`` is flux / error); updates ``p``, returns chi2.

    ``ws`` is a (2 * (N_BAZIN_PAR + 1), n) workspace. A parameter pinned at a bound with the gradient pushing
    outwards is frozen for the iteration; other steps are clipped into the box.
    """
    npar = N_BAZIN_PAR
    pred = ws[0]
    jac = ws[1 : npar + 1]
    pred_t = ws[npar + 1]
    jac_t = ws[npar + 2 :]
    hess = np.empty((npar, npar))
    mat = np.empty((npar, npar))
    grad = np.empty(npar)
    rhs = np.empty(npar)
    trial = np.empty(npar)
    active = np.zeros(npar, dtype=np.bool_)
    bazin_model(t, ie, p, pred, jac, True)
    cost = _cost(y, pred)
    lam = 1e-3
    for _ in range(max_iter):
        for a in range(npar):
            s = 0.0
            for i in range(t.size):
                s += jac[a, i] * (pred[i] - y[i])
            grad[a] = s
            for b in range(a, npar):
                v = 0.0
                for i in range(t.size):
                    v += jac[a, i] * jac[b, i]
                hess[a, b] = v
                hess[b, a] = v
        for a in range(npar):
            active[a] = (p[a] <= lo[a] and grad[a] > 0.0) or (p[a] >= hi[a] and grad[a] < 0.0)
        improved = False
        while lam < 1e10:
            for a in range(npar):
                for b in range(npar):
                    mat[a, b] = 0.0 if (active[a] or active[b]) else hess[a, b]
                if active[a]:
                    mat[a, a] = 1.0
                    rhs[a] = 0.0
                else:
                    mat[a, a] += lam * hess[a, a] + 1e-12 * (1.0 + hess[a, a])
                    rhs[a] = -grad[a]
            moved = 0.0
            if solve_small(mat, rhs):
                for a in range(npar):
                    v = min(max(p[a] + rhs[a], lo[a]), hi[a])
                    trial[a] = v
                    moved = max(moved, abs(v - p[a]) / (abs(p[a]) + 1e-8))
                bazin_model(t, ie, trial, pred_t, jac_t, True)
                new_cost = _cost(y, pred_t)
                if new_cost < cost:
                    rel = (cost - new_cost) / max(cost, 1e-300)
                    p[:] = trial
                    pred, pred_t = pred_t, pred
                    jac, jac_t = jac_t, jac
                    cost = new_cost
                    lam = max(lam / 3.0, 1e-12)
                    improved = True
                    if rel < 1e-10 or moved < 1e-10:
                        return cost
                    break
                if moved < 1e-10:
                    return cost
            lam *= 10.0
        if not improved:
            return cost
    return cost


@njit(cache=True)
def _linear_amp_base(t: np.ndarray, y: np.ndarray, ie: np.ndarray, p: np.ndarray, g: np.ndarray) -> float:
    """Set A and B of ``p`` to their weighted least-squares values for its (t0, tau_rise, tau_fall); return chi2."""
    p[0] = 1.0
    p[1] = 0.0
    dummy = np.empty((1, 1))
    bazin_model(t, ie, p, g, dummy, False)  # g[i] = g(t_i) / err_i
    sgg = 0.0
    sg1 = 0.0
    s11 = 0.0
    sgy = 0.0
    s1y = 0.0
    for i in range(t.size):
        sgg += g[i] * g[i]
        sg1 += g[i] * ie[i]
        s11 += ie[i] * ie[i]
        sgy += g[i] * y[i]
        s1y += ie[i] * y[i]
    det = sgg * s11 - sg1 * sg1
    if not (det > 1e-12 * sgg * s11) or not math.isfinite(det):
        return np.inf
    p[0] = (sgy * s11 - s1y * sg1) / det
    p[1] = (s1y * sgg - sgy * sg1) / det
    c = 0.0
    for i in range(t.size):
        r = p[0] * g[i] + p[1] * ie[i] - y[i]
        c += r * r
    return c if c == c else np.inf


@njit(cache=True)
def band_bazin(t: np.ndarray, flux: np.ndarray, err: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` with (A, t0, tau_rise, tau_fall, reduced chi2) for one time-sorted band.

    Fluxes are scaled by their largest absolute value for the fit. Starting points: a 3 x 3 grid of rise and fall
    times with t0 placed so the model peaks at the band's extreme flux and A, B solved linearly; the
    ``BAZIN_N_POLISH`` best are run to convergence and the lowest chi2 wins.
    """
    n = t.size
    if n < N_BAZIN_PAR + 1:
        return
    scale = 0.0
    imax = 0
    imin = 0
    for i in range(n):
        scale = max(scale, abs(flux[i]))
        if flux[i] > flux[imax]:
            imax = i
        if flux[i] < flux[imin]:
            imin = i
    if not (scale > 0.0):
        return
    ipk = imax if flux[imax] >= -flux[imin] else imin
    ie = np.empty(n)
    y = np.empty(n)
    for i in range(n):
        ie[i] = scale / err[i]
        y[i] = flux[i] / err[i]
    tp = t[ipk]
    lo = np.array([-100.0, -10.0, t[0] - BAZIN_T0_MARGIN, BAZIN_TAU_RISE[0], BAZIN_TAU_FALL[0]])
    hi = np.array([100.0, 10.0, t[n - 1] + BAZIN_T0_MARGIN, BAZIN_TAU_RISE[1], BAZIN_TAU_FALL[1]])
    rises = (0.5, 3.0, 10.0)
    falls = (5.0, 20.0, 60.0)
    ns = len(rises) * len(falls)
    starts = np.empty((ns, N_BAZIN_PAR))
    costs = np.empty(ns)
    ws = np.empty((2 * (N_BAZIN_PAR + 1), n))
    k = 0
    for tr in rises:
        for tf in falls:
            p = starts[k]
            p[2] = tp - tr * math.log(max(tf / tr - 1.0, 1e-2))
            p[3] = tr
            p[4] = tf
            costs[k] = _linear_amp_base(t, y, ie, p, ws[0])
            for a in range(N_BAZIN_PAR):
                p[a] = min(max(p[a], lo[a]), hi[a])
            k += 1
    order = np.argsort(costs)
    best = np.inf
    bestp = np.empty(N_BAZIN_PAR)
    for r in range(BAZIN_N_POLISH):
        p = starts[order[r]]
        if not (costs[order[r]] < np.inf):
            break
        c = bazin_lm(t, y, ie, p, lo, hi, BAZIN_MAX_ITER, ws)
        if c < best:
            best = c
            bestp[:] = p
    if not (best < np.inf):
        return
    out[0] = bestp[0] * scale
    out[1] = bestp[2]
    out[2] = bestp[3]
    out[3] = bestp[4]
    out[4] = best / (n - N_BAZIN_PAR)


@njit(cache=True)
def bazin_batch(
    t: np.ndarray, flux: np.ndarray, err: np.ndarray, seg_off: np.ndarray, min_points: int
) -> np.ndarray:
    """Bazin fit of every segment with at least ``min_points`` points; (n_segments, 5), NaN elsewhere."""
    nseg = seg_off.size - 1
    out = np.full((nseg, N_BAZIN_OUT), NAN)
    for s in range(nseg):
        a = seg_off[s]
        b = seg_off[s + 1]
        if b - a < min_points:
            continue
        band_bazin(t[a:b], flux[a:b], err[a:b], out[s])
    return out


# ----------------------------------------------------------------------------------------------- periodic parts


def _segment_list(t: np.ndarray, f: np.ndarray, e: np.ndarray, off: np.ndarray) -> pa.ListArray:
    """Segments as an Arrow List<Struct<t, m, s>> (zero copy) for light-curve's ``many``."""
    values = pa.StructArray.from_arrays([pa.array(t), pa.array(f), pa.array(e)], names=["t", "m", "s"])
    return pa.ListArray.from_arrays(pa.array(off.astype(np.int32)), values)


@njit(cache=True)
def sinusoid_chi2(t: np.ndarray, y: np.ndarray, w: np.ndarray, omega: float) -> tuple[float, float, float]:
    """Weighted fit y = c + a cos(omega t) + b sin(omega t) of one segment.

    Returns (chi2 of the constant, chi2 of the sinusoid, semi-amplitude sqrt(a^2 + b^2)); NaN for a non-finite
    frequency, a constant ``y`` or a singular system.
    """
    n = t.size
    if n < 3 or not math.isfinite(omega):
        return NAN, NAN, NAN
    sw = 0.0
    swy = 0.0
    for i in range(n):
        sw += w[i]
        swy += w[i] * y[i]
    ybar = swy / sw
    swc = sws = swcc = swss = swcs = 0.0
    sy = syc = sys_ = chi_const = 0.0
    for i in range(n):
        c = math.cos(omega * t[i])
        s = math.sin(omega * t[i])
        wi = w[i]
        yc = y[i] - ybar
        swc += wi * c
        sws += wi * s
        swcc += wi * c * c
        swss += wi * s * s
        swcs += wi * c * s
        sy += wi * yc
        syc += wi * yc * c
        sys_ += wi * yc * s
        chi_const += wi * yc * yc
    if not (chi_const > 0.0):
        return NAN, NAN, NAN
    det = sw * (swcc * swss - swcs * swcs) - swc * (swc * swss - swcs * sws) + sws * (swc * swcs - swcc * sws)
    if not (abs(det) > 1e-10 * abs(sw * swcc * swss)):
        return NAN, NAN, NAN
    mat = np.array([[sw, swc, sws], [swc, swcc, swcs], [sws, swcs, swss]])
    rhs = np.array([sy, syc, sys_])
    if not solve_small(mat, rhs):
        return NAN, NAN, NAN
    chi_model = min(max(chi_const - (rhs[0] * sy + rhs[1] * syc + rhs[2] * sys_), 0.0), chi_const)
    return chi_const, chi_model, math.hypot(rhs[1], rhs[2])


@njit(cache=True)
def sinusoid_batch(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, off: np.ndarray, omega: np.ndarray, min_points: int
) -> np.ndarray:
    """Per segment at its own frequency: (power, semi-amplitude), power = 1 - chi2(sinusoid) / chi2(constant)
    in [0, 1] (the generalised Lomb-Scargle power); NaN below ``min_points`` points or where undefined."""
    nseg = off.size - 1
    out = np.full((nseg, 2), NAN)
    for s in range(nseg):
        a = off[s]
        b = off[s + 1]
        if b - a < min_points:
            continue
        cc, cm, amp = sinusoid_chi2(t[a:b], y[a:b], w[a:b], omega[s])
        if cc > 0.0:
            out[s, 0] = 1.0 - cm / cc
            out[s, 1] = amp
    return out


@njit(cache=True)
def multiband_power(
    t: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    seg_off: np.ndarray,
    o: int,
    n_bands: int,
    omega: float,
    min_points: int,
) -> float:
    """Multiband power of object ``o`` at ``omega``: 1 - sum_b chi2_b(sinusoid) / sum_b chi2_b(constant) over its
    bands with at least ``min_points`` points (each band its own mean, amplitude and phase; shared frequency)."""
    cc = 0.0
    cm = 0.0
    for b in range(n_bands):
        s = o * n_bands + b
        lo = seg_off[s]
        hi = seg_off[s + 1]
        if hi - lo < min_points:
            continue
        c, m, _ = sinusoid_chi2(t[lo:hi], y[lo:hi], w[lo:hi], omega)
        if c > 0.0:
            cc += c
            cm += m
    return 1.0 - cm / cc if cc > 0.0 else NAN


@njit(cache=True)
def _refine_one(
    t: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    seg_off: np.ndarray,
    o: int,
    n_bands: int,
    w0: float,
    h: float,
    n_iter: int,
    min_points: int,
) -> tuple[float, float]:
    """``n_iter`` rounds of comparing the multiband power at omega +- h and at the vertex of the parabola through
    the three, h shrinking threefold per round. Returns (angular frequency, power); (w0, NaN) where undefined."""
    p0 = multiband_power(t, y, w, seg_off, o, n_bands, w0, min_points)
    if not math.isfinite(p0):
        return w0, NAN
    for _ in range(n_iter):
        pm = multiband_power(t, y, w, seg_off, o, n_bands, w0 - h, min_points)
        pp = multiband_power(t, y, w, seg_off, o, n_bands, w0 + h, min_points)
        best_w = w0
        best_p = p0
        if pm > best_p:
            best_w, best_p = w0 - h, pm
        if pp > best_p:
            best_w, best_p = w0 + h, pp
        denom = pm - 2.0 * p0 + pp
        if denom < 0.0:
            wv = w0 + 0.5 * h * (pm - pp) / denom
            if abs(wv - w0) <= h and wv > 0.0:
                pv = multiband_power(t, y, w, seg_off, o, n_bands, wv, min_points)
                if pv > best_p:
                    best_w, best_p = wv, pv
        w0 = best_w
        p0 = best_p
        h /= 3.0
    return w0, p0


@njit(cache=True)
def harmonic_chi2(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, boff: np.ndarray, omega: float, nh: int
) -> float:
    """Sum over bands of n_b * (unexplained fraction of chi2) of a per-band offset + ``nh``-harmonic weighted fit.

    ``boff`` delimits the bands inside ``t``/``y``/``w``; bands whose weights are all zero contribute nothing. A
    multi-harmonic model tells a non-sinusoidal variable's true period from its daily aliases far better than the
    one-harmonic power that proposed them (the ZTF set's periodogram.py ranks its candidates the same way).
    """
    npar = 1 + 2 * nh
    total = 0.0
    basis = np.empty(npar)
    ata = np.empty((npar, npar))
    aty = np.empty(npar)
    for b in range(boff.size - 1):
        lo = boff[b]
        hi = boff[b + 1]
        sw = 0.0
        swy = 0.0
        for j in range(lo, hi):
            sw += w[j]
            swy += w[j] * y[j]
        if not (sw > 0.0):
            continue
        ybar = swy / sw
        ata[:, :] = 0.0
        aty[:] = 0.0
        yy = 0.0
        for j in range(lo, hi):
            ph = omega * t[j]
            c1 = math.cos(ph)
            s1 = math.sin(ph)
            ck = c1
            sk = s1
            basis[0] = 1.0
            for k in range(nh):
                basis[1 + 2 * k] = ck
                basis[2 + 2 * k] = sk
                ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
            wj = w[j]
            yc = y[j] - ybar
            for p in range(npar):
                aty[p] += wj * basis[p] * yc
                for q in range(p, npar):
                    ata[p, q] += wj * basis[p] * basis[q]
            yy += wj * yc * yc
        if not (yy > 0.0):
            continue
        for p in range(npar):
            ata[p, p] += 1e-10 * (1.0 + ata[p, p])
            for q in range(p):
                ata[p, q] = ata[q, p]
        sol = aty.copy()
        if not solve_small(ata.copy(), sol):
            return np.inf
        expl = 0.0
        for p in range(npar):
            expl += sol[p] * aty[p]
        total += max(yy - expl, 0.0) / yy * (hi - lo)
    return total


@njit(cache=True)
def select_period(
    t: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    seg_off: np.ndarray,
    n_bands: int,
    cand: np.ndarray,
    step: np.ndarray,
    min_points: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each object's period among its periodogram candidates (``cand``: (n_objects, n_candidates) angular
    frequencies, NaN padded). Every candidate is polished for ``PERIOD_REFINE_ITER`` rounds on the multiband
    power (h from the grid ``step``), the candidates are ranked by ``harmonic_chi2`` with ``PERIOD_N_HARMONICS``
    harmonics (bands with fewer than ``min_points`` points left out) and the winner polished for
    ``PERIOD_POLISH_ITER`` more rounds. Returns (angular frequency, multiband power there, index of the winner);
    NaN / -1 where no candidate has a defined power."""
    nobj = cand.shape[0]
    omega = np.full(nobj, NAN)
    power = np.full(nobj, NAN)
    which = np.full(nobj, -1, dtype=np.int64)
    for o in range(nobj):
        a = seg_off[o * n_bands]
        b = seg_off[o * n_bands + n_bands]
        tt = t[a:b]
        yy = y[a:b]
        ww = w[a:b].copy()
        boff = seg_off[o * n_bands : o * n_bands + n_bands + 1] - a
        for k in range(n_bands):
            if boff[k + 1] - boff[k] < min_points:
                ww[boff[k] : boff[k + 1]] = 0.0
        best_c = np.inf
        for j in range(cand.shape[1]):
            w0 = cand[o, j]
            if not (w0 > 0.0):
                continue
            wr, pr = _refine_one(t, y, w, seg_off, o, n_bands, w0, step[o], PERIOD_REFINE_ITER, min_points)
            if not math.isfinite(pr):
                continue
            c = harmonic_chi2(tt, yy, ww, boff, wr, PERIOD_N_HARMONICS)
            if c < best_c:
                best_c = c
                omega[o] = wr
                power[o] = pr
                which[o] = j
        if which[o] >= 0:
            h = step[o] / 3.0**PERIOD_REFINE_ITER
            omega[o], power[o] = _refine_one(
                t, y, w, seg_off, o, n_bands, omega[o], h, PERIOD_POLISH_ITER, min_points
            )
    return omega, power, which


_PERIODOGRAMS: dict[int, lc.Periodogram] = {}


def _periodogram(k: int) -> lc.Periodogram:
    if k not in _PERIODOGRAMS:
        freqs = np.linspace(0.0, 2.0 * np.pi * PERIOD_FMAX, 2**k + 1)
        _PERIODOGRAMS[k] = lc.Periodogram(peaks=PERIOD_N_CANDIDATES, freqs=freqs, fast=True)
    return _PERIODOGRAMS[k]


def pooled_candidates(
    t: np.ndarray, r: np.ndarray, off: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate peaks of light-curve's fast Lomb-Scargle of each object's time-sorted pooled data, on a grid whose
    size follows the object's time span (objects grouped by grid size). Returns (angular frequencies,
    signal-to-noise of each peak), both (n_objects, PERIOD_N_CANDIDATES) and NaN padded, and the grid step."""
    nobj = off.size - 1
    period = np.full((nobj, PERIOD_N_CANDIDATES), np.nan)
    snr = np.full((nobj, PERIOD_N_CANDIDATES), np.nan)
    span = t[off[1:] - 1] - t[off[:-1]]
    need = PERIOD_FMAX * np.maximum(span, 1.0) * PERIOD_OFAC
    k = np.clip(np.ceil(np.log2(need)), *PERIOD_LOG2_GRID).astype(np.int64)
    lists = _segment_list(t, r, np.ones_like(r), off)
    for kk in np.unique(k):
        sel = np.flatnonzero(k == kk)
        sub = lists if sel.size == nobj else lists.take(pa.array(sel))
        res = _periodogram(int(kk)).many(
            sub, arrow_fields=_ARROW_FIELDS, fill_value=np.nan, sorted=True, check=False, n_jobs=N_JOBS
        )
        period[sel] = res[:, 0::2]
        snr[sel] = res[:, 1::2]
    bad = ~(np.isfinite(period) & (period > 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        omega = np.where(bad, np.nan, 2.0 * np.pi / period)
    snr[bad] = np.nan
    return omega, snr, 2.0 * np.pi * PERIOD_FMAX / 2.0**k


def _segment_argmax(
    values: np.ndarray, seg: np.ndarray, nseg: int, starts: np.ndarray, nonempty: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(max, index of the first maximum) per non-empty segment of data sorted by segment."""
    vmax = np.full(nseg, np.nan)
    imax = np.zeros(nseg, dtype=np.int64)
    if values.size == 0:
        return vmax, imax
    st = starts[nonempty]
    vmax[nonempty] = np.maximum.reduceat(values, st)
    cand = np.where(values == vmax[seg], np.arange(values.size), values.size)
    imax[nonempty] = np.minimum.reduceat(cand, st)
    return vmax, imax


# ---------------------------------------------------------------------------------------------------- entry


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(x), x, np.nan)


def _empty_output() -> pd.DataFrame:
    data = {"oid": pd.Series([], dtype=object)}
    for name in flux_feature_names():
        data[name] = pd.Series([], dtype=np.float64)
    out = pd.DataFrame(data)
    out["FEATURE_VERSION"] = pd.Series([], dtype=object)
    return out


def _forced_features(
    forced: pd.DataFrame | None, oids: np.ndarray, t_first: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per band segment from forced photometry: (chi2 per point about zero flux, weighted mean flux before the
    object's first detection, its error). NaN where the segment has no (pre-detection) forced point."""
    nseg = oids.size * N_BANDS
    forced_chi2 = np.full(nseg, np.nan)
    base = np.full(nseg, np.nan)
    base_err = np.full(nseg, np.nan)
    if forced is None or len(forced) == 0:
        return forced_chi2, base, base_err
    f_oid, f_band, f_mjd, f_flux, f_err = _clean(forced, "forced")
    f_obj = pd.Index(oids).get_indexer(f_oid)
    order, first = _dedupe_sorted(f_obj, f_band, f_mjd, f_err)
    order = order[first & (f_obj[order] >= 0)]
    f_obj, f_band, f_mjd, f_flux, f_err = (
        f_obj[order],
        f_band[order],
        f_mjd[order],
        f_flux[order],
        f_err[order],
    )
    f_seg = f_obj * N_BANDS + f_band
    n_forced = np.bincount(f_seg, minlength=nseg)
    chi = np.bincount(f_seg, weights=(f_flux / f_err) ** 2, minlength=nseg)
    has = n_forced > 0
    forced_chi2[has] = chi[has] / n_forced[has]
    pre = f_mjd < t_first[f_obj]
    w = f_err[pre] ** -2
    sw = np.bincount(f_seg[pre], weights=w, minlength=nseg)
    swf = np.bincount(f_seg[pre], weights=w * f_flux[pre], minlength=nseg)
    has = sw > 0
    base[has] = swf[has] / sw[has]
    base_err[has] = sw[has] ** -0.5
    return forced_chi2, base, base_err


def compute_flux_features(detections: pd.DataFrame, forced: pd.DataFrame | None = None) -> pd.DataFrame:
    """Difference-flux light-curve features of every object with at least ``MIN_FLUX_DETECTIONS`` detections.

    ``detections``: one row per detection with ``oid, band, mjd, flux, flux_err`` (nJy); rows in other bands than
    u g r i z y, with a non-finite value or an error <= 0 are ignored, and of rows sharing (oid, band, mjd) the
    one with the smallest error is kept. ``forced``: optional forced photometry with the same columns and the same
    cleaning (used only by ``ForcedChi2_flux_<b>``, ``Baseline_flux_<b>`` and ``PeakSignificance_flux_<b>``).
    Returns ``oid``, the float64 features of ``flux_feature_names()`` (NaN where undefined, never inf) and
    ``FEATURE_VERSION``; one row per object, sorted by oid. Raises ValueError when a required column is missing.
    """
    oid_s, band, mjd, flux, err = _clean(detections, "detections")
    codes_all, uniq_all = pd.factorize(oid_s, sort=True)
    order, first = _dedupe_sorted(codes_all, band, mjd, err)
    order = order[first]
    codes_all = codes_all[order]
    counts = np.bincount(codes_all, minlength=uniq_all.size)
    good = counts >= MIN_FLUX_DETECTIONS
    sel = good[codes_all]
    order = order[sel]
    oids = np.asarray(uniq_all[good], dtype=object)
    nobj = oids.size
    if nobj == 0:
        return _empty_output()
    obj = (np.cumsum(good) - 1)[codes_all[sel]]
    band = band[order]
    mjd = mjd[order]
    flux = np.ascontiguousarray(flux[order])
    err = np.ascontiguousarray(err[order])
    seg = obj * N_BANDS + band
    nseg = nobj * N_BANDS
    n_seg = np.bincount(seg, minlength=nseg)
    seg_off = np.zeros(nseg + 1, dtype=np.int64)
    seg_off[1:] = np.cumsum(n_seg)
    starts = seg_off[:-1]
    nonempty = n_seg > 0
    obj_off = seg_off[::N_BANDS]
    t_first = np.minimum.reduceat(mjd, obj_off[:-1])  # per object, over all bands (all objects non-empty)
    t = np.ascontiguousarray(mjd - t_first[obj])

    cols: dict[str, np.ndarray] = {"n_det_flux": n_seg.astype(np.float64)}

    # light-curve's statistics, one batch call over the non-empty segments
    ne = np.flatnonzero(nonempty)
    lists = _segment_list(t, flux, err, seg_off)
    stats = np.full((nseg, len(_LC_STATS)), np.nan)
    sub = lists.take(pa.array(ne)) if ne.size < nseg else lists
    res = _STATS_EXTRACTOR.many(
        sub, arrow_fields=_ARROW_FIELDS, fill_value=np.nan, sorted=True, check=False, n_jobs=N_JOBS
    )
    stats[ne] = res[:, _STATS_COLUMNS]
    for j, (_, name) in enumerate(_LC_STATS):
        cols[name] = stats[:, j]

    # peak, rise and decline
    t_lo = np.full(nseg, np.nan)
    t_hi = np.full(nseg, np.nan)
    t_lo[ne] = t[starts[ne]]
    t_hi[ne] = t[seg_off[1:][ne] - 1]
    peak, ipk = _segment_argmax(flux, seg, nseg, starts, nonempty)
    t_pk = np.where(nonempty, t[np.minimum(ipk, max(t.size - 1, 0))], np.nan)
    cols["Peak_flux"] = peak
    cols["RiseTime_flux"] = t_pk - t_lo
    cols["DeclineTime_flux"] = t_hi - t_pk

    # Bazin fit (compiled, multi-start)
    bz = bazin_batch(t, flux, err, seg_off, MIN_FIT_POINTS)
    for j, name in enumerate(BAZIN_NAMES):
        cols[name] = bz[:, j]

    # pooled chi-weighted periodogram -> candidates -> object period; per band sinusoid at that period
    wmean = cols["WeightedMean_flux"]
    resid = (flux - wmean[seg]) / err
    pool = np.lexsort((t, obj))  # same object boundaries (obj_off), time-sorted within each object
    cand, cand_snr, step = pooled_candidates(
        np.ascontiguousarray(t[pool]), np.ascontiguousarray(resid[pool]), obj_off
    )
    w = err**-2
    omega, pow_obj, which = select_period(
        t, flux - wmean[seg], w, seg_off, N_BANDS, cand, step, MIN_SINE_POINTS
    )
    snr = np.where(which >= 0, cand_snr[np.arange(nobj), np.maximum(which, 0)], np.nan)
    band_fit = sinusoid_batch(t, flux, w, seg_off, np.repeat(omega, N_BANDS), MIN_SINE_POINTS)
    cols["PeriodPower_flux"] = band_fit[:, 0]
    cols["PeriodAmplitude_flux"] = band_fit[:, 1]

    # forced photometry: chi2 about zero flux, pre-detection baseline and the peak's significance above it
    forced_chi2, base, base_err = _forced_features(forced, oids, t_first)
    err_pk = np.where(nonempty, err[np.minimum(ipk, max(err.size - 1, 0))], np.nan)
    cols["ForcedChi2_flux"] = forced_chi2
    cols["Baseline_flux"] = base
    cols["PeakSignificance_flux"] = (peak - base) / np.sqrt(err_pk**2 + base_err**2)

    # object level
    n_obj = np.bincount(obj, minlength=nobj).astype(np.float64)
    obj_cols: dict[str, np.ndarray] = {
        "n_det_flux": n_obj,
        "NegativeFraction_flux": np.bincount(obj, weights=(flux < 0.0).astype(np.float64), minlength=nobj)
        / n_obj,
        "Duration_flux": np.maximum.reduceat(t, obj_off[:-1]),
        "Period_flux": 2.0 * np.pi / omega,
        "PeriodPower_flux": pow_obj,
        "PeriodSNR_flux": snr,
    }
    peak2 = peak.reshape(nobj, N_BANDS)
    with np.errstate(divide="ignore", invalid="ignore"):
        for a, b in COLOUR_PAIRS:
            pa_, pb = peak2[:, FLUX_BANDS.index(a)], peak2[:, FLUX_BANDS.index(b)]
            both = (pa_ > 0.0) & (pb > 0.0)
            obj_cols[f"{a}-{b}_peak_flux"] = np.where(
                both, -2.5 * np.log10(np.where(both, pa_, 1.0) / np.where(both, pb, 1.0)), np.nan
            )

    data: dict[str, object] = {"oid": pd.Series(oids, dtype=object)}
    for name in FLUX_BAND_NAMES:
        cube = _finite(cols[name]).reshape(nobj, N_BANDS)
        for b, band_name in enumerate(FLUX_BANDS):
            data[f"{name}_{band_name}"] = cube[:, b]
    for name in FLUX_OBJECT_NAMES:
        data[name] = _finite(obj_cols[name])
    out = pd.DataFrame(data)
    out["FEATURE_VERSION"] = FLUX_FEATURE_VERSION
    return out
