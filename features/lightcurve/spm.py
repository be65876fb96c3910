"""ALeRCE's supernova parametric model (SPM, Sanchez-Saez et al. 2021) fitted to one band's difference flux.

    f(t) = A / (1 + exp(-(t - t0) / tau_rise)) * [ (1 - beta) exp(-(t - t1) / tau_fall) sigma(t - t1)
                                                  + (1 - beta (t - t0) / gamma) (1 - sigma(t - t1)) ],
    t1 = t0 + gamma,  sigma(x) = 1 / (1 + exp(-x / 3)).

Times are days since the band's first detection, fluxes in mJy (ALeRCE's ``mag_to_flux``), signed by
``isdiffpos``. The fit is unweighted least squares within ALeRCE's bounds (as their ``curve_fit`` call), solved
by a bounded Levenberg-Marquardt with an analytic Jacobian: short runs from fourteen starting points, the three
best polished to convergence. ``SPM_chi`` is ALeRCE's reduced chi-square with a 0.01 mJy error floor.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._nb import NAN, solve_small

SPM_NAMES: tuple[str, ...] = (
    "SPM_A",
    "SPM_t0",
    "SPM_gamma",
    "SPM_beta",
    "SPM_tau_rise",
    "SPM_tau_fall",
    "SPM_chi",
)
N_SPM = len(SPM_NAMES)
NPAR = 6
MAX_ITER = 100
SCREEN_ITER = 10
N_POLISH = 3


@njit(cache=True)
def spm_model(t: np.ndarray, p: np.ndarray, out: np.ndarray, jac: np.ndarray, want_jac: bool) -> float:
    """Model flux at ``t`` into ``out`` (and its 6 x n Jacobian into ``jac`` when ``want_jac``).

    The growing exponential exp(-(t - t1)/tau_fall) only ever appears multiplied by the sigmoid; where it would
    overflow the product is taken in log space. Exponents are capped so a wild trial step gives a large but finite
    value. Returns nothing useful (0.0); kept as a float so numba sees one signature.
    """
    amp, t0, gam, beta, trise, tfall = p[0], p[1], p[2], p[3], p[4], p[5]
    t1 = t0 + gam
    for i in range(t.size):
        dt0 = t[i] - t0
        dt1 = t[i] - t1
        x = -dt1 / 3.0
        if x > 0.0:
            ex = math.exp(-x)
            sig = ex / (1.0 + ex)
        else:
            sig = 1.0 / (1.0 + math.exp(x))
        arg = -dt1 / tfall
        if arg < 600.0:
            es = math.exp(arg) * sig
        else:
            es = math.exp(min(700.0, arg + math.log(sig))) if sig > 0.0 else 0.0
        u = math.exp(min(700.0, -dt0 / trise))
        h = 1.0 / (1.0 + u)
        lin = 1.0 - beta * dt0 / gam
        g = (1.0 - beta) * es + lin * (1.0 - sig)
        out[i] = amp * g * h
        if want_jac:
            one_m = 1.0 - sig
            dg_dt1 = (1.0 - beta) * (es / tfall - es * one_m / 3.0) + lin * sig * one_m / 3.0
            dg_dt0 = dg_dt1 + one_m * beta / gam
            dg_dgam = dg_dt1 + one_m * beta * dt0 / (gam * gam)
            dg_dbeta = -es - one_m * dt0 / gam
            dg_dtfall = (1.0 - beta) * es * dt1 / (tfall * tfall)
            dh_dt0 = -h * h * u / trise
            dh_dtrise = -h * h * u * dt0 / (trise * trise)
            jac[0, i] = g * h
            jac[1, i] = amp * (dg_dt0 * h + g * dh_dt0)
            jac[2, i] = amp * dg_dgam * h
            jac[3, i] = amp * dg_dbeta * h
            jac[4, i] = amp * g * dh_dtrise
            jac[5, i] = amp * dg_dtfall * h
    return 0.0


@njit(cache=True)
def _sq_residual(y: np.ndarray, pred: np.ndarray) -> float:
    c = 0.0
    for i in range(y.size):
        r = pred[i] - y[i]
        c += r * r
    return c if c == c else np.inf


@njit(cache=True)
def lm_fit(
    t: np.ndarray, y: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_iter: int, ws: np.ndarray
) -> float:
    """Bounded Levenberg-Marquardt on unweighted residuals; updates ``p`` in place, returns the final cost.

    ``ws`` is a (2 * (NPAR + 1), n) workspace. Parameters pinned at a bound with the gradient pushing outwards are
    frozen for the iteration; other steps are clipped into the box. Each trial evaluates the model with its
    Jacobian, so an accepted step already carries the derivatives the next iteration needs.
    """
    pred = ws[0]
    jac = ws[1 : NPAR + 1]
    pred_t = ws[NPAR + 1]
    jac_t = ws[NPAR + 2 :]
    hess = np.empty((NPAR, NPAR))
    mat = np.empty((NPAR, NPAR))
    grad = np.empty(NPAR)
    rhs = np.empty(NPAR)
    trial = np.empty(NPAR)
    active = np.zeros(NPAR, dtype=np.bool_)
    spm_model(t, p, pred, jac, True)
    cost = _sq_residual(y, pred)
    lam = 1e-3
    for _ in range(max_iter):
        for a in range(NPAR):
            ja = jac[a]
            grad[a] = _dot_residual(ja, pred, y)
            for b in range(a, NPAR):
                v = _dot(ja, jac[b])
                hess[a, b] = v
                hess[b, a] = v
        for a in range(NPAR):
            active[a] = (p[a] <= lo[a] and grad[a] > 0.0) or (p[a] >= hi[a] and grad[a] < 0.0)
        improved = False
        while lam < 1e10:
            for a in range(NPAR):
                for b in range(NPAR):
                    mat[a, b] = 0.0 if (active[a] or active[b]) else hess[a, b]
                if active[a]:
                    mat[a, a] = 1.0
                    rhs[a] = 0.0
                else:
                    mat[a, a] += lam * hess[a, a] + 1e-12 * (1.0 + hess[a, a])
                    rhs[a] = -grad[a]
            moved = 0.0
            if solve_small(mat, rhs):
                for a in range(NPAR):
                    v = min(max(p[a] + rhs[a], lo[a]), hi[a])
                    trial[a] = v
                    moved = max(moved, abs(v - p[a]) / (abs(p[a]) + 1e-8))
                spm_model(t, trial, pred_t, jac_t, True)
                new_cost = _sq_residual(y, pred_t)
                if new_cost < cost:
                    rel = (cost - new_cost) / max(cost, 1e-300)
                    p[:] = trial
                    pred, pred_t = pred_t, pred
                    jac, jac_t = jac_t, jac
                    cost = new_cost
                    lam = max(lam / 3.0, 1e-12)
                    improved = True
                    if rel < 1e-10 or moved < 1e-9:
                        return cost
                    break
                if moved < 1e-9:
                    return cost
            lam *= 10.0
        if not improved:
            return cost
    return cost


@njit(cache=True, fastmath=True)
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    s = 0.0
    for i in range(a.size):
        s += a[i] * b[i]
    return s


@njit(cache=True, fastmath=True)
def _dot_residual(a: np.ndarray, pred: np.ndarray, y: np.ndarray) -> float:
    s = 0.0
    for i in range(a.size):
        s += a[i] * (pred[i] - y[i])
    return s


@njit(cache=True)
def _starting_points(tt: np.ndarray, fmax: float, tmax: float) -> np.ndarray:
    """ALeRCE's two starting points plus a small grid over the peak time, plateau length and slope.

    The SPM cost surface has several basins (the plateau can sit before or after the peak); a dozen short
    Levenberg-Marquardt runs from spread-out points find the global one where two starts miss one fit in five.
    """
    out = np.empty((2 + 12, NPAR))
    out[0, :] = [1.2 * fmax, -5.0, tt[tt.size - 1], 0.5, tmax / 2.0, 40.0]
    out[1, :] = [1.2 * fmax, tmax * 2.0 / 3.0, tmax, 0.5, tmax / 2.0, 50.0]
    k = 2
    for t0f in (0.2, 0.8):
        for gam in (5.0, 25.0, 60.0):
            for beta in (0.3, 0.7):
                out[k, :] = [1.2 * fmax, tmax * t0f - 3.0, gam, beta, max(0.3 * tmax, 2.0), 30.0]
                k += 1
    return out


@njit(cache=True)
def band_spm(t: np.ndarray, flux: np.ndarray, err: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` with (A, t0, gamma, beta, tau_rise, tau_fall, chi) for one time-sorted band."""
    n = t.size
    tt = t - t[0]
    imax = 0
    for i in range(n):
        if not (np.isfinite(flux[i]) and np.isfinite(err[i])):
            return
        if flux[i] > flux[imax]:
            imax = i
    fmax = flux[imax]
    if not (fmax > 0.0):
        return
    tmax = tt[imax]
    lo = np.array([fmax / 3.0, -50.0, 1.0, 0.0, 1.0, 1.0])
    hi = np.array([fmax * 3.0, 50.0, 100.0, 1.0, 100.0, 100.0])
    starts = _starting_points(tt, fmax, tmax)
    ns = starts.shape[0]
    costs = np.empty(ns)
    ws = np.empty((2 * (NPAR + 1), n))
    for k in range(ns):
        for a in range(NPAR):
            starts[k, a] = min(max(starts[k, a], lo[a]), hi[a])
        costs[k] = lm_fit(tt, flux, starts[k], lo, hi, SCREEN_ITER, ws)
    order = np.argsort(costs)
    best = np.inf
    bestp = np.empty(NPAR)
    for r in range(min(N_POLISH, ns)):
        p = starts[order[r]]
        c = lm_fit(tt, flux, p, lo, hi, MAX_ITER, ws)
        if c < best:
            best = c
            bestp[:] = p
    if not (best < np.inf):
        return
    pred = np.empty(n)
    spm_model(tt, bestp, pred, ws[1 : NPAR + 1], False)
    chi = 0.0
    for i in range(n):
        chi += (pred[i] - flux[i]) ** 2 / (err[i] + 0.01) ** 2
    for a in range(NPAR):
        out[a] = bestp[a]
    out[6] = chi / (n - NPAR) if n - NPAR >= 1 else NAN


@njit(cache=True)
def spm_batch(
    t: np.ndarray, flux: np.ndarray, err: np.ndarray, seg_off: np.ndarray, min_points: int
) -> np.ndarray:
    nseg = seg_off.size - 1
    out = np.full((nseg, N_SPM), NAN)
    for s in range(nseg):
        a = seg_off[s]
        b = seg_off[s + 1]
        if b - a < min_points:
            continue
        band_spm(t[a:b], flux[a:b], err[a:b], out[s])
    return out


def mag_to_flux(mag: np.ndarray) -> np.ndarray:
    """AB magnitude to flux in mJy (ALeRCE's ``mag_to_flux``: 10 ** (-(m + 48.6) / 2.5 + 26))."""
    return 10.0 ** (-(mag + 48.6) / 2.5 + 26.0)
