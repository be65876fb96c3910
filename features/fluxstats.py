"""Photometry of surveys that measure fluxes (LSST): apparent magnitudes from the science-image flux, and
per-band flux statistics beside the magnitude statistics.

ZTF reports a difference magnitude and a reference source, and the apparent magnitude has to be reconstructed
(``features.correction``). LSST measures the flux at the source's position in the science image directly
(``scienceFlux``, nJy), so the apparent AB magnitude is simply ``31.4 - 2.5 log10(scienceFlux)`` where that flux
is positive: it fills the same ``magpsf_corr`` / ``sigmapsf_corr`` columns, ``corrected`` says where it exists,
and nothing is ``dubious`` (there is no correction to be inconsistent). Rows without a ``scienceFlux`` (ZTF,
ATLAS) are left as ``correct()`` made them.

The difference flux itself (``psfFlux``: negative when the source is fainter than in the template) is what
LSST's light curves are made of; ``flux_stats`` summarises it per (object, band) for ``magstats``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: AB magnitude of a flux in nJy: m = 31.4 - 2.5 log10(f / nJy).
AB_ZERO_POINT_NJY = 31.4
_MAG_PER_LN = 2.5 / np.log(10.0)
#: Per-band statistics of the difference flux (nJy), added to magstats for flux surveys.
FLUX_STAT_COLUMNS = (
    "flux_mean", "flux_median", "flux_sigma", "flux_min", "flux_max", "flux_first", "flux_last", "snr_max",
)  # fmt: skip


def apparent_from_science_flux(detections: pd.DataFrame) -> pd.DataFrame:
    """``detections`` with the apparent magnitude of rows that carry a science-image flux (see module doc)."""
    if detections.empty or "scienceFlux" not in detections.columns:
        return detections
    flux = pd.to_numeric(detections["scienceFlux"], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    has = np.isfinite(flux)
    if not has.any():
        return detections
    err = (
        pd.to_numeric(detections["scienceFluxErr"], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        if "scienceFluxErr" in detections.columns
        else np.full(len(flux), np.nan)
    )
    positive = has & (flux > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(positive, AB_ZERO_POINT_NJY - 2.5 * np.log10(flux), np.nan)
        sigma = np.where(positive, _MAG_PER_LN * err / flux, np.nan)
    out = detections.copy()
    for col, values in (("magpsf_corr", mag), ("sigmapsf_corr", sigma), ("sigmapsf_corr_ext", sigma)):
        base = out[col].to_numpy(dtype=np.float64, copy=True) if col in out else np.full(len(out), np.nan)
        base[has] = values[has]
        out[col] = base
    corrected = (
        out["corrected"].to_numpy(dtype=bool, copy=True) if "corrected" in out else np.zeros(len(out), bool)
    )
    dubious = out["dubious"].to_numpy(dtype=bool, copy=True) if "dubious" in out else np.zeros(len(out), bool)
    corrected[has] = positive[has]
    dubious[has] = False
    out["corrected"] = corrected
    out["dubious"] = dubious
    return out


def flux_stats(detections: pd.DataFrame) -> pd.DataFrame:
    """Per (oid, fid): statistics of the difference flux ``psfFlux`` (nJy) of the rows that have one; empty
    when none has. ``flux_first``/``flux_last`` follow time order; ``snr_max`` is the largest |flux| / error."""
    cols = ["oid", "fid", *FLUX_STAT_COLUMNS]
    if detections.empty or "psfFlux" not in detections.columns:
        return pd.DataFrame(columns=cols)
    det = detections[["oid", "fid", "mjd", "psfFlux", "psfFluxErr"]].copy()
    det["psfFlux"] = pd.to_numeric(det["psfFlux"], errors="coerce").astype("float64")
    det["psfFluxErr"] = pd.to_numeric(det["psfFluxErr"], errors="coerce").astype("float64")
    det = det[np.isfinite(det["psfFlux"].to_numpy())]
    if det.empty:
        return pd.DataFrame(columns=cols)
    det = det.sort_values(["oid", "fid", "mjd"], kind="stable")
    with np.errstate(divide="ignore", invalid="ignore"):
        det["snr"] = np.abs(det["psfFlux"]) / det["psfFluxErr"]
    g = det.groupby(["oid", "fid"], sort=True)
    out = pd.DataFrame(
        {
            "flux_mean": g["psfFlux"].mean(),
            "flux_median": g["psfFlux"].median(),
            "flux_sigma": g["psfFlux"].std(ddof=1),
            "flux_min": g["psfFlux"].min(),
            "flux_max": g["psfFlux"].max(),
            "flux_first": g["psfFlux"].first(),
            "flux_last": g["psfFlux"].last(),
            "snr_max": g["snr"].max(),
        }
    ).reset_index()
    return out[cols]
