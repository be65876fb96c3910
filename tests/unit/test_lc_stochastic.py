"""IAR phi and the damped random walk: simulated processes with known parameters, and the likelihoods against
independent derivations (ALeRCE's Kalman recursion written out in Python; a dense Gaussian-process likelihood)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from alert_broker.features.lightcurve.stochastic import drw_fit, drw_nll, iar_nll, iar_phi


def simulate_ou(rng, t: np.ndarray, tau: float, var: float) -> np.ndarray:
    """Exact Ornstein-Uhlenbeck draw (variance ``var``, timescale ``tau``) at times ``t``."""
    x = np.empty(t.size)
    x[0] = rng.normal(0, math.sqrt(var))
    for i in range(1, t.size):
        phi = math.exp(-(t[i] - t[i - 1]) / tau)
        x[i] = phi * x[i - 1] + math.sqrt(var * (1 - phi * phi)) * rng.normal()
    return x


def alerce_iar_objective(phi, t, y, yerr):
    """ALeRCE's ``iar_phi_kalman`` (standardised data), transcribed line by line."""
    n = len(y)
    sighat, xhat, delta = 1.0, np.zeros(n), np.diff(t)
    sum_lambda = sum_error = 0.0
    if not abs(phi) < 1:
        return 1e10
    for i in range(n - 1):
        lam = sighat + yerr[i + 1] ** 2
        f = phi ** delta[i]
        qt = (1 - phi ** (delta[i] * 2)) * 1.0
        sum_lambda += np.log(lam)
        theta = f * sighat
        sum_error += (y[i] - xhat[i]) ** 2 / lam
        xhat[i + 1] = f * xhat[i] + theta / lam * (y[i] - xhat[i])
        sighat = f * sighat * f + qt - theta / lam * theta
    return (sum_lambda + sum_error) / n


def test_iar_objective_matches_alerce_recursion():
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(1.5, 60))
    y = rng.normal(size=60)
    yerr = rng.uniform(0.01, 0.3, 60)
    for phi in (0.0, 0.1, 0.5, 0.93, 0.999):
        assert iar_nll(phi, t, y, yerr) == pytest.approx(alerce_iar_objective(phi, t, y, yerr), rel=1e-12)
    assert iar_nll(1.0, t, y, yerr) == 1e10


def test_iar_phi_recovers_simulated_phi_and_matches_scipy_bounded_minimiser():
    rng = np.random.default_rng(1)
    phi_true = 0.7
    estimates = []
    for _ in range(4):
        t = np.cumsum(rng.exponential(1.0, 500))
        # An IAR(phi) process is an OU process with tau = -1 / ln(phi) (time in days).
        m = 18 + 0.3 * simulate_ou(rng, t, -1 / math.log(phi_true), 1.0) + rng.normal(0, 0.01, t.size)
        e = np.full(t.size, 0.01)
        phi = iar_phi(t, m, e)
        s = m.std(ddof=1)
        ref = optimize.minimize_scalar(
            alerce_iar_objective,
            bounds=(0, 1),
            method="bounded",
            args=(t, (m - m.mean()) / s, e / s),
            options={"xatol": 1e-12},
        )
        assert phi == pytest.approx(ref.x, abs=1e-6)
        estimates.append(phi)
    assert np.median(estimates) == pytest.approx(phi_true, abs=0.05)


def test_drw_likelihood_matches_dense_gaussian_process():
    rng = np.random.default_rng(2)
    t = np.sort(rng.uniform(0, 300, 40))
    y = rng.normal(0, 0.2, 40)
    var_err = rng.uniform(0.01, 0.05, 40) ** 2
    for a, tau in ((0.04, 20.0), (0.5, 3.0), (0.01, 400.0)):
        cov = a * np.exp(-np.abs(t[:, None] - t[None, :]) / tau) + np.diag(var_err)
        want = -stats.multivariate_normal(mean=np.zeros(40), cov=cov).logpdf(y)
        assert drw_nll(math.log(a), -math.log(tau), t, y, var_err) == pytest.approx(want, rel=1e-10)


def test_drw_recovers_timescale_and_variance():
    """DRW with tau = 30 d, sigma^2 = 0.04 mag^2 over ~60 tau: median of five fits within 20 %."""
    rng = np.random.default_rng(3)
    taus, variances = [], []
    for _ in range(5):
        t = np.sort(rng.uniform(0, 1800, 400))
        m = 19 + simulate_ou(rng, t, 30.0, 0.04) + rng.normal(0, 0.02, t.size)
        a, tau = drw_fit(t, m, np.full(t.size, 0.02))
        # The fit is a maximum of the likelihood: nudging either parameter makes it worse.
        y = m - m.mean()
        best = drw_nll(math.log(a), -math.log(tau), t - t[0], y, np.full(t.size, 0.02**2))
        for da, dc in ((0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)):
            nudged = drw_nll(math.log(a) + da, -math.log(tau) + dc, t - t[0], y, np.full(t.size, 0.02**2))
            assert nudged > best
        taus.append(tau)
        variances.append(a)
    assert np.median(taus) == pytest.approx(30.0, rel=0.2)
    assert np.median(variances) == pytest.approx(0.04, rel=0.2)


def test_iar_and_drw_agree_on_a_drw_series():
    """On a DRW series IAR's phi estimates exp(-1/tau) per day."""
    rng = np.random.default_rng(4)
    t = np.cumsum(rng.exponential(2.0, 600))
    m = 18 + simulate_ou(rng, t, 10.0, 0.09) + rng.normal(0, 0.01, t.size)
    e = np.full(t.size, 0.01)
    _, tau = drw_fit(t, m, e)
    assert iar_phi(t, m, e) == pytest.approx(math.exp(-1 / tau), abs=0.03)
    assert iar_phi(t, m, e) == pytest.approx(math.exp(-1 / 10.0), abs=0.03)
