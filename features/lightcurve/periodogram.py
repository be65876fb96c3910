"""Multiband periodogram (g and r jointly) and the features read off the best period.

The periodogram is the multiband analysis-of-variance statistic ALeRCE computes with P4J's MHAOV (one harmonic):
in each band a weighted sinusoid plus a free offset is fitted at frequency f (the generalised Lomb-Scargle of
Zechmeister & Kuerster 2009); with dchi2_b(f) the chi-square it explains and chi2_b the chi-square about the
weighted mean,

    F(f) = (sum_b (N_b - 3) / 2) * sum_b dchi2_b / (sum_b chi2_b - sum_b dchi2_b).

Grid: 1e-3 to 20 cycles/day with a step of 1e-3 / K, K = ceil(1e-3 * OFAC * T) so the step never exceeds
1 / (OFAC * T) nor ALeRCE's 1e-3; the ten highest local maxima are refined on a ten-times finer grid plus a
parabola. The coarse grid is evaluated with phasor recurrences (one complex multiply per point and frequency),
which numba vectorises; no trigonometric call inside the frequency loop.

Choice of the period (our addition to ALeRCE's argmax): the refined candidates are ranked by the chi-square of a
per-band N_RANK-harmonic fit, and the winner's frequency is polished on that fit. Real pulsators are not
sinusoids; the one-harmonic statistic often prefers a daily alias, which the harmonic fit rejects (SDSS Stripe 82
RR Lyrae: 71 % -> 92 % within 1 %), and the polish removes the small offset of the one-harmonic peak.

Selection 1 (``lc-features-1.1.0``, ``SELECTION_SCAN``) goes further, after measuring where selection 0 failed on
real light curves: (1) the one-harmonic peak of a non-sinusoidal curve can sit a yearly alias (1/365.25 c/d) or
more than one fringe (1/T) away from the multi-harmonic optimum, so every candidate is *scanned* with the
harmonic chi-square over +-(1/365.25 + 2/T) (at most +-f/4: never reaching a sub-harmonic f/k, where an
nh-harmonic model fits as well) in steps of 1/(3T) and then polished, instead of being compared at
its one-harmonic position; (2) the +-1 and +-2 sidereal-day aliases of the ``N_ALIAS`` strongest peaks are
candidates too (the true peak of a sparse light curve is often not among the one-harmonic maxima);
(3) the harmonic chi-square uses errors with a floor of ``ERROR_FLOOR`` mag added in quadrature (real photometric
errors are underestimated; without it a few points dominate the comparison); (4) the number of harmonics is
reduced for sparse bands (at most (n - 1) / (2 ``POINTS_PER_PARAMETER``) per band, 1..N_RANK), so 20 points
do not choose a period by over-fitting 9 parameters; (5) of the selected f and its multiples k f (k <= the
harmonics fitted) that fit within ``HARMONIC_TOLERANCE`` of it, the highest frequency wins: a model at f / k
holds every harmonic of f, so a sub-harmonic always fits as well, by the noise alone. SDSS Stripe 82 RR Lyrae
(g + r): see docs/features.md for the measured recovery and the remaining alias cases.

Selection 2 (``lc-features-1.2.0``, ``SELECTION_FAMILY``) is selection 1 plus the alias families of the strongest
peaks: nightly sampling at a similar sidereal time confuses f with f + k d and with its mirror k d - f for any k up
to FMAX, and selection 1 looks only at f +- 1, 2 d; the members are screened by one harmonic fit each and the best
``N_FAMILY`` scanned (:func:`_family_candidates`). Each selection has its own compiled functions
(:func:`period_batch`, :func:`period_batch_scan`, :func:`period_batch_family`): adding one never changes another's
floating-point code, so earlier feature versions stay bit for bit what they were.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._nb import NAN, solve_small

FMIN = 1e-3
FMAX = 20.0
OFAC = 3.0
N_PEAKS = 10
N_RANK = 4
N_HARMONICS = 7
MAX_SUBSTEPS = 50  # caps the grid at 1e6 frequencies (a 45-year span at OFAC 3); bad times cannot blow it up
POWER_RATE_FACTORS = np.array([0.25, 1.0 / 3.0, 0.5, 2.0, 3.0, 4.0])
#: Period selection: 0 = rank the one-harmonic peaks by the harmonic chi-square at their position and polish the
#: winner (lc-features-1.0.0); 1 = scan every candidate and its sidereal-day aliases (lc-features-1.1.0).
SELECTION_RANK = 0
SELECTION_SCAN = 1
#: 2 = selection 1 plus the screened alias families of the strongest peaks (lc-features-1.2.0).
SELECTION_FAMILY = 2
#: Selection 1: peaks whose +-1, +-2 sidereal-day aliases are candidates too.
N_ALIAS = 5
SIDEREAL_DAY_FREQ = 1.0027379093  # cycles per day
ALIAS_SHIFTS = np.array([0.0, -2.0, -1.0, 1.0, 2.0]) * SIDEREAL_DAY_FREQ
YEAR_FREQ = 1.0 / 365.25
#: Selection 1: error floor [mag] added in quadrature to the errors of the harmonic chi-square.
ERROR_FLOOR = 0.02
#: Selection 1: fewest points per fitted parameter of a band's harmonic model (caps the harmonics of sparse bands).
POINTS_PER_PARAMETER = 2
#: Selection 1: scan steps per fringe (1/T) and half-width of the scan in fringes beyond the yearly alias.
SCAN_SUB = 3.0
SCAN_FRINGES = 2.0
#: Selection 1: the scan around a candidate f stays within f +- SCAN_MAX_RELATIVE f (sub-harmonics f/k lie at
#: f/2 and below: a long period's scan must not reach them).
SCAN_MAX_RELATIVE = 0.25
#: Selection 1: k f (k = 2..nh) replaces the selected f when its harmonic chi-square is at most this much (relative)
#: above f's: of periods that fit equally well, the shortest (a sub-harmonic fits as well by construction).
HARMONIC_TOLERANCE = 0.05
#: Selection 2: peaks whose whole alias family (k d - f, f + k d for every k, d the solar and the sidereal day)
#: is screened, and how many of the screened members (those selection 1 does not scan anyway) are then scanned.
#: Measured on the 483 Stripe 82 RR Lyrae: 2 members recover one period fewer than 4; 8 members, or 3 peaks,
#: none more; 4 cost ~1.1-1.3x selection 1 per object (a scan is ~50-80 harmonic fits, a screened member one).
FAMILY_PEAKS = 2
N_FAMILY = 4

OBJECT_NAMES: tuple[str, ...] = (
    "Multiband_period",
    "PPE",
    "Power_rate_1/4",
    "Power_rate_1/3",
    "Power_rate_1/2",
    "Power_rate_2",
    "Power_rate_3",
    "Power_rate_4",
)
BAND_NAMES: tuple[str, ...] = (
    ("Period_band", "delta_period")
    + tuple(f"Harmonics_mag_{k}" for k in range(1, N_HARMONICS + 1))
    + tuple(f"Harmonics_phase_{k}" for k in range(2, N_HARMONICS + 1))
    + ("Harmonics_mse", "Psi_CS", "Psi_eta")
)
N_OBJ = len(OBJECT_NAMES)
N_BAND = len(BAND_NAMES)


@njit(cache=True, fastmath=True, inline="always")
def _accumulate(
    zr: np.ndarray, zi: np.ndarray, dr: np.ndarray, di: np.ndarray, w: np.ndarray, wy: np.ndarray
) -> tuple[float, float, float, float, float, float]:
    """Weighted sums of cos, sin, y cos, y sin, cos 2x, sin 2x / 2 over one band; advances the phasors."""
    c1 = 0.0
    s1 = 0.0
    yc = 0.0
    ys = 0.0
    c2 = 0.0
    s2 = 0.0
    for j in range(zr.size):
        c = zr[j]
        s = zi[j]
        c1 += w[j] * c
        s1 += w[j] * s
        yc += wy[j] * c
        ys += wy[j] * s
        c2 += w[j] * (c * c - s * s)
        s2 += w[j] * (c * s)
        zr[j] = c * dr[j] - s * di[j]
        zi[j] = c * di[j] + s * dr[j]
    return c1, s1, yc, ys, c2, s2


@njit(cache=True, fastmath=True)
def _eval_grid(
    tt: np.ndarray,
    y: np.ndarray,
    ww: np.ndarray,
    boff: np.ndarray,
    yy: np.ndarray,
    f_start: float,
    step: float,
    count: int,
    out_b: np.ndarray,
) -> None:
    """Explained chi-square fractions p_b(f) into ``out_b[b, k]`` for frequencies f_start + k * step.

    ``y`` is centred per band on its weighted mean, ``ww`` holds weights normalised within each band and ``yy``
    the weighted variance of each band. Bands are the outer loop so the point loop runs over contiguous slices
    and vectorises.
    """
    n = tt.size
    nb = boff.size - 1
    zr = np.empty(n)
    zi = np.empty(n)
    dr = np.empty(n)
    di = np.empty(n)
    wy = np.empty(n)
    for j in range(n):
        ph = 2.0 * math.pi * f_start * tt[j]
        zr[j] = math.cos(ph)
        zi[j] = math.sin(ph)
        ph = 2.0 * math.pi * step * tt[j]
        dr[j] = math.cos(ph)
        di[j] = math.sin(ph)
        wy[j] = ww[j] * y[j]
    for b in range(nb):
        lo = boff[b]
        hi = boff[b + 1]
        zrb = zr[lo:hi]
        zib = zi[lo:hi]
        drb = dr[lo:hi]
        dib = di[lo:hi]
        wb = ww[lo:hi]
        wyb = wy[lo:hi]
        yyb = yy[b]
        for k in range(count):
            c1, s1, yc, ys, c2, s2 = _accumulate(zrb, zib, drb, dib, wb, wyb)
            cc = 0.5 * (1.0 + c2) - c1 * c1
            ss = 0.5 * (1.0 - c2) - s1 * s1
            cs = s2 - c1 * s1
            # y is centred on the weighted mean, so the mean terms of YC and YS vanish.
            det = cc * ss - cs * cs
            p = 0.0
            # No tiny additive guard here: under fastmath LLVM distributes 1e-12 * (x + 1e-300) into
            # 1e-12 * x + 1e-312, a subnormal operand that costs a microcode assist on every frequency (the
            # grid ran 3.5x slower). None is needed: cc * ss = 0 gives det = -cs * cs <= 0, rejected either way.
            if det > 1e-12 * (cc * ss):
                p = (ss * yc * yc + cc * ys * ys - 2.0 * cs * yc * ys) / (det * yyb)
                p = min(max(p, 0.0), 1.0)
            out_b[b, k] = p


@njit(cache=True)
def _combine(out_b: np.ndarray, chi0: np.ndarray, d2: np.ndarray, count: int, f_multi: np.ndarray) -> None:
    """AOV F statistics: multiband into ``f_multi[k]`` and per band in place of ``out_b``."""
    nb = chi0.size
    chi_tot = 0.0
    d2_tot = 0.0
    for b in range(nb):
        chi_tot += chi0[b]
        d2_tot += d2[b]
    for k in range(count):
        f_multi[k] = 0.0
    for b in range(nb):
        row = out_b[b]
        cb = chi0[b]
        hb = d2[b] / 2.0
        for k in range(count):
            p = row[k]
            f_multi[k] += cb * p
            row[k] = hb * p / max(1.0 - p, 1e-12)
    floor = 1e-12 * chi_tot
    for k in range(count):
        expl = f_multi[k]
        f_multi[k] = (d2_tot / 2.0) * expl / max(chi_tot - expl, floor)


@njit(cache=True)
def _refine(
    tt: np.ndarray,
    y: np.ndarray,
    ww: np.ndarray,
    boff: np.ndarray,
    yy: np.ndarray,
    chi0: np.ndarray,
    d2: np.ndarray,
    f_center: float,
    df: float,
    band: int,
) -> tuple[float, float]:
    """Maximise F (multiband when band < 0, else that band's F) within f_center +- df; returns (f, F)."""
    nfine = 21
    step = 2.0 * df / (nfine - 1)
    f_lo = max(f_center - df, 1e-6)
    nb = boff.size - 1
    pb = np.empty((nb, nfine))
    fm = np.empty(nfine)
    _eval_grid(tt, y, ww, boff, yy, f_lo, step, nfine, pb)
    _combine(pb, chi0, d2, nfine, fm)
    vals = fm if band < 0 else pb[band]
    kb = 0
    for k in range(nfine):
        if vals[k] > vals[kb]:
            kb = k
    best_f = f_lo + kb * step
    best_v = vals[kb]
    if 0 < kb < nfine - 1:
        a = vals[kb - 1]
        c = vals[kb + 1]
        den = a - 2.0 * best_v + c
        if den < 0.0:
            off = 0.5 * (a - c) / den
            f_par = best_f + off * step
            pb1 = np.empty((nb, 1))
            fm1 = np.empty(1)
            _eval_grid(tt, y, ww, boff, yy, f_par, step, 1, pb1)
            _combine(pb1, chi0, d2, 1, fm1)
            v = fm1[0] if band < 0 else pb1[band, 0]
            if v > best_v:
                best_v = v
                best_f = f_par
    return best_f, best_v


@njit(cache=True)
def _harmonic_chi2(
    tt: np.ndarray, y: np.ndarray, ww: np.ndarray, boff: np.ndarray, freq: float, nh: int
) -> float:
    """Residual weighted chi-square (weights normalised per band) of per-band offset + ``nh`` harmonics at ``freq``.

    Used to choose among the periodogram's candidate peaks: a multi-harmonic model tells a non-sinusoidal
    variable's true period from its daily aliases far better than the one-harmonic statistic that found them.
    """
    nb = boff.size - 1
    npar = 1 + 2 * nh
    total = 0.0
    basis = np.empty(npar)
    for b in range(nb):
        ata = np.zeros((npar, npar))
        aty = np.zeros(npar)
        yy = 0.0
        for j in range(boff[b], boff[b + 1]):
            basis[0] = 1.0
            ph = 2.0 * math.pi * freq * tt[j]
            c1 = math.cos(ph)
            s1 = math.sin(ph)
            ck = c1
            sk = s1
            for h in range(nh):
                basis[1 + 2 * h] = ck
                basis[2 + 2 * h] = sk
                ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
            w = ww[j]
            for p in range(npar):
                aty[p] += w * basis[p] * y[j]
                for q in range(p, npar):
                    ata[p, q] += w * basis[p] * basis[q]
            yy += w * y[j] * y[j]
        for p in range(npar):
            ata[p, p] += 1e-10
            for q in range(p):
                ata[p, q] = ata[q, p]
        sol = aty.copy()
        if not solve_small(ata.copy(), sol):
            return np.inf
        expl = 0.0
        for p in range(npar):
            expl += sol[p] * aty[p]
        total += (yy - expl) / max(yy, 1e-300) * (boff[b + 1] - boff[b])
    return total


@njit(cache=True)
def _refine_harmonic(
    tt: np.ndarray, y: np.ndarray, ww: np.ndarray, boff: np.ndarray, f_center: float, half: float, nh: int
) -> float:
    """Frequency minimising the ``nh``-harmonic chi-square within f_center +- half (golden-section search).

    The one-harmonic peak of a non-sinusoidal curve sits slightly off its true frequency (the harmonics leak into
    the fundamental through uneven sampling); over long baselines that offset smears the folded curve.
    """
    gr = 0.5 * (math.sqrt(5.0) - 1.0)
    a = f_center - half
    b = f_center + half
    c = b - gr * (b - a)
    d = a + gr * (b - a)
    fc = _harmonic_chi2(tt, y, ww, boff, c, nh)
    fd = _harmonic_chi2(tt, y, ww, boff, d, nh)
    tol = 1e-4 * half
    while b - a > tol:
        if fc < fd:
            b = d
            d = c
            fd = fc
            c = b - gr * (b - a)
            fc = _harmonic_chi2(tt, y, ww, boff, c, nh)
        else:
            a = c
            c = d
            fc = fd
            d = a + gr * (b - a)
            fd = _harmonic_chi2(tt, y, ww, boff, d, nh)
    f_new = 0.5 * (a + b)
    if _harmonic_chi2(tt, y, ww, boff, f_new, nh) <= _harmonic_chi2(tt, y, ww, boff, f_center, nh):
        return f_new
    return f_center


@njit(cache=True)
def _scan_harmonic(
    tt: np.ndarray,
    y: np.ndarray,
    ww: np.ndarray,
    boff: np.ndarray,
    f_center: float,
    half: float,
    step: float,
    nh: int,
) -> tuple[float, float]:
    """(f, chi2): the lowest ``nh``-harmonic chi-square on a grid of ``step`` over f_center +- half, polished by
    golden-section search within one step. The chi-square of a multi-harmonic model oscillates with a period of
    1/(h T) in frequency; a grid finer than the fringe finds the basin a golden search alone can miss."""
    n = int(2.0 * half / step) + 1
    best_f = f_center
    best_c = np.inf
    for k in range(n):
        f = f_center - half + k * step
        if f <= 1e-4:
            continue
        c = _harmonic_chi2(tt, y, ww, boff, f, nh)
        if c < best_c:
            best_c = c
            best_f = f
    f1 = _refine_harmonic(tt, y, ww, boff, best_f, step, nh)
    c1 = _harmonic_chi2(tt, y, ww, boff, f1, nh)
    if c1 < best_c:
        return f1, c1
    return best_f, best_c


@njit(cache=True)
def _scan_candidates(
    t: np.ndarray,
    m: np.ndarray,
    e: np.ndarray,
    seg_off: np.ndarray,
    obj: int,
    band_ids: np.ndarray,
    nb: int,
    tmin: float,
    span: float,
    ref_f: np.ndarray,
    n_rank: int,
    fmin: float,
    fmax: float,
) -> float:
    """Selection 1: the frequency with the lowest harmonic chi-square over the refined one-harmonic peaks
    ``ref_f`` (strongest first) and the +-1, +-2 sidereal-day aliases of the first N_ALIAS, each scanned over
    +-(1/365.25 + SCAN_FRINGES/T); errors with ERROR_FLOOR in quadrature; harmonics capped for sparse bands."""
    ntot = 0
    nmin = 1 << 30
    for k in range(nb):
        s = 2 * obj + band_ids[k]
        cnt = seg_off[s + 1] - seg_off[s]
        ntot += cnt
        nmin = min(nmin, cnt)
    tt = np.empty(ntot)
    y = np.empty(ntot)
    ww = np.empty(ntot)
    boff = np.zeros(nb + 1, dtype=np.int64)
    pos = 0
    f2 = ERROR_FLOOR * ERROR_FLOOR
    for k in range(nb):
        s = 2 * obj + band_ids[k]
        a = seg_off[s]
        b = seg_off[s + 1]
        boff[k] = pos
        sw = 0.0
        swm = 0.0
        for i in range(a, b):
            w = 1.0 / (e[i] * e[i] + f2)
            sw += w
            swm += w * m[i]
        mu = swm / sw
        for i in range(a, b):
            tt[pos] = t[i] - tmin
            y[pos] = m[i] - mu
            ww[pos] = 1.0 / (e[i] * e[i] + f2) / sw
            pos += 1
    boff[nb] = pos
    nh = max(1, min(n_rank, (nmin - 1) // (2 * POINTS_PER_PARAMETER)))
    span = max(span, 1.0)
    half = YEAR_FREQ + SCAN_FRINGES / span
    step = 1.0 / (SCAN_SUB * span)
    best_f = NAN
    best_c = np.inf
    for j in range(ref_f.size):
        f0 = ref_f[j]
        if f0 != f0:
            continue
        for q in range(5):
            if q > 0 and j >= N_ALIAS:
                break
            fc = f0 + ALIAS_SHIFTS[q]
            if fc <= fmin or fc >= fmax:
                continue
            # never so wide that it reaches a sub-harmonic fc / k: an nh-harmonic model at fc / k (k <= nh)
            # holds fc itself, so its chi-square is never worse and the scan would slide there
            h = min(half, SCAN_MAX_RELATIVE * fc)
            f1, c1 = _scan_harmonic(tt, y, ww, boff, fc, h, min(step, h / 4.0), nh)
            if c1 < best_c:
                best_c = c1
                best_f = f1
    # The shortest period that fits as well: an nh-harmonic model at f / k (k <= nh) holds every harmonic of f,
    # so a sub-harmonic of the true frequency fits at least as well, by the noise alone. k f replaces f when
    # its chi-square is within HARMONIC_TOLERANCE of f's (a binary with unequal eclipses keeps its period:
    # half of it fits much worse).
    if best_f == best_f:
        f_sel = best_f
        for k in range(2, nh + 1):
            fk = k * best_f
            if fk >= fmax:
                break
            hk = min(step, SCAN_MAX_RELATIVE * fk)
            f1, c1 = _scan_harmonic(tt, y, ww, boff, fk, hk, hk / 2.0, nh)
            if c1 <= best_c * (1.0 + HARMONIC_TOLERANCE):
                f_sel = f1
        best_f = f_sel
    return best_f


@njit(cache=True)
def _family_candidates(
    tt: np.ndarray,
    y: np.ndarray,
    ww: np.ndarray,
    boff: np.ndarray,
    ref_f: np.ndarray,
    nh: int,
    half: float,
    fm: np.ndarray,
    fmin: float,
    df: float,
    fmax: float,
) -> np.ndarray:
    """Selection 2: the ``N_FAMILY`` members of the alias families of the ``FAMILY_PEAKS`` strongest peaks f0
    that fit best (NaN where fewer), to be scanned like the other candidates.

    A light curve sampled about once a night at a similar sidereal time hardly tells f from f + k d, nor from
    k d - f (the spectral window has peaks at every multiple k of the day d, and a real signal's spectrum is
    symmetric about zero frequency), so the true frequency can hide at k d - f0 or f0 + k d for any k up to fmax.
    Selection 1 scans f0 +- 1, 2 d only, and never a mirror k d - f0 (f0 - k d < 0 is skipped): SDSS Stripe 82
    RR Lyrae 1438472 (0.583 d = 1.714 c/d) has its strongest one-harmonic peaks at 12.86 and 1.286 = 3 - 1.714 c/d.
    Every member (k = 1 .. (fmax + f0) / d, d the sidereal and the solar day: yearly gaps put the window's peaks
    at both) that selection 1 does not scan anyway is screened cheaply, by the ``nh``-harmonic chi-square at the
    grid's one-harmonic maximum within +-``half`` of it; only the best ``N_FAMILY`` get the full scan, which keeps
    the cost near selection 1's."""
    best_c = np.full(N_FAMILY, np.inf)
    best_f = np.full(N_FAMILY, NAN)
    nf = fm.size
    for j in range(min(FAMILY_PEAKS, ref_f.size)):
        f0 = ref_f[j]
        if f0 != f0:
            continue
        kmax = int((fmax + f0) / SIDEREAL_DAY_FREQ) + 1
        for k in range(1, kmax + 1):
            for q in range(4):
                if q == 0:
                    fc = k * SIDEREAL_DAY_FREQ - f0
                elif q == 1:
                    fc = k * 1.0 - f0
                elif q == 2:
                    fc = f0 + k * SIDEREAL_DAY_FREQ
                else:
                    fc = f0 + k * 1.0
                if fc - half <= fmin or fc + half >= fmax:
                    continue
                # members selection 1 scans anyway (a peak, or a +-1, +-2 d alias of one of the first N_ALIAS)
                # would spend a scan twice
                seen = False
                for i in range(ref_f.size):
                    for a in range(5):
                        if (a == 0 or i < N_ALIAS) and abs(fc - (ref_f[i] + ALIAS_SHIFTS[a])) < half:
                            seen = True
                if seen:
                    continue
                lo = max(int((fc - half - fmin) / df), 0)
                hi = min(int((fc + half - fmin) / df) + 1, nf - 1)
                ib = lo
                for i in range(lo, hi + 1):
                    if fm[i] > fm[ib]:
                        ib = i
                fi = fmin + ib * df
                c = _harmonic_chi2(tt, y, ww, boff, fi, nh)
                if c < best_c[N_FAMILY - 1]:
                    i = N_FAMILY - 1
                    while i > 0 and best_c[i - 1] > c:
                        best_c[i] = best_c[i - 1]
                        best_f[i] = best_f[i - 1]
                        i -= 1
                    best_c[i] = c
                    best_f[i] = fi
    return best_f


@njit(cache=True)
def _scan_candidates_family(
    t: np.ndarray,
    m: np.ndarray,
    e: np.ndarray,
    seg_off: np.ndarray,
    obj: int,
    band_ids: np.ndarray,
    nb: int,
    tmin: float,
    span: float,
    ref_f: np.ndarray,
    n_rank: int,
    fmin: float,
    fmax: float,
    fm: np.ndarray,
    df: float,
) -> float:
    """Selection 2: selection 1's candidates (:func:`_scan_candidates`) plus the best ``N_FAMILY`` members of the
    alias families of the ``FAMILY_PEAKS`` strongest peaks (``fm``: the multiband one-harmonic statistic on the
    grid fmin + i df; :func:`_family_candidates`), each scanned alike. The lowest harmonic chi-square wins, then
    the shortest period that fits as well (as in selection 1)."""
    ntot = 0
    nmin = 1 << 30
    for k in range(nb):
        s = 2 * obj + band_ids[k]
        cnt = seg_off[s + 1] - seg_off[s]
        ntot += cnt
        nmin = min(nmin, cnt)
    tt = np.empty(ntot)
    y = np.empty(ntot)
    ww = np.empty(ntot)
    boff = np.zeros(nb + 1, dtype=np.int64)
    pos = 0
    f2 = ERROR_FLOOR * ERROR_FLOOR
    for k in range(nb):
        s = 2 * obj + band_ids[k]
        a = seg_off[s]
        b = seg_off[s + 1]
        boff[k] = pos
        sw = 0.0
        swm = 0.0
        for i in range(a, b):
            w = 1.0 / (e[i] * e[i] + f2)
            sw += w
            swm += w * m[i]
        mu = swm / sw
        for i in range(a, b):
            tt[pos] = t[i] - tmin
            y[pos] = m[i] - mu
            ww[pos] = 1.0 / (e[i] * e[i] + f2) / sw
            pos += 1
    boff[nb] = pos
    nh = max(1, min(n_rank, (nmin - 1) // (2 * POINTS_PER_PARAMETER)))
    span = max(span, 1.0)
    half = YEAR_FREQ + SCAN_FRINGES / span
    step = 1.0 / (SCAN_SUB * span)
    best_f = NAN
    best_c = np.inf
    fam = _family_candidates(tt, y, ww, boff, ref_f, nh, half, fm, fmin, df, fmax)
    for j in range(fam.size):
        fc = fam[j]
        if fc != fc:
            continue
        h = min(half, SCAN_MAX_RELATIVE * fc)
        f1, c1 = _scan_harmonic(tt, y, ww, boff, fc, h, min(step, h / 4.0), nh)
        if c1 < best_c:
            best_c = c1
            best_f = f1
    for j in range(ref_f.size):
        f0 = ref_f[j]
        if f0 != f0:
            continue
        for q in range(5):
            if q > 0 and j >= N_ALIAS:
                break
            fc = f0 + ALIAS_SHIFTS[q]
            if fc <= fmin or fc >= fmax:
                continue
            # never so wide that it reaches a sub-harmonic fc / k: an nh-harmonic model at fc / k (k <= nh)
            # holds fc itself, so its chi-square is never worse and the scan would slide there
            h = min(half, SCAN_MAX_RELATIVE * fc)
            f1, c1 = _scan_harmonic(tt, y, ww, boff, fc, h, min(step, h / 4.0), nh)
            if c1 < best_c:
                best_c = c1
                best_f = f1
    # The shortest period that fits as well: an nh-harmonic model at f / k (k <= nh) holds every harmonic of f,
    # so a sub-harmonic of the true frequency fits at least as well, by the noise alone. k f replaces f when
    # its chi-square is within HARMONIC_TOLERANCE of f's (a binary with unequal eclipses keeps its period:
    # half of it fits much worse).
    if best_f == best_f:
        f_sel = best_f
        for k in range(2, nh + 1):
            fk = k * best_f
            if fk >= fmax:
                break
            hk = min(step, SCAN_MAX_RELATIVE * fk)
            f1, c1 = _scan_harmonic(tt, y, ww, boff, fk, hk, hk / 2.0, nh)
            if c1 <= best_c * (1.0 + HARMONIC_TOLERANCE):
                f_sel = f1
        best_f = f_sel
    return best_f


@njit(cache=True)
def _harmonics(t: np.ndarray, m: np.ndarray, e: np.ndarray, freq: float, out: np.ndarray) -> None:
    """Weighted 7-harmonic fit at ``freq`` (min-norm least squares, as ALeRCE's pinv); amplitudes, phases, mse."""
    n = t.size
    nh = N_HARMONICS
    ncol = 1 + 2 * nh
    a = np.empty((n, ncol))
    rhs = np.empty((n, 1))
    for i in range(n):
        inv = 1.0 / (e[i] + 0.01)
        a[i, 0] = inv
        for h in range(nh):
            ph = 2.0 * math.pi * freq * (h + 1) * (t[i] - t[0])
            a[i, 1 + h] = math.cos(ph) * inv
            a[i, 1 + nh + h] = math.sin(ph) * inv
        rhs[i, 0] = m[i] * inv
    coef = np.linalg.pinv(a) @ rhs
    mse = 0.0
    for i in range(n):
        inv = 1.0 / (e[i] + 0.01)
        fit = 0.0
        for c in range(ncol):
            fit += a[i, c] * coef[c, 0]
        r = fit / inv - m[i]
        mse += r * r
    phi1 = math.atan2(coef[1 + nh, 0], coef[1, 0])
    for h in range(nh):
        cc = coef[1 + h, 0]
        sc = coef[1 + nh + h, 0]
        out[2 + h] = math.sqrt(cc * cc + sc * sc)
        if h > 0:
            ph = math.atan2(sc, cc) - phi1 * (h + 1)
            ph = ph % (2.0 * math.pi)
            out[2 + nh + h - 1] = ph
    out[2 + nh + nh - 1] = mse / n


@njit(cache=True)
def _folded(t: np.ndarray, m: np.ndarray, period: float, out: np.ndarray) -> None:
    """Psi_CS and Psi_eta: Rcs and von Neumann eta of magnitudes ordered by phase at twice the period."""
    n = t.size
    ph = np.empty(n)
    for i in range(n):
        ph[i] = (t[i] % (2.0 * period)) / (2.0 * period)
    order = np.argsort(ph, kind="mergesort")
    mean = m.mean()
    var = 0.0
    for i in range(n):
        var += (m[i] - mean) ** 2
    var /= n
    if not (var > 0.0):
        return
    sd = math.sqrt(var)
    cs = 0.0
    cmin = np.inf
    cmax = -np.inf
    eta = 0.0
    for k in range(n):
        v = m[order[k]]
        cs += (v - mean) / (n * sd)
        cmin = min(cmin, cs)
        cmax = max(cmax, cs)
        if k > 0:
            eta += (v - m[order[k - 1]]) ** 2
    out[N_BAND - 2] = cmax - cmin
    out[N_BAND - 1] = eta / ((n - 1) * var)


@njit(cache=True)
def object_periodogram(
    t: np.ndarray,
    m: np.ndarray,
    e: np.ndarray,
    seg_off: np.ndarray,
    obj: int,
    min_points: int,
    ofac: float,
    fmin: float,
    fmax: float,
    n_peaks: int,
    n_rank: int,
    factors: np.ndarray,
    out_obj: np.ndarray,
    out_seg: np.ndarray,
) -> None:
    """All period features of one object (its two band segments are seg 2*obj and 2*obj+1)."""
    # Gather the bands with enough points.
    nb = 0
    ntot = 0
    band_ids = np.empty(2, dtype=np.int64)
    for b in range(2):
        s = 2 * obj + b
        if seg_off[s + 1] - seg_off[s] >= min_points:
            band_ids[nb] = b
            nb += 1
            ntot += seg_off[s + 1] - seg_off[s]
    if nb == 0:
        return
    tt = np.empty(ntot)
    y = np.empty(ntot)
    ww = np.empty(ntot)
    boff = np.zeros(nb + 1, dtype=np.int64)
    yy = np.empty(nb)
    chi0 = np.empty(nb)
    d2 = np.empty(nb)
    tmin = np.inf
    tmax = -np.inf
    for k in range(nb):
        s = 2 * obj + band_ids[k]
        a = seg_off[s]
        tmin = min(tmin, t[a])
        tmax = max(tmax, t[seg_off[s + 1] - 1])
    pos = 0
    for k in range(nb):
        s = 2 * obj + band_ids[k]
        a = seg_off[s]
        b = seg_off[s + 1]
        boff[k] = pos
        sw = 0.0
        swm = 0.0
        for i in range(a, b):
            w = 1.0 / (e[i] * e[i])
            sw += w
            swm += w * m[i]
        mu = swm / sw
        v = 0.0
        for i in range(a, b):
            tt[pos] = t[i] - tmin
            y[pos] = m[i] - mu
            ww[pos] = 1.0 / (e[i] * e[i]) / sw
            v += ww[pos] * y[pos] * y[pos]
            pos += 1
        yy[k] = v
        chi0[k] = v * sw
        d2[k] = (b - a) - 3.0
    boff[nb] = pos
    if not (chi0.sum() > 0.0):
        return
    span = tmax - tmin
    kk = min(max(1, int(math.ceil(1e-3 * ofac * span))), MAX_SUBSTEPS)
    df = 1e-3 / kk
    nf = int((fmax - fmin) / df) + 1
    pb = np.empty((nb, nf))
    fm = np.empty(nf)
    _eval_grid(tt, y, ww, boff, yy, fmin, df, nf, pb)
    _combine(pb, chi0, d2, nf, fm)

    # Top local maxima of the multiband statistic, refined.
    top_v = np.full(n_peaks, -np.inf)
    top_i = np.full(n_peaks, -1, dtype=np.int64)
    for k in range(1, nf - 1):
        v = fm[k]
        if v > fm[k - 1] and v >= fm[k + 1] and v > top_v[n_peaks - 1]:
            j = n_peaks - 1
            while j > 0 and top_v[j - 1] < v:
                top_v[j] = top_v[j - 1]
                top_i[j] = top_i[j - 1]
                j -= 1
            top_v[j] = v
            top_i[j] = k
    best_f = NAN
    best_v = -np.inf
    best_c = np.inf
    ref_f = np.full(n_peaks, NAN)
    ref_v = np.full(n_peaks, NAN)
    for j in range(n_peaks):
        if top_i[j] < 0:
            continue
        f0 = fmin + top_i[j] * df
        rf, rv = _refine(tt, y, ww, boff, yy, chi0, d2, f0, df, -1)
        if rv < top_v[j]:
            rf = f0
            rv = top_v[j]
        ref_f[j] = rf
        ref_v[j] = rv
        if n_rank > 0:
            c = _harmonic_chi2(tt, y, ww, boff, rf, n_rank)
            if c < best_c:
                best_c = c
                best_v = rv
                best_f = rf
        elif rv > best_v:
            best_v = rv
            best_f = rf
    if best_f != best_f:
        kb = np.argmax(fm)
        best_f = fmin + kb * df
        best_v = fm[kb]
    elif n_rank > 0:
        best_f = _refine_harmonic(tt, y, ww, boff, best_f, df / 3.0, n_rank)
    period = 1.0 / best_f
    out_obj[0] = period

    # PPE on ALeRCE's 1e-3 grid (every kk-th frequency), with refined peaks written back like P4J's finetuning.
    sub = fm[::kk].copy()
    for j in range(n_peaks):
        if ref_f[j] == ref_f[j]:
            idx = int(round((ref_f[j] - fmin) / 1e-3))
            if 0 <= idx < sub.size and ref_v[j] > sub[idx]:
                sub[idx] = ref_v[j]
    ntop = min(100, sub.size)
    top = np.partition(sub, sub.size - ntop)[sub.size - ntop :]
    tot = 0.0
    for i in range(ntop):
        tot += top[i] + 1e-2
    ent = 0.0
    for i in range(ntop):
        p = (top[i] + 1e-2) / tot
        if p > 0.0:
            ent -= p * math.log(p)
    out_obj[1] = 1.0 - ent / math.log(100.0)

    # Power rates: statistic at f_best / factor (nearest grid frequency) over the best value.
    for q in range(factors.size):
        fq = best_f / factors[q]
        idx = int(round((fq - fmin) / df))
        idx = min(max(idx, 0), nf - 1)
        out_obj[2 + q] = fm[idx] / best_v

    # Per band: own best period, harmonic fit and folded statistics at the multiband period.
    for k in range(nb):
        b = band_ids[k]
        s = 2 * obj + b
        row = out_seg[s]
        kb = np.argmax(pb[k])
        fb0 = fmin + kb * df
        fb, vb = _refine(tt, y, ww, boff, yy, chi0, d2, fb0, df, k)
        if vb < pb[k, kb]:
            fb = fb0
        row[0] = 1.0 / fb
        row[1] = abs(period - 1.0 / fb)
        a = seg_off[s]
        bb = seg_off[s + 1]
        _harmonics(t[a:bb], m[a:bb], e[a:bb], best_f, row)
        _folded(t[a:bb], m[a:bb], period, row)


@njit(cache=True)
def _object_periodogram_selection(
    t: np.ndarray,
    m: np.ndarray,
    e: np.ndarray,
    seg_off: np.ndarray,
    obj: int,
    min_points: int,
    ofac: float,
    fmin: float,
    fmax: float,
    n_peaks: int,
    n_rank: int,
    factors: np.ndarray,
    out_obj: np.ndarray,
    out_seg: np.ndarray,
    selection: int = SELECTION_RANK,
) -> None:
    """:func:`object_periodogram` with the period chosen by ``selection`` (module docstring). Selection 0 is
    computed by the untouched :func:`object_periodogram` (so lc-features-1.0.0 stays bit for bit what it was: a
    compiled function's floating-point code depends on its whole body); this one serves selection 1."""
    # Gather the bands with enough points.
    nb = 0
    ntot = 0
    band_ids = np.empty(2, dtype=np.int64)
    for b in range(2):
        s = 2 * obj + b
        if seg_off[s + 1] - seg_off[s] >= min_points:
            band_ids[nb] = b
            nb += 1
            ntot += seg_off[s + 1] - seg_off[s]
    if nb == 0:
        return
    tt = np.empty(ntot)
    y = np.empty(ntot)
    ww = np.empty(ntot)
    boff = np.zeros(nb + 1, dtype=np.int64)
    yy = np.empty(nb)
    chi0 = np.empty(nb)
    d2 = np.empty(nb)
    tmin = np.inf
    tmax = -np.inf
    for k in range(nb):
        s = 2 * obj + band_ids[k]
        a = seg_off[s]
        tmin = min(tmin, t[a])
        tmax = max(tmax, t[seg_off[s + 1] - 1])
    pos = 0
    for k in range(nb):
        s = 2 * obj + band_ids[k]
        a = seg_off[s]
        b = seg_off[s + 1]
        boff[k] = pos
        sw = 0.0
        swm = 0.0
        for i in range(a, b):
            w = 1.0 / (e[i] * e[i])
            sw += w
            swm += w * m[i]
        mu = swm / sw
        v = 0.0
        for i in range(a, b):
            tt[pos] = t[i] - tmin
            y[pos] = m[i] - mu
            ww[pos] = 1.0 / (e[i] * e[i]) / sw
            v += ww[pos] * y[pos] * y[pos]
            pos += 1
        yy[k] = v
        chi0[k] = v * sw
        d2[k] = (b - a) - 3.0
    boff[nb] = pos
    if not (chi0.sum() > 0.0):
        return
    span = tmax - tmin
    kk = min(max(1, int(math.ceil(1e-3 * ofac * span))), MAX_SUBSTEPS)
    df = 1e-3 / kk
    nf = int((fmax - fmin) / df) + 1
    pb = np.empty((nb, nf))
    fm = np.empty(nf)
    _eval_grid(tt, y, ww, boff, yy, fmin, df, nf, pb)
    _combine(pb, chi0, d2, nf, fm)

    # Top local maxima of the multiband statistic, refined.
    top_v = np.full(n_peaks, -np.inf)
    top_i = np.full(n_peaks, -1, dtype=np.int64)
    for k in range(1, nf - 1):
        v = fm[k]
        if v > fm[k - 1] and v >= fm[k + 1] and v > top_v[n_peaks - 1]:
            j = n_peaks - 1
            while j > 0 and top_v[j - 1] < v:
                top_v[j] = top_v[j - 1]
                top_i[j] = top_i[j - 1]
                j -= 1
            top_v[j] = v
            top_i[j] = k
    best_f = NAN
    best_v = -np.inf
    best_c = np.inf
    ref_f = np.full(n_peaks, NAN)
    ref_v = np.full(n_peaks, NAN)
    for j in range(n_peaks):
        if top_i[j] < 0:
            continue
        f0 = fmin + top_i[j] * df
        rf, rv = _refine(tt, y, ww, boff, yy, chi0, d2, f0, df, -1)
        if rv < top_v[j]:
            rf = f0
            rv = top_v[j]
        ref_f[j] = rf
        ref_v[j] = rv
        if selection == SELECTION_SCAN:
            continue
        if n_rank > 0:
            c = _harmonic_chi2(tt, y, ww, boff, rf, n_rank)
            if c < best_c:
                best_c = c
                best_v = rv
                best_f = rf
        elif rv > best_v:
            best_v = rv
            best_f = rf
    if selection == SELECTION_SCAN and n_rank > 0:
        best_f = _scan_candidates(t, m, e, seg_off, obj, band_ids, nb, tmin, span, ref_f, n_rank, fmin, fmax)
        if best_f == best_f:
            pb1 = np.empty((nb, 1))
            fm1 = np.empty(1)
            _eval_grid(tt, y, ww, boff, yy, best_f, df, 1, pb1)
            _combine(pb1, chi0, d2, 1, fm1)
            best_v = max(fm1[0], 1e-300)
    if best_f != best_f:
        kb = np.argmax(fm)
        best_f = fmin + kb * df
        best_v = fm[kb]
    elif n_rank > 0 and selection != SELECTION_SCAN:
        best_f = _refine_harmonic(tt, y, ww, boff, best_f, df / 3.0, n_rank)
    period = 1.0 / best_f
    out_obj[0] = period

    # PPE on ALeRCE's 1e-3 grid (every kk-th frequency), with refined peaks written back like P4J's finetuning.
    sub = fm[::kk].copy()
    for j in range(n_peaks):
        if ref_f[j] == ref_f[j]:
            idx = int(round((ref_f[j] - fmin) / 1e-3))
            if 0 <= idx < sub.size and ref_v[j] > sub[idx]:
                sub[idx] = ref_v[j]
    ntop = min(100, sub.size)
    top = np.partition(sub, sub.size - ntop)[sub.size - ntop :]
    tot = 0.0
    for i in range(ntop):
        tot += top[i] + 1e-2
    ent = 0.0
    for i in range(ntop):
        p = (top[i] + 1e-2) / tot
        if p > 0.0:
            ent -= p * math.log(p)
    out_obj[1] = 1.0 - ent / math.log(100.0)

    # Power rates: statistic at f_best / factor (nearest grid frequency) over the best value.
    for q in range(factors.size):
        fq = best_f / factors[q]
        idx = int(round((fq - fmin) / df))
        idx = min(max(idx, 0), nf - 1)
        out_obj[2 + q] = fm[idx] / best_v

    # Per band: own best period, harmonic fit and folded statistics at the multiband period.
    for k in range(nb):
        b = band_ids[k]
        s = 2 * obj + b
        row = out_seg[s]
        kb = np.argmax(pb[k])
        fb0 = fmin + kb * df
        fb, vb = _refine(tt, y, ww, boff, yy, chi0, d2, fb0, df, k)
        if vb < pb[k, kb]:
            fb = fb0
        row[0] = 1.0 / fb
        row[1] = abs(period - 1.0 / fb)
        a = seg_off[s]
        bb = seg_off[s + 1]
        _harmonics(t[a:bb], m[a:bb], e[a:bb], best_f, row)
        _folded(t[a:bb], m[a:bb], period, row)


@njit(cache=True)
def _object_periodogram_family(
    t: np.ndarray,
    m: np.ndarray,
    e: np.ndarray,
    seg_off: np.ndarray,
    obj: int,
    min_points: int,
    ofac: float,
    fmin: float,
    fmax: float,
    n_peaks: int,
    n_rank: int,
    factors: np.ndarray,
    out_obj: np.ndarray,
    out_seg: np.ndarray,
) -> None:
    """:func:`object_periodogram` with period selection 2 (lc-features-1.2.0, :func:`_scan_candidates_family`).
    A copy of :func:`_object_periodogram_selection` rather than a third branch in it: a compiled function's
    floating-point code depends on its whole body, and lc-features-1.1.0 must stay bit for bit what it was."""
    # Gather the bands with enough points.
    nb = 0
    ntot = 0
    band_ids = np.empty(2, dtype=np.int64)
    for b in range(2):
        s = 2 * obj + b
        if seg_off[s + 1] - seg_off[s] >= min_points:
            band_ids[nb] = b
            nb += 1
            ntot += seg_off[s + 1] - seg_off[s]
    if nb == 0:
        return
    tt = np.empty(ntot)
    y = np.empty(ntot)
    ww = np.empty(ntot)
    boff = np.zeros(nb + 1, dtype=np.int64)
    yy = np.empty(nb)
    chi0 = np.empty(nb)
    d2 = np.empty(nb)
    tmin = np.inf
    tmax = -np.inf
    for k in range(nb):
        s = 2 * obj + band_ids[k]
        a = seg_off[s]
        tmin = min(tmin, t[a])
        tmax = max(tmax, t[seg_off[s + 1] - 1])
    pos = 0
    for k in range(nb):
        s = 2 * obj + band_ids[k]
        a = seg_off[s]
        b = seg_off[s + 1]
        boff[k] = pos
        sw = 0.0
        swm = 0.0
        for i in range(a, b):
            w = 1.0 / (e[i] * e[i])
            sw += w
            swm += w * m[i]
        mu = swm / sw
        v = 0.0
        for i in range(a, b):
            tt[pos] = t[i] - tmin
            y[pos] = m[i] - mu
            ww[pos] = 1.0 / (e[i] * e[i]) / sw
            v += ww[pos] * y[pos] * y[pos]
            pos += 1
        yy[k] = v
        chi0[k] = v * sw
        d2[k] = (b - a) - 3.0
    boff[nb] = pos
    if not (chi0.sum() > 0.0):
        return
    span = tmax - tmin
    kk = min(max(1, int(math.ceil(1e-3 * ofac * span))), MAX_SUBSTEPS)
    df = 1e-3 / kk
    nf = int((fmax - fmin) / df) + 1
    pb = np.empty((nb, nf))
    fm = np.empty(nf)
    _eval_grid(tt, y, ww, boff, yy, fmin, df, nf, pb)
    _combine(pb, chi0, d2, nf, fm)

    # Top local maxima of the multiband statistic, refined.
    top_v = np.full(n_peaks, -np.inf)
    top_i = np.full(n_peaks, -1, dtype=np.int64)
    for k in range(1, nf - 1):
        v = fm[k]
        if v > fm[k - 1] and v >= fm[k + 1] and v > top_v[n_peaks - 1]:
            j = n_peaks - 1
            while j > 0 and top_v[j - 1] < v:
                top_v[j] = top_v[j - 1]
                top_i[j] = top_i[j - 1]
                j -= 1
            top_v[j] = v
            top_i[j] = k
    best_f = NAN
    best_v = -np.inf
    ref_f = np.full(n_peaks, NAN)
    ref_v = np.full(n_peaks, NAN)
    for j in range(n_peaks):
        if top_i[j] < 0:
            continue
        f0 = fmin + top_i[j] * df
        rf, rv = _refine(tt, y, ww, boff, yy, chi0, d2, f0, df, -1)
        if rv < top_v[j]:
            rf = f0
            rv = top_v[j]
        ref_f[j] = rf
        ref_v[j] = rv
        if n_rank <= 0 and rv > best_v:
            best_v = rv
            best_f = rf
    if n_rank > 0:
        best_f = _scan_candidates_family(
            t, m, e, seg_off, obj, band_ids, nb, tmin, span, ref_f, n_rank, fmin, fmax, fm, df
        )
        if best_f == best_f:
            pb1 = np.empty((nb, 1))
            fm1 = np.empty(1)
            _eval_grid(tt, y, ww, boff, yy, best_f, df, 1, pb1)
            _combine(pb1, chi0, d2, 1, fm1)
            best_v = max(fm1[0], 1e-300)
    if best_f != best_f:
        kb = np.argmax(fm)
        best_f = fmin + kb * df
        best_v = fm[kb]
    period = 1.0 / best_f
    out_obj[0] = period

    # PPE on ALeRCE's 1e-3 grid (every kk-th frequency), with refined peaks written back like P4J's finetuning.
    sub = fm[::kk].copy()
    for j in range(n_peaks):
        if ref_f[j] == ref_f[j]:
            idx = int(round((ref_f[j] - fmin) / 1e-3))
            if 0 <= idx < sub.size and ref_v[j] > sub[idx]:
                sub[idx] = ref_v[j]
    ntop = min(100, sub.size)
    top = np.partition(sub, sub.size - ntop)[sub.size - ntop :]
    tot = 0.0
    for i in range(ntop):
        tot += top[i] + 1e-2
    ent = 0.0
    for i in range(ntop):
        p = (top[i] + 1e-2) / tot
        if p > 0.0:
            ent -= p * math.log(p)
    out_obj[1] = 1.0 - ent / math.log(100.0)

    # Power rates: statistic at f_best / factor (nearest grid frequency) over the best value.
    for q in range(factors.size):
        fq = best_f / factors[q]
        idx = int(round((fq - fmin) / df))
        idx = min(max(idx, 0), nf - 1)
        out_obj[2 + q] = fm[idx] / best_v

    # Per band: own best period, harmonic fit and folded statistics at the multiband period.
    for k in range(nb):
        b = band_ids[k]
        s = 2 * obj + b
        row = out_seg[s]
        kb = np.argmax(pb[k])
        fb0 = fmin + kb * df
        fb, vb = _refine(tt, y, ww, boff, yy, chi0, d2, fb0, df, k)
        if vb < pb[k, kb]:
            fb = fb0
        row[0] = 1.0 / fb
        row[1] = abs(period - 1.0 / fb)
        a = seg_off[s]
        bb = seg_off[s + 1]
        _harmonics(t[a:bb], m[a:bb], e[a:bb], best_f, row)
        _folded(t[a:bb], m[a:bb], period, row)


@njit(cache=True)
def period_batch(
    t: np.ndarray,
    m: np.ndarray,
    e: np.ndarray,
    seg_off: np.ndarray,
    min_points: int,
    ofac: float,
    fmin: float,
    fmax: float,
    n_peaks: int,
    n_rank: int,
    factors: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Period features for every object of a batch laid out as two band segments per object."""
    nobj = (seg_off.size - 1) // 2
    out_obj = np.full((nobj, N_OBJ), NAN)
    out_seg = np.full((2 * nobj, N_BAND), NAN)
    for o in range(nobj):
        object_periodogram(
            t, m, e, seg_off, o, min_points, ofac, fmin, fmax, n_peaks, n_rank, factors, out_obj[o], out_seg
        )
    return out_obj, out_seg


@njit(cache=True)
def period_batch_scan(
    t: np.ndarray,
    m: np.ndarray,
    e: np.ndarray,
    seg_off: np.ndarray,
    min_points: int,
    ofac: float,
    fmin: float,
    fmax: float,
    n_peaks: int,
    n_rank: int,
    factors: np.ndarray,
    selection: int = SELECTION_SCAN,
) -> tuple[np.ndarray, np.ndarray]:
    """Period features for every object of a batch (two band segments per object), period selection 1
    (lc-features-1.1.0); :func:`period_batch` is selection 0 (lc-features-1.0.0)."""
    nobj = (seg_off.size - 1) // 2
    out_obj = np.full((nobj, N_OBJ), NAN)
    out_seg = np.full((2 * nobj, N_BAND), NAN)
    for o in range(nobj):
        _object_periodogram_selection(
            t,
            m,
            e,
            seg_off,
            o,
            min_points,
            ofac,
            fmin,
            fmax,
            n_peaks,
            n_rank,
            factors,
            out_obj[o],
            out_seg,
            selection,
        )
    return out_obj, out_seg


@njit(cache=True)
def period_batch_family(
    t: np.ndarray,
    m: np.ndarray,
    e: np.ndarray,
    seg_off: np.ndarray,
    min_points: int,
    ofac: float,
    fmin: float,
    fmax: float,
    n_peaks: int,
    n_rank: int,
    factors: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Period features for every object of a batch (two band segments per object), period selection 2
    (lc-features-1.2.0)."""
    nobj = (seg_off.size - 1) // 2
    out_obj = np.full((nobj, N_OBJ), NAN)
    out_seg = np.full((2 * nobj, N_BAND), NAN)
    for o in range(nobj):
        _object_periodogram_family(
            t,
            m,
            e,
            seg_off,
            o,
            min_points,
            ofac,
            fmin,
            fmax,
            n_peaks,
            n_rank,
            factors,
            out_obj[o],
            out_seg,
        )
    return out_obj, out_seg
