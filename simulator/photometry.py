"""Difference photometry of every (object, epoch) row: what the survey measured, and whether it detected it.

Fluxes are on each visit's zero point. The difference flux is the source's flux now minus its flux in the
reference image; its noise is sky-limited at the visit's 5-sigma depth, plus source Poisson noise and a 0.5%
subtraction floor; a detection needs |flux| >= 5 sigma. Asteroids shine at one epoch only, artefacts appear at
one (or, near bright stars, several) epochs with a made-up flux. Everything is vectorised over rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import SurveySpec
from .models import SharedRealisation, reference_mags, source_mags
from .neighbours import flux

DETECTION_SNR = 5.0
SKY_FLUX_OVER_LIMIT = (
    50.0  # sky flux inside the PSF / 5-sigma limiting flux (sets where Poisson noise matters)
)
FLOOR = 0.005  # imperfect subtraction: fraction of the flux at the position
DIFF_FLOOR = 0.02  # PSF-fit systematics: fraction of the difference flux (sigmapsf >~ 0.02 mag)


def _pick_one_per_object(obj: np.ndarray, eligible: np.ndarray, rng) -> np.ndarray:
    """Boolean mask choosing one eligible row per object at random (objects with none get nothing)."""
    key = np.where(eligible, rng.random(len(obj)), np.inf)
    order = np.lexsort((key, obj))
    first = np.r_[True, obj[order][1:] != obj[order][:-1]]
    chosen = np.zeros(len(obj), dtype=bool)
    pick = order[first]
    chosen[pick[np.isfinite(key[pick])]] = True
    return chosen


def observe(
    pop: pd.DataFrame,
    visits: pd.DataFrame,
    obj: np.ndarray,
    epoch: np.ndarray,
    ctx: pd.DataFrame,
    spec: SurveySpec,
    window: tuple[float, float],
    span: tuple[float, float],
    rng: np.random.Generator,
    shared: SharedRealisation | None = None,
) -> pd.DataFrame:
    """One row per (object, visit) with the true and measured difference flux and the detection flag.

    `shared` (joint runs): the stochastic light curves' random parts, the same for every survey."""
    t = visits["mjd"].to_numpy()[epoch]
    band = visits["band"].to_numpy()[epoch].astype(np.int64)
    maglim = visits["maglim"].to_numpy()[epoch]
    zp = visits["zp"].to_numpy()[epoch]
    cls = pop["class"].to_numpy()[obj]
    m_src = source_mags(pop, obj, t, band, spec, rng, span, shared)
    ref = reference_mags(pop, spec)
    m_ref = ref[obj, band]
    in_window = (t >= window[0]) & (t < window[1])

    # Asteroids: visible at one epoch of the window only.
    ast = cls == "asteroid"
    if ast.any():
        keep = _pick_one_per_object(obj, ast & in_window, rng)
        m_src = np.where(ast & ~keep, np.inf, m_src)

    def to_flux(m):
        return flux(m - zp)

    f_src = to_flux(m_src)
    f_ref = to_flux(m_ref)
    hu = np.stack([ctx[f"host_under_{j}"].to_numpy() for j in range(spec.nbands)], axis=1)[obj, band]
    f_host = to_flux(hu)
    f_lim = to_flux(maglim)
    sig_sky = f_lim / DETECTION_SNR
    total = f_src + f_host
    var = (
        sig_sky**2 * (1.0 + (total + f_ref) / (SKY_FLUX_OVER_LIMIT * f_lim)) + (FLOOR * (total + f_ref)) ** 2
    )
    diff = f_src - f_ref
    sigma = np.sqrt(var + (DIFF_FLOOR * diff) ** 2)
    diff_obs = diff + sigma * rng.standard_normal(len(t))

    # Artefacts: one epoch in the window, or recurring at a fraction of epochs near bright stars.
    bog = cls == "bogus"
    if bog.any():
        persist = pop["persistence"].to_numpy(dtype=float, na_value=0.0)[obj]
        one = _pick_one_per_object(obj, bog & in_window, rng)
        recur = bog & (rng.random(len(t)) < persist)
        fire = one | recur
        sign = np.where(
            np.isin(pop["subtype"].to_numpy()[obj], ["dipole"]),
            np.where(rng.random(len(t)) < 0.5, -1.0, 1.0),
            1.0,
        )
        snr_b = DETECTION_SNR + rng.exponential(3.0, len(t))
        diff_obs = np.where(
            bog, np.where(fire, sign * snr_b * sigma, sigma * rng.standard_normal(len(t)) * 0.5), diff_obs
        )
        diff = np.where(bog, np.where(fire, diff_obs, 0.0), diff)

    snr = diff_obs / sigma
    # Saturated sources (science flux brighter than the saturation level) are masked by the pipeline.
    saturated = total > to_flux(np.full(len(t), spec.saturation_mag))
    detected = (np.abs(snr) >= DETECTION_SNR) & (~saturated | bog)
    with np.errstate(divide="ignore"):
        magpsf = np.where(detected, zp - 2.5 * np.log10(np.abs(diff_obs)), np.nan)
    return pd.DataFrame(
        {
            "obj": obj.astype(np.int64),
            "epoch": epoch.astype(np.int64),
            "mjd": t,
            "band": band.astype(np.int16),
            "maglim": maglim,
            "zp": zp,
            "m_true": m_src,
            "m_ref": m_ref,
            "f_src": f_src,
            "f_ref": f_ref,
            "f_host": f_host,
            "diff_true": diff,
            "diff": diff_obs,
            "sigma": sigma,
            "snr": snr,
            "detected": detected,
            "magpsf": magpsf,
            "sigmapsf": np.where(detected, 1.0857362 / np.abs(snr), np.nan),
            "in_window": in_window,
        }
    )
