"""Object-level statistics (the ``objects`` table of docs/data-model.md), one row per ``oid``.

* ``meanra`` / ``meandec``: inverse-variance weighted mean of the detections' positions. The weight of a
  detection is ``1 / sigma_pos^2`` with ``sigma_pos^2 = floor^2 + (theta / SNR)^2``: ``theta = FWHM / 2.3548``
  is the Gaussian PSF width and ``SNR = 1.0857 / sigmapsf``, so ``theta / SNR`` is the photon-limited
  centroid error of a PSF fit, and ``floor = 0.07"`` is ZTF's systematic astrometric error against Gaia
  (Masci et al. 2019), which keeps very bright detections from taking all the weight. Faint, low-S/N
  detections and bad seeing then move the mean little. (ALeRCE weights by a constant per band, 0.065" g,
  0.085" r, 0.01" i, which makes a single i-band point outweigh ~40 g-band ones.) ``FWHM`` is the ``fwhm``
  column in pixels times the survey's pixel scale; a missing FWHM uses 2", a missing ``sigmapsf`` uses
  SNR = 5 (the detection threshold, the least favourable case). The mean is taken on unit vectors, so it is
  right across RA = 0/360 and near the poles.
* ``sigmara`` / ``sigmadec``: weighted *scatter* (standard deviation, reliability-weights unbiased estimator)
  of the positions about that mean, in arcsec on the sky (the RA offsets are multiplied by cos(meandec)); NaN
  for a single detection. ALeRCE stores the formal error of the mean instead, ``sqrt(1 / sum w)``.
* ``corrected``, ``diffpos`` (``isdiffpos > 0``): of the object's first detection. ``stellar``: see
  :func:`features.magstats.stellar_flags`.
* ``reference_change``: some band of the object has detections on more than one reference image
  (``rfid``). ALeRCE's test (last ``mjdendref`` after the first detection) needs ``jdendref``, which the
  detections table does not carry.
* ``g_r_max`` = g ``magmin`` - r ``magmin`` (colour at peak brightness), ``g_r_mean`` = g ``magmean`` - r
  ``magmean``, and their ``_corr`` versions, from the magstats rows (ZTF fid 1/2, LSST fid 5/6); NaN unless
  the object has both bands.
* ``deltajd = lastmjd - firstmjd`` (days); ``night`` is the ``night`` of the last detection.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.correction import as_float, require_columns
from features.magstats import empty_frame, sort_in_time, stellar_flags

ASTROMETRIC_FLOOR_ARCSEC = 0.07
DEFAULT_FWHM_ARCSEC = 2.0
DEFAULT_SNR = 5.0
PIXEL_SCALE_ARCSEC = {"ztf": 1.012, "lsst": 0.2, "atlas": 1.86}
G_R_FIDS = {1: "g", 2: "r", 5: "g", 6: "r"}

OBJECT_COLUMNS = (
    "oid",
    "survey",
    "ndet",
    "firstmjd",
    "lastmjd",
    "deltajd",
    "meanra",
    "meandec",
    "sigmara",
    "sigmadec",
    "corrected",
    "stellar",
    "diffpos",
    "reference_change",
    "g_r_max",
    "g_r_max_corr",
    "g_r_mean",
    "g_r_mean_corr",
    "night",
)
REQUIRED_DETECTIONS = (
    "oid",
    "fid",
    "survey",
    "mjd",
    "night",
    "ra",
    "dec",
    "sigmapsf",
    "isdiffpos",
    "rfid",
    "corrected",
    "distnr",
    "chinr",
    "sharpnr",
    "sgscore1",
    "distpsnr1",
)
REQUIRED_MAGSTATS = ("oid", "fid", "magmin", "magmean", "magmin_corr", "magmean_corr")
_BOOL = ("corrected", "stellar", "diffpos", "reference_change")


def position_sigma_arcsec(sigmapsf: np.ndarray, fwhm_arcsec: np.ndarray) -> np.ndarray:
    """Per-detection positional uncertainty (arcsec) used for the weights; see the module docstring."""
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(sigmapsf > 0, 1.0857 / sigmapsf, DEFAULT_SNR)
        theta = np.where(fwhm_arcsec > 0, fwhm_arcsec, DEFAULT_FWHM_ARCSEC) / 2.3548
    return np.sqrt(ASTROMETRIC_FLOOR_ARCSEC**2 + (theta / snr) ** 2)


def _fwhm_arcsec(s: pd.DataFrame) -> np.ndarray:
    if "fwhm" not in s.columns:
        return np.full(len(s), np.nan)
    scale = s["survey"].map(PIXEL_SCALE_ARCSEC)
    return as_float(s["fwhm"]) * as_float(scale)


def _positions(s: pd.DataFrame, first_rows: np.ndarray) -> pd.DataFrame:
    """Weighted mean position and scatter per object; ``s`` is sorted by oid, rows of an oid contiguous."""
    ra, dec = np.radians(as_float(s["ra"])), np.radians(as_float(s["dec"]))
    w = position_sigma_arcsec(as_float(s["sigmapsf"]), _fwhm_arcsec(s)) ** -2.0
    w = np.where(np.isfinite(ra) & np.isfinite(dec), w, 0.0)
    cos_dec = np.cos(dec)
    vec = np.column_stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)])
    vec = np.where(w[:, None] > 0, vec, 0.0)
    sums = np.add.reduceat(vec * w[:, None], first_rows, axis=0)
    meanra = np.degrees(np.arctan2(sums[:, 1], sums[:, 0])) % 360.0
    meandec = np.degrees(np.arctan2(sums[:, 2], np.hypot(sums[:, 0], sums[:, 1])))
    counts = np.diff(np.append(first_rows, len(s)))
    mra, mdec = np.repeat(meanra, counts), np.repeat(meandec, counts)
    dra = ((np.degrees(ra) - mra + 180.0) % 360.0 - 180.0) * np.cos(np.radians(mdec)) * 3600.0
    ddec = (np.degrees(dec) - mdec) * 3600.0
    v1 = np.add.reduceat(w, first_rows)
    v2 = np.add.reduceat(w**2, first_rows)
    n_used = np.add.reduceat((w > 0).astype(np.int64), first_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = v1 - v2 / v1  # reliability-weights correction; undefined for a single detection
        norm = np.where((n_used > 1) & (norm > 0), norm, np.nan)
        sigmara = np.sqrt(np.add.reduceat(w * np.nan_to_num(dra) ** 2, first_rows) / norm)
        sigmadec = np.sqrt(np.add.reduceat(w * np.nan_to_num(ddec) ** 2, first_rows) / norm)
    no_weight = v1 <= 0
    meanra[no_weight] = meandec[no_weight] = np.nan
    return pd.DataFrame({"meanra": meanra, "meandec": meandec, "sigmara": sigmara, "sigmadec": sigmadec})


def _colours(magstats_df: pd.DataFrame, oids: pd.Index) -> pd.DataFrame:
    require_columns(magstats_df, REQUIRED_MAGSTATS, "object_stats() magstats_df")
    out = pd.DataFrame(index=oids)
    if magstats_df.empty:
        for name in ("g_r_max", "g_r_max_corr", "g_r_mean", "g_r_mean_corr"):
            out[name] = np.nan
        return out
    ms = magstats_df.assign(band=magstats_df["fid"].map(G_R_FIDS)).dropna(subset=["band"])
    cols = ["magmin", "magmean", "magmin_corr", "magmean_corr"]
    wide = ms.pivot_table(index="oid", columns="band", values=cols, aggfunc="first", dropna=False)
    pairs = {
        "g_r_max": "magmin",
        "g_r_max_corr": "magmin_corr",
        "g_r_mean": "magmean",
        "g_r_mean_corr": "magmean_corr",
    }
    for name, col in pairs.items():
        if (col, "g") in wide.columns and (col, "r") in wide.columns:
            out[name] = (wide[(col, "g")] - wide[(col, "r")]).reindex(oids).astype("float64")
        else:
            out[name] = np.nan
    return out


def object_stats(detections_corrected: pd.DataFrame, magstats_df: pd.DataFrame) -> pd.DataFrame:
    """One row per ``oid`` with the ``objects`` columns of docs/data-model.md (rules in the module docstring)."""
    require_columns(detections_corrected, REQUIRED_DETECTIONS, "object_stats()")
    if detections_corrected.empty:
        out = empty_frame(OBJECT_COLUMNS)
        for col in _BOOL:
            out[col] = out[col].astype("bool")
        return out

    s = sort_in_time(detections_corrected, ["oid"])
    is_first = ~s["oid"].duplicated(keep="first").to_numpy()
    is_last = ~s["oid"].duplicated(keep="last").to_numpy()
    first_rows = np.flatnonzero(is_first)
    first, last = s[is_first], s[is_last]
    oids = pd.Index(first["oid"].to_numpy(), name="oid")

    out = pd.DataFrame({"oid": first["oid"].to_numpy(), "survey": first["survey"].to_numpy()})
    out["ndet"] = np.diff(np.append(first_rows, len(s))).astype("int64")
    out["firstmjd"] = as_float(first["mjd"])
    out["lastmjd"] = as_float(last["mjd"])
    out["deltajd"] = out["lastmjd"] - out["firstmjd"]
    pos = _positions(s, first_rows)
    for col in pos.columns:
        out[col] = pos[col].to_numpy()
    out["corrected"] = first["corrected"].to_numpy(dtype=bool)
    out["stellar"] = stellar_flags(detections_corrected)["stellar"].reindex(oids).to_numpy(dtype=bool)
    out["diffpos"] = as_float(first["isdiffpos"]) > 0
    nrfid = s.groupby(["oid", "fid"], sort=False)["rfid"].nunique()
    out["reference_change"] = (nrfid > 1).groupby(level="oid").any().reindex(oids).to_numpy(dtype=bool)
    colours = _colours(magstats_df, oids)
    for col in colours.columns:
        out[col] = colours[col].to_numpy()
    out["night"] = last["night"].to_numpy().astype("int32")
    return out[list(OBJECT_COLUMNS)]
