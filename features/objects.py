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

Like :mod:`features.magstats`, computed on rows sorted once (``features.grouping``), without pandas group-bys.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alert_broker.features.correction import as_float, require_columns
from alert_broker.features.grouping import lookup, take, take_column, value_codes
from alert_broker.features.magstats import empty_frame, object_segments, stellar_arrays

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


def _fwhm_arcsec(df: pd.DataFrame) -> np.ndarray:
    if "fwhm" not in df.columns:
        return np.full(len(df), np.nan)
    survey, names = pd.factorize(df["survey"])
    scale = np.array([PIXEL_SCALE_ARCSEC.get(name, np.nan) for name in names] + [np.nan])
    return as_float(df["fwhm"]) * scale[survey]  # code -1 (null survey) takes the trailing NaN


def _positions(
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    sigmapsf: np.ndarray,
    fwhm_arcsec: np.ndarray,
    first_rows: np.ndarray,
) -> dict[str, np.ndarray]:
    """Weighted mean position and scatter per object; inputs sorted by oid, rows of an oid contiguous."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    w = position_sigma_arcsec(sigmapsf, fwhm_arcsec) ** -2.0
    w = np.where(np.isfinite(ra) & np.isfinite(dec), w, 0.0)
    cos_dec = np.cos(dec)
    vec = np.column_stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)])
    vec = np.where(w[:, None] > 0, vec, 0.0)
    sums = np.add.reduceat(vec * w[:, None], first_rows, axis=0)
    meanra = np.degrees(np.arctan2(sums[:, 1], sums[:, 0])) % 360.0
    meandec = np.degrees(np.arctan2(sums[:, 2], np.hypot(sums[:, 0], sums[:, 1])))
    counts = np.diff(np.append(first_rows, len(ra)))
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
    return {"meanra": meanra, "meandec": meandec, "sigmara": sigmara, "sigmadec": sigmadec}


def _reference_change(df: pd.DataFrame, oid_code: np.ndarray, n_objects: int) -> np.ndarray:
    """Per object: some band has detections on more than one (non-null) reference image ``rfid``."""
    fid_code = value_codes(df["fid"])  # a null fid belongs to no band, as in a pandas group-by
    rfid = value_codes(df["rfid"])
    ok = (fid_code >= 0) & (rfid >= 0)
    n_fids = int(fid_code.max()) + 1
    band = oid_code[ok] * n_fids + fid_code[ok]
    low = np.full(n_objects * n_fids, np.iinfo(np.int64).max)
    high = np.full(n_objects * n_fids, -1)
    np.minimum.at(low, band, rfid[ok])
    np.maximum.at(high, band, rfid[ok])
    two_references = (high >= 0) & (high != low)  # two distinct codes = two distinct rfid
    return two_references.reshape(n_objects, n_fids).any(axis=1)


def _first_by_group(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """First non-NaN value of each group in row order (pandas ``first``), NaN where the group has none."""
    rows = np.flatnonzero((group >= 0) & ~np.isnan(values))
    out = np.full(n_groups, np.nan)
    groups, first = np.unique(group[rows], return_index=True)
    out[groups] = values[rows[first]]
    return out


def _colours(magstats_df: pd.DataFrame, oids: pd.Index) -> dict[str, np.ndarray]:
    require_columns(magstats_df, REQUIRED_MAGSTATS, "object_stats() magstats_df")
    pairs = {
        "g_r_max": "magmin",
        "g_r_max_corr": "magmin_corr",
        "g_r_mean": "magmean",
        "g_r_mean_corr": "magmean_corr",
    }
    if magstats_df.empty:
        return {name: np.full(len(oids), np.nan) for name in pairs}
    fid = magstats_df["fid"]
    if pd.api.types.is_numeric_dtype(fid.dtype):
        f = as_float(fid)
        is_g, is_r = (np.isin(f, [k for k, v in G_R_FIDS.items() if v == b]) for b in ("g", "r"))
    else:
        names = fid.map(G_R_FIDS).to_numpy(dtype=object)
        is_g, is_r = names == "g", names == "r"
    band = np.where(is_g, 0, np.where(is_r, 1, -1))
    obj = lookup(oids, magstats_df["oid"])
    group = np.where((band >= 0) & (obj >= 0), obj * 2 + band, -1)
    out = {}
    for name, col in pairs.items():
        per_band = _first_by_group(group, as_float(magstats_df[col]), 2 * len(oids))
        out[name] = per_band[0::2] - per_band[1::2]
    return out


def object_stats(detections_corrected: pd.DataFrame, magstats_df: pd.DataFrame) -> pd.DataFrame:
    """One row per ``oid`` with the ``objects`` columns of docs/data-model.md (rules in the module docstring)."""
    require_columns(detections_corrected, REQUIRED_DETECTIONS, "object_stats()")
    if detections_corrected.empty:
        out = empty_frame(OBJECT_COLUMNS)
        for col in _BOOL:
            out[col] = out[col].astype("bool")
        return out
    df = detections_corrected
    oid_code, oids, seg = object_segments(df, "object_stats()")
    order, first, last = seg.order, seg.first, seg.last

    mjd = as_float(df["mjd"])
    out: dict[str, np.ndarray] = {
        "oid": take_column(df["oid"], first),
        "survey": take_column(df["survey"], first),
        "ndet": seg.sizes.astype("int64"),
        "firstmjd": mjd[first],
        "lastmjd": mjd[last],
    }
    out["deltajd"] = out["lastmjd"] - out["firstmjd"]
    columns = (as_float(df["ra"]), as_float(df["dec"]), as_float(df["sigmapsf"]), _fwhm_arcsec(df))
    out.update(_positions(*(c[order] for c in columns), seg.starts))
    out["corrected"] = df["corrected"].array.take(first).to_numpy(dtype=bool)
    out["stellar"] = stellar_arrays(df, seg)["stellar"]
    out["diffpos"] = as_float(df["isdiffpos"])[first] > 0
    out["reference_change"] = _reference_change(df, oid_code, len(oids))
    out.update(_colours(magstats_df, oids))
    out["night"] = take(df["night"], last).astype("int32")
    return pd.DataFrame({c: out[c] for c in OBJECT_COLUMNS})
