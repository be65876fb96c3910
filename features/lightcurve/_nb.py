"""Small numba building blocks shared by the light-curve kernels.

Everything here is ``njit(cache=True)`` so a worker process compiles each kernel once per machine (the cache lives
beside the source) and never per batch. Inputs are float64 arrays; helpers never allocate on the hot path unless
they say so.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

NAN = np.nan
SQRT2 = math.sqrt(2.0)
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@njit(cache=True)
def sorted_median(xs: np.ndarray) -> float:
    """Median of an already sorted array (numpy's definition: mean of the two middle values)."""
    n = xs.size
    if n == 0:
        return NAN
    h = n // 2
    if n % 2 == 1:
        return xs[h]
    return 0.5 * (xs[h - 1] + xs[h])


@njit(cache=True)
def sorted_percentile(xs: np.ndarray, q: float) -> float:
    """numpy.percentile(x, q) with the default 'linear' method, on an already sorted array."""
    n = xs.size
    if n == 0:
        return NAN
    pos = q / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    if lo >= n - 1:
        return xs[n - 1]
    frac = pos - lo
    return xs[lo] + frac * (xs[lo + 1] - xs[lo])


@njit(cache=True)
def median(x: np.ndarray) -> float:
    """Median of an unsorted array (allocates a sorted copy)."""
    return sorted_median(np.sort(x))


@njit(cache=True)
def norm_logcdf(z: float) -> float:
    """log Phi(z), accurate in the far lower tail where erfc underflows."""
    if z < -30.0:
        # Asymptotic Mills-ratio expansion: Phi(z) ~ phi(z)/|z| * (1 - 1/z^2 + 3/z^4).
        z2 = z * z
        return -0.5 * z2 - math.log(-z) - LOG_SQRT_2PI + math.log1p(-1.0 / z2 + 3.0 / (z2 * z2))
    return math.log(0.5 * math.erfc(-z / SQRT2))


@njit(cache=True)
def gammainc_lower(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) (= chi2.cdf(2x, 2a)); series or continued fraction."""
    if not (a > 0.0) or x != x:
        return NAN
    if x <= 0.0:
        return 0.0
    if math.isinf(x):
        return 1.0
    gln = math.lgamma(a)
    if x < a + 1.0:
        ap = a
        s = 1.0 / a
        d = s
        for _ in range(10000):
            ap += 1.0
            d *= x / ap
            s += d
            if abs(d) < abs(s) * 1e-16:
                break
        return s * math.exp(-x + a * math.log(x) - gln)
    # Lentz continued fraction for Q(a, x).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < tiny:
            d = tiny
        c = b + an / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        de = d * c
        h *= de
        if abs(de - 1.0) < 1e-16:
            break
    return 1.0 - math.exp(-x + a * math.log(x) - gln) * h


@njit(cache=True)
def solve_small(a: np.ndarray, b: np.ndarray) -> bool:
    """Solve a x = b in place (b receives x) by Gaussian elimination with partial pivoting.

    For the 6x6 Levenberg-Marquardt systems a LAPACK call costs more than the arithmetic. Returns False on a
    singular matrix.
    """
    n = b.size
    for k in range(n):
        p = k
        big = abs(a[k, k])
        for i in range(k + 1, n):
            if abs(a[i, k]) > big:
                big = abs(a[i, k])
                p = i
        if not (big > 0.0):
            return False
        if p != k:
            for j in range(n):
                tmp = a[k, j]
                a[k, j] = a[p, j]
                a[p, j] = tmp
            tmp = b[k]
            b[k] = b[p]
            b[p] = tmp
        for i in range(k + 1, n):
            f = a[i, k] / a[k, k]
            if f != 0.0:
                for j in range(k, n):
                    a[i, j] -= f * a[k, j]
                b[i] -= f * b[k]
    for k in range(n - 1, -1, -1):
        s = b[k]
        for j in range(k + 1, n):
            s -= a[k, j] * b[j]
        b[k] = s / a[k, k]
    return True


@njit(cache=True)
def polyfit1(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares line y = slope * x + intercept; NaN for fewer than two distinct x."""
    n = x.size
    if n < 2:
        return NAN, NAN
    mx = 0.0
    my = 0.0
    for i in range(n):
        mx += x[i]
        my += y[i]
    mx /= n
    my /= n
    sxx = 0.0
    sxy = 0.0
    for i in range(n):
        dx = x[i] - mx
        sxx += dx * dx
        sxy += dx * (y[i] - my)
    if not (sxx > 0.0):
        return NAN, NAN
    slope = sxy / sxx
    return slope, my - slope * mx
