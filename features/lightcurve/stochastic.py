"""Stochastic-process fits of one band: irregular autoregressive IAR(phi) and the damped random walk (DRW).

IAR follows Eyheramendy et al. 2018 as ALeRCE evaluates it: the Kalman-filter likelihood of the standardised
magnitudes, minimised over phi in (0, 1) by Brent's bounded method (the algorithm behind scipy's ``fminbound``).
DRW is the Ornstein-Uhlenbeck Gaussian process k(dt) = a exp(-dt / tau) plus the photometric noise, fitted by
maximum likelihood (an O(n) Kalman filter, Nelder-Mead over log a, log 1/tau). ALeRCE names ``a`` GP_DRW_sigma
although it is a variance; we keep their name and meaning.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._nb import NAN

LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True)
def iar_nll(phi: float, t: np.ndarray, y: np.ndarray, yerr: np.ndarray) -> float:
    """ALeRCE/iAR's Kalman objective for standardised data (returns 1e10 outside 0 <= phi < 1)."""
    n = y.size
    if phi != phi or not (abs(phi) < 1.0):
        return 1e10
    sighat = 1.0
    q = 1.0
    xhat = 0.0
    sum_lambda = 0.0
    sum_error = 0.0
    for i in range(n - 1):
        lam = sighat + yerr[i + 1] * yerr[i + 1]
        if not (lam > 0.0):
            sum_lambda = n * 1e10
            break
        dt = t[i + 1] - t[i]
        f = phi**dt
        qt = (1.0 - phi ** (2.0 * dt)) * q
        sum_lambda += math.log(lam)
        theta = f * sighat
        innov = y[i] - xhat
        sum_error += innov * innov / lam
        xhat = f * xhat + theta / lam * innov
        sighat = f * sighat * f + qt - theta / lam * theta
    if sum_lambda != sum_lambda:
        return 1e10
    return (sum_lambda + sum_error) / n


@njit(cache=True)
def iar_phi(t: np.ndarray, m: np.ndarray, e: np.ndarray) -> float:
    """IAR phi by bounded Brent minimisation on (0, 1) with xatol 1e-12, as ALeRCE's turbo-fats."""
    n = m.size
    if n < 3:
        return NAN
    mean = m.mean()
    ss = 0.0
    for i in range(n):
        ss += (m[i] - mean) ** 2
    std = math.sqrt(ss / (n - 1))
    if not (std > 0.0):
        return NAN
    y = (m - mean) / std
    yerr = e / std
    xatol = 1e-12
    sqrt_eps = math.sqrt(2.2e-16)
    golden_mean = 0.5 * (3.0 - math.sqrt(5.0))
    a = 0.0
    b = 1.0
    fulc = a + golden_mean * (b - a)
    nfc = fulc
    xf = fulc
    rat = 0.0
    ee = 0.0
    fx = iar_nll(xf, t, y, yerr)
    ffulc = fx
    fnfc = fx
    xm = 0.5 * (a + b)
    tol1 = sqrt_eps * abs(xf) + xatol / 3.0
    tol2 = 2.0 * tol1
    num = 1
    while abs(xf - xm) > (tol2 - 0.5 * (b - a)):
        golden = True
        if abs(ee) > tol1:
            golden = False
            r = (xf - nfc) * (fx - ffulc)
            q = (xf - fulc) * (fx - fnfc)
            p = (xf - fulc) * q - (xf - nfc) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = abs(q)
            r = ee
            ee = rat
            if abs(p) < abs(0.5 * q * r) and p > q * (a - xf) and p < q * (b - xf):
                rat = p / q
                x = xf + rat
                if (x - a) < tol2 or (b - x) < tol2:
                    d = xm - xf
                    rat = tol1 * (1.0 if d >= 0.0 else -1.0)
            else:
                golden = True
        if golden:
            ee = (a - xf) if xf >= xm else (b - xf)
            rat = golden_mean * ee
        si = 1.0 if rat >= 0.0 else -1.0
        x = xf + si * max(abs(rat), tol1)
        fu = iar_nll(x, t, y, yerr)
        num += 1
        if fu <= fx:
            if x >= xf:
                a = xf
            else:
                b = xf
            fulc, ffulc = nfc, fnfc
            nfc, fnfc = xf, fx
            xf, fx = x, fu
        else:
            if x < xf:
                a = x
            else:
                b = x
            if fu <= fnfc or nfc == xf:
                fulc, ffulc = nfc, fnfc
                nfc, fnfc = x, fu
            elif fu <= ffulc or fulc in (xf, nfc):
                fulc, ffulc = x, fu
        xm = 0.5 * (a + b)
        tol1 = sqrt_eps * abs(xf) + xatol / 3.0
        tol2 = 2.0 * tol1
        if num >= 500:
            break
    return xf


@njit(cache=True)
def drw_nll(log_a: float, log_c: float, t: np.ndarray, y: np.ndarray, var_err: np.ndarray) -> float:
    """Negative log-likelihood of y under an OU process (variance a, rate c) plus white noise (Kalman, O(n))."""
    if abs(log_a) > 40.0 or abs(log_c) > 40.0:
        return 1e300
    a = math.exp(log_a)
    c = math.exp(log_c)
    x = 0.0
    p = a
    nll = 0.0
    n = y.size
    for i in range(n):
        if i > 0:
            phi = math.exp(-c * (t[i] - t[i - 1]))
            x *= phi
            p = phi * phi * p + a * (1.0 - phi * phi)
        s = p + var_err[i]
        if not (s > 0.0):
            return 1e300
        v = y[i] - x
        nll += 0.5 * (LOG_2PI + math.log(s) + v * v / s)
        k = p / s
        x += k * v
        p *= 1.0 - k
    return nll


@njit(cache=True)
def drw_fit(t: np.ndarray, m: np.ndarray, e: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood DRW (a, tau) of mean-subtracted magnitudes; Nelder-Mead from a profiled start."""
    n = m.size
    if n < 3:
        return NAN, NAN
    t0 = t[0]
    tt = t - t0
    y = m - m.mean()
    var_err = e * e
    vy = 0.0
    for i in range(n):
        vy += y[i] * y[i]
    vy /= n
    if not (vy > 0.0):
        return NAN, NAN
    span = tt[n - 1] - tt[0]
    if not (span > 0.0):
        return NAN, NAN
    # Profile start: a = sample variance, tau on a log grid from 0.1 d to 10 x the time span.
    la0 = math.log(vy)
    best = np.inf
    lc0 = 0.0
    for k in range(17):
        ltau = math.log(0.1) + k / 16.0 * (math.log(10.0 * span) - math.log(0.1))
        f = drw_nll(la0, -ltau, tt, y, var_err)
        if f < best:
            best = f
            lc0 = -ltau
    # Nelder-Mead on (log a, log c).
    sx = np.empty((3, 2))
    fs = np.empty(3)
    sx[0, 0] = la0
    sx[0, 1] = lc0
    sx[1, 0] = la0 + 1.0
    sx[1, 1] = lc0
    sx[2, 0] = la0
    sx[2, 1] = lc0 + 1.0
    for i in range(3):
        fs[i] = drw_nll(sx[i, 0], sx[i, 1], tt, y, var_err)
    for _ in range(400):
        # order
        for i in range(3):
            for j in range(2 - i):
                if fs[j + 1] < fs[j]:
                    fs[j], fs[j + 1] = fs[j + 1], fs[j]
                    for d in range(2):
                        sx[j, d], sx[j + 1, d] = sx[j + 1, d], sx[j, d]
        if (
            abs(fs[2] - fs[0]) <= 1e-9 * (abs(fs[0]) + 1e-9)
            and max(abs(sx[2, 0] - sx[0, 0]), abs(sx[2, 1] - sx[0, 1])) < 1e-6
        ):
            break
        c0 = 0.5 * (sx[0, 0] + sx[1, 0])
        c1 = 0.5 * (sx[0, 1] + sx[1, 1])
        xr0 = c0 + (c0 - sx[2, 0])
        xr1 = c1 + (c1 - sx[2, 1])
        fr = drw_nll(xr0, xr1, tt, y, var_err)
        if fr < fs[0]:
            xe0 = c0 + 2.0 * (c0 - sx[2, 0])
            xe1 = c1 + 2.0 * (c1 - sx[2, 1])
            fe = drw_nll(xe0, xe1, tt, y, var_err)
            if fe < fr:
                sx[2, 0], sx[2, 1], fs[2] = xe0, xe1, fe
            else:
                sx[2, 0], sx[2, 1], fs[2] = xr0, xr1, fr
        elif fr < fs[1]:
            sx[2, 0], sx[2, 1], fs[2] = xr0, xr1, fr
        else:
            if fr < fs[2]:
                xc0 = c0 + 0.5 * (xr0 - c0)
                xc1 = c1 + 0.5 * (xr1 - c1)
            else:
                xc0 = c0 + 0.5 * (sx[2, 0] - c0)
                xc1 = c1 + 0.5 * (sx[2, 1] - c1)
            fc = drw_nll(xc0, xc1, tt, y, var_err)
            if fc < min(fr, fs[2]):
                sx[2, 0], sx[2, 1], fs[2] = xc0, xc1, fc
            else:
                for i in range(1, 3):
                    sx[i, 0] = sx[0, 0] + 0.5 * (sx[i, 0] - sx[0, 0])
                    sx[i, 1] = sx[0, 1] + 0.5 * (sx[i, 1] - sx[0, 1])
                    fs[i] = drw_nll(sx[i, 0], sx[i, 1], tt, y, var_err)
    ib = 0
    for i in range(1, 3):
        if fs[i] < fs[ib]:
            ib = i
    if not (fs[ib] < 1e299):
        return NAN, NAN
    return math.exp(sx[ib, 0]), math.exp(-sx[ib, 1])


N_STOCHASTIC = 3
STOCHASTIC_NAMES: tuple[str, ...] = ("IAR_phi", "GP_DRW_sigma", "GP_DRW_tau")


@njit(cache=True)
def stochastic_batch(
    t: np.ndarray, m: np.ndarray, e: np.ndarray, seg_off: np.ndarray, min_points: int
) -> np.ndarray:
    """IAR phi and DRW (a, tau) for every segment with at least ``min_points`` points."""
    nseg = seg_off.size - 1
    out = np.full((nseg, N_STOCHASTIC), NAN)
    for s in range(nseg):
        a = seg_off[s]
        b = seg_off[s + 1]
        if b - a < min_points:
            continue
        out[s, 0] = iar_phi(t[a:b], m[a:b], e[a:b])
        sa, tau = drw_fit(t[a:b], m[a:b], e[a:b])
        out[s, 1] = sa
        out[s, 2] = tau
    return out
