"""Light-curve models, vectorised over (object, epoch) rows.

Every function takes per-row parameter arrays (already gathered from the population with `p[obj]`) and returns
apparent magnitudes of the *variable source only* (np.inf where it emits nothing). Hosts and reference images
are the photometry module's business. Models:

- supernovae: the Villar et al. (2019) rise / plateau / exponential-decline flux model, normalised to the drawn
  peak magnitude, with bluer bands declining faster;
- periodic variables: truncated Fourier series of an asymmetric triangle wave (rise fraction q; q ~ 0.15 gives
  the RRab / Cepheid sawtooth, q ~ 0.5 a near-sinusoid), eclipses as Gaussian dips, W UMa as a cos 4 pi phi;
- stochastic sources: a damped random walk (Ornstein-Uhlenbeck) shared by all bands, plus YSO dips/bursts;
- cataclysmic variables: exponential-rise / plateau / exponential-decline outbursts on a quiescent flux.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import WAVELENGTH_NM

LAMBDA_R = WAVELENGTH_NM["r"]
DLAMBDA_GR = WAVELENGTH_NM["r"] - WAVELENGTH_NM["g"]
T_EPOCH = 60000.0  # reference epoch of periodic phases
LN10_04 = 0.4 * np.log(10.0)


def colour_factor(lam: np.ndarray) -> np.ndarray:
    """Colour index relative to r in units of g-r (linear in wavelength): g -> 1, r -> 0, i -> -0.95."""
    return (LAMBDA_R - lam) / DLAMBDA_GR


def chroma_factor(lam: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Amplitude in a band relative to r: larger in the blue for pulsators and AGN."""
    return np.maximum(0.3, 1.0 + chroma * colour_factor(lam))


# ----------------------------------------------------------------------------------------------- periodic ----
def triangle_fourier(phase: np.ndarray, q: np.ndarray, n_harm: np.ndarray, kmax: int = 6) -> np.ndarray:
    """Fourier series (first n_harm terms) of a triangle wave: -1 at phase 0, +1 at phase q, zero mean.

    Closed form from the wave's second derivative (two delta functions):
    f(phi) = -c/(2 pi^2) sum_k [cos 2 pi k phi - cos 2 pi k (phi - q)] / k^2, c = 2 / (q (1 - q)).
    """
    c = 2.0 / (q * (1.0 - q))
    out = np.zeros(np.broadcast_shapes(np.shape(phase), np.shape(q), np.shape(n_harm)))
    for k in range(1, kmax + 1):
        term = (np.cos(2 * np.pi * k * phase) - np.cos(2 * np.pi * k * (phase - q))) / k**2
        out += np.where(k <= n_harm, term, 0.0)
    return -c / (2 * np.pi**2) * out


@lru_cache(maxsize=1)
def _triangle_range_table(kmax: int = 6) -> tuple[np.ndarray, np.ndarray]:
    q = np.linspace(0.01, 0.99, 197)
    grid = np.linspace(0, 1, 512, endpoint=False)
    table = np.empty((kmax + 1, len(q)))
    table[0] = 1.0
    for nh in range(1, kmax + 1):
        f = triangle_fourier(grid[None, :], q[:, None], np.full((len(q), 1), nh))
        table[nh] = f.max(axis=1) - f.min(axis=1)
    return q, table


def triangle_range(q: np.ndarray, n_harm: np.ndarray) -> np.ndarray:
    """Peak-to-peak of the truncated series (tabulated in q), so the drawn amplitude is the light curve's."""
    qg, table = _triangle_range_table()
    q = np.clip(np.asarray(q, dtype=float), qg[0], qg[-1])
    n_harm = np.clip(np.asarray(n_harm, dtype=int), 1, table.shape[0] - 1)
    out = np.empty(np.broadcast_shapes(q.shape, n_harm.shape))
    qb, nb = np.broadcast_arrays(q, n_harm)
    for nh in np.unique(nb):
        m = nb == nh
        out[m] = np.interp(qb[m], qg, table[nh])
    return out


def pulsator_mag(t, period, phase0, amp, q, n_harm, m0, norm=None):
    """Multi-harmonic pulsator: m0 is the phase-mean magnitude, amp the peak-to-peak amplitude.

    `norm` is triangle_range(q, n_harm), computed once per object by callers that evaluate many epochs.
    """
    phase = np.mod((t - T_EPOCH) / period + phase0, 1.0)
    f = triangle_fourier(phase, q, n_harm)
    return m0 - amp * f / (triangle_range(q, n_harm) if norm is None else norm)


def _wrapped(d: np.ndarray) -> np.ndarray:
    return np.abs((d + 0.5) % 1.0 - 0.5)


def eclipsing_mag(t, period, phase0, depth1, depth2, width, is_ea, m0):
    """EA: flat with Gaussian primary/secondary eclipses; EW: continuous cos(4 pi phi) with unequal minima."""
    phase = np.mod((t - T_EPOCH) / period + phase0, 1.0)
    w = np.where(np.isfinite(width), width, 0.05)
    ea = depth1 * np.exp(-0.5 * (_wrapped(phase) / w) ** 2) + depth2 * np.exp(
        -0.5 * (_wrapped(phase - 0.5) / w) ** 2
    )
    ea_mean = (depth1 + depth2) * w * np.sqrt(2 * np.pi)
    a = 0.5 * (depth1 + depth2)
    b = depth1 - depth2
    ew = a * 0.5 * (1 + np.cos(4 * np.pi * phase)) + b * 0.5 * (1 + np.cos(2 * np.pi * phase))
    ew_mean = 0.5 * (a + b)
    return m0 + np.where(is_ea, ea - ea_mean, ew - ew_mean)


# ------------------------------------------------------------------------------------------- supernovae ----
def villar_flux(t, t0, tau_rise, tau_fall, gamma, beta):
    """Villar et al. (2019) flux shape (amplitude 1): sigmoid rise, linear plateau of length gamma, exp decline."""
    x = t - t0
    rise = 1.0 / (1.0 + np.exp(-np.clip(x / tau_rise, -60, 60)))
    plateau = 1.0 - beta * np.minimum(x, gamma)
    decline = np.where(x > gamma, np.exp(-np.clip((x - gamma) / tau_fall, 0, 700)), 1.0)
    return rise * np.maximum(plateau, 1e-6) * decline


def sn_band_params(tau_fall, beta, lam, fall_chroma=0.25, plateau_chroma=0.8):
    """Bluer bands decline faster (shorter tail, steeper plateau): SNe redden after peak.

    The chromaticities are per object (population.SN_DECLINE_CHROMA): SNe Ia and Ibc redden faster than SNe II.
    """
    cf = colour_factor(lam)
    return (
        tau_fall * np.maximum(0.4, 1.0 - fall_chroma * cf),
        beta * np.maximum(0.0, 1.0 + plateau_chroma * cf),
    )


def sn_peak_offsets(tau_rise, tau_fall, gamma, beta, ngrid: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(time from t0 to peak, peak flux) of each object's Villar curve: a coarse grid, then a fine one."""
    lo = -3.0 * tau_rise
    hi = gamma + 3.0 * tau_rise + 2.0
    rows = np.arange(len(lo))
    args = (tau_rise[:, None], tau_fall[:, None], gamma[:, None], beta[:, None])
    u = np.linspace(0.0, 1.0, ngrid)[None, :]
    x = lo[:, None] + (hi - lo)[:, None] * u
    k = np.argmax(villar_flux(x, 0.0, *args), axis=1)
    step = (hi - lo) / (ngrid - 1)
    x = x[rows, k][:, None] + step[:, None] * np.linspace(-1.0, 1.0, 201)[None, :]
    f = villar_flux(x, 0.0, *args)
    k = np.argmax(f, axis=1)
    return x[rows, k], f[rows, k]


def sn_shape_params(
    tau_rise, tau_fall, gamma, beta, peak_mjd, lam_bands: np.ndarray, fall_chroma=0.25, plateau_chroma=0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Per object: t0 (so that r peaks at peak_mjd) and per-band peak flux of the shape, (n,) and (n, nbands)."""
    dt_r, _ = sn_peak_offsets(tau_rise, tau_fall, gamma, beta)
    fpk = np.empty((len(tau_rise), len(lam_bands)))
    for j, lam in enumerate(lam_bands):
        tf_b, beta_b = sn_band_params(tau_fall, beta, lam, fall_chroma, plateau_chroma)
        fpk[:, j] = sn_peak_offsets(tau_rise, tf_b, gamma, beta_b)[1]
    return peak_mjd - dt_r, fpk


def sn_mag(
    t,
    lam,
    t0,
    fpk,
    peak_mag,
    colour_gr,
    tau_rise,
    tau_fall,
    gamma,
    beta,
    fall_chroma=0.25,
    plateau_chroma=0.8,
):
    """SN magnitude per row (t0, fpk from sn_shape_params). peak_mag is the r-band truth."""
    tf_b, beta_b = sn_band_params(tau_fall, beta, lam, fall_chroma, plateau_chroma)
    f = villar_flux(t, t0, tau_rise, tf_b, gamma, beta_b) / fpk
    with np.errstate(divide="ignore"):
        return peak_mag + colour_gr * colour_factor(lam) - 2.5 * np.log10(f)


# ------------------------------------------------------------------------------------------- stochastic ----
def drw_paths(
    obj: np.ndarray, t: np.ndarray, tau: np.ndarray, sigma: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Damped random walk X(t) (mean 0, variance sigma^2, correlation exp(-dt/tau)) at each row.

    Rows must be sorted by (obj, t); tau/sigma are per row. The recursion is exact for irregular sampling
    (Kelly et al. 2009, eq. 4) and runs over the epoch index, vectorised across objects.
    """
    n = len(t)
    x = np.zeros(n)
    if n == 0:
        return x
    start = np.r_[True, obj[1:] != obj[:-1]]
    pos = np.arange(n) - np.maximum.accumulate(np.where(start, np.arange(n), 0))
    eps = rng.standard_normal(n)
    first = np.flatnonzero(start)
    x[first] = sigma[first] * eps[first]
    for j in range(1, int(pos.max()) + 1):
        idx = np.flatnonzero(pos == j)
        a = np.exp(-(t[idx] - t[idx - 1]) / tau[idx])
        x[idx] = a * x[idx - 1] + sigma[idx] * np.sqrt(np.maximum(1 - a * a, 0.0)) * eps[idx]
    return x


def event_train(
    n_obj: int,
    rate: np.ndarray,
    span: tuple[float, float],
    rng,
    kmax: int = 120,
):
    """Poisson event times per object over `span`: (n_obj, kmax) array, NaN-padded."""
    lam = rate * (span[1] - span[0])
    k = np.minimum(rng.poisson(lam), kmax)
    times = rng.uniform(span[0], span[1], (n_obj, kmax))
    times[np.arange(kmax)[None, :] >= k[:, None]] = np.nan
    return times


def yso_events(t, times_rows, amp, dur, is_dipper):
    """Dips (Gaussian, positive in magnitude) or bursts (fast rise, slow decay, negative) summed over events."""
    dt = t[:, None] - times_rows
    dips = np.exp(-0.5 * (dt / dur[:, None]) ** 2)
    burst = np.where(
        dt < 0,
        np.exp(np.clip(dt / (0.2 * dur[:, None]), -700, 0)),
        np.exp(-np.clip(dt / dur[:, None], 0, 700)),
    )
    shape = np.where(is_dipper[:, None], dips, -burst)
    return amp * np.nansum(np.where(np.isnan(times_rows), 0.0, shape), axis=1)


def outburst_shape(x, tau_rise, dur, tau_fall):
    """Exponential rise to 1, plateau of `dur` days, exponential decline (x = t - outburst start)."""
    return np.where(
        x < 0,
        np.exp(np.clip(x / tau_rise, -700, 0)),
        np.where(x < dur, 1.0, np.exp(-np.clip((x - dur) / tau_fall, 0, 700))),
    )


def cv_mag(t, times_rows, m_q, amp, tau_rise, dur, tau_fall):
    """Quiescent flux plus outbursts of `amp` magnitudes; times_rows (rows, K) are outburst starts."""
    x = t[:, None] - times_rows
    s = outburst_shape(x, tau_rise[:, None], dur[:, None], tau_fall[:, None])
    s = np.nansum(np.where(np.isnan(times_rows), 0.0, s), axis=1)
    return m_q - 2.5 * np.log10(1.0 + (10 ** (0.4 * amp) - 1.0) * s)


def dn_outburst_times(peak_mjd, recurrence, span, rng, kmax: int = 80):
    """Quasi-periodic dwarf-nova outbursts through `peak_mjd` (gaps ~ recurrence x lognormal(0, 0.2))."""
    n = len(peak_mjd)
    gaps = recurrence[:, None] * np.exp(rng.normal(0, 0.2, (n, kmax)))
    half = kmax // 2
    fwd = peak_mjd[:, None] + np.concatenate(
        [np.zeros((n, 1)), np.cumsum(gaps[:, : half - 1], axis=1)], axis=1
    )
    bwd = peak_mjd[:, None] - np.cumsum(gaps[:, half:], axis=1)
    times = np.concatenate([bwd[:, ::-1], fwd], axis=1)
    times[(times < span[0] - 200) | (times > span[1] + 1)] = np.nan
    return times
