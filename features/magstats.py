"""Magnitude statistics per (object, band) and the ``stellar`` flag (Förster et al. 2021, sec. 4.4).

Rules, as ``docs/correction.md`` states them (not as ALeRCE's code does; see tests/unit/test_alerce_reference.py):

* **First / last** detection of an (object, band): smallest / largest ``mjd`` (ties: ``candid``).
* ``corrected``: whether the first detection of the band was corrected.
* ``stellar`` is a property of the *object*, decided on its first detection (any band) and repeated on every
  band's row: near a ZTF reference source (``0 <= distnr < 1.4``) and either near a PS1 source
  (``0 <= distpsnr1 < 1.4``) with ``sgscore1 > 0.4``, or not near a PS1 source and point-like in the reference
  (``0 <= chinr < 2`` and ``-0.13 < sharpnr < 0.1``). -999 means "no source" and never counts as near; a chi
  statistic is non-negative, so a negative ``chinr`` is the no-source marker and is not point-like.
* **PS1 fallback**: detections taken from ``prv_candidates`` carry no PS1 neighbour (null ``distpsnr1`` /
  ``sgscore1``). ``nearPS1`` / ``stellarPS1`` therefore come from the earliest detection of the object whose
  ``distpsnr1`` is not null (the PS1 neighbour is a property of the position, not of the epoch); the ZTF
  reference quantities always come from the first detection. An object with no PS1 information at all is
  treated as "not near a PS1 source".
* Magnitude statistics ``mag*`` use ``magpsf`` of every detection; ``mag*_corr`` use only detections with a
  valid corrected magnitude (corrected, finite, not the 100 sentinel), so ``magfirst_corr`` is the first such
  detection. ``magsigma`` is the sample standard deviation (ddof=1), 0 for a single detection (ALeRCE's choice).
* ``saturation_rate``: fraction of valid corrected magnitudes brighter than 13.2 (NaN when none).
* ``dmdt_first``: over the non-detections of the band older than the first detection by more than 0.5 day,
  the minimum of ``(magfirst + sigmapsf_first - diffmaglim) / dt`` (the most conservative brightening rate,
  the error taken in the pessimistic direction); ``dm_first = magfirst - diffmaglim`` and ``dt_first`` of that
  non-detection; ``sigmadm_first = sigmapsf_first`` (a limit carries no quoted error, so this is the error of
  ``dm_first``; ALeRCE stores ``sigmapsf_first - diffmaglim``, which is not an uncertainty).
* ``night`` / ``lastmjd`` come from the same (last) detection; ``night`` is that row's ``night`` column.

Implementation: one time sort and numpy segment reductions (``features.grouping``) instead of pandas
group-bys, because the broker calls this once per region per micro-batch on small frames where pandas' fixed
cost dominated; the numbers are the pandas group-by's, bit for bit (tests/unit/test_grouping.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alert_broker.features.correction import DISTANCE_THRESHOLD, SENTINEL, as_float, require_columns
from alert_broker.features.grouping import (
    Segments,
    distinct_counts,
    first_true,
    group_order,
    key_codes,
    lookup,
    pick,
    segment_stats,
    segments,
    take,
    take_column,
    time_order,
    value_codes,
)

SCORE_THRESHOLD = 0.4
CHINR_THRESHOLD = 2.0
SHARPNR_MIN = -0.13
SHARPNR_MAX = 0.1
SATURATION_THRESHOLD = 13.2
DMDT_MIN_DT = 0.5

STELLAR_COLUMNS = ("nearZTF", "nearPS1", "stellarZTF", "stellarPS1", "stellar")
REQUIRED_STELLAR = ("oid", "mjd", "distnr", "chinr", "sharpnr", "sgscore1", "distpsnr1")
REQUIRED_DETECTIONS = (
    "oid",
    "fid",
    "survey",
    "mjd",
    "night",
    "magpsf",
    "sigmapsf",
    "isdiffpos",
    "distnr",
    "chinr",
    "sharpnr",
    "sgscore1",
    "distpsnr1",
    "magpsf_corr",
    "corrected",
    "dubious",
)
REQUIRED_NON_DETECTIONS = ("oid", "fid", "mjd", "diffmaglim")

_STATS = ("mean", "median", "max", "min", "sigma")
MAGSTATS_COLUMNS = (
    ("oid", "fid", "survey", "ndet", "ndubious")
    + tuple(f"mag{s}" for s in _STATS)
    + ("maglast", "magfirst")
    + tuple(f"mag{s}_corr" for s in _STATS)
    + ("maglast_corr", "magfirst_corr", "firstmjd", "lastmjd", "corrected", "stellar", "saturation_rate")
    + ("dmdt_first", "dm_first", "sigmadm_first", "dt_first", "night")
)
#: ALeRCE-only columns (names as in ALeRCE's lc_correction magstats), added with ``alerce_extras=True``.
EXTRA_COLUMNS = ("nearZTF", "nearPS1", "stellarZTF", "stellarPS1", "nrfid", "sigmapsf_first") + tuple(
    f"magap_{s}" for s in ("mean", "median", "max", "min", "first", "last")
)
_DTYPES = {
    "oid": "str",
    "fid": "int16",
    "survey": "str",
    "ndet": "int64",
    "ndubious": "int64",
    "corrected": "bool",
    "stellar": "bool",
    "night": "int32",
    "nearZTF": "bool",
    "nearPS1": "bool",
    "stellarZTF": "bool",
    "stellarPS1": "bool",
    "nrfid": "int64",
}


def _in_range(x: np.ndarray, low: float, high: float, low_inclusive: bool = True) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        above = x >= low if low_inclusive else x > low
        return above & (x < high)


def object_segments(
    detections: pd.DataFrame, what: str, in_time: np.ndarray | None = None
) -> tuple[np.ndarray, pd.Index, Segments]:
    """Per-row ``oid`` codes, the distinct oids (ascending), and the rows grouped by oid in time order.

    ``in_time`` is :func:`features.grouping.time_order` of the frame when the caller already has it.
    """
    codes, oids = key_codes(detections["oid"], what)
    return codes, oids, segments(codes, time_order(detections) if in_time is None else in_time)


def stellar_arrays(detections: pd.DataFrame, by_object: Segments) -> dict[str, np.ndarray]:
    """The ``STELLAR_COLUMNS`` flags of each group of ``by_object`` (rows grouped by oid, in time order)."""
    first = by_object.first
    distnr, chinr, sharpnr = (as_float(detections[c])[first] for c in ("distnr", "chinr", "sharpnr"))
    # PS1 fallback: the earliest detection of the object that carries a PS1 neighbour.
    all_distpsnr1 = as_float(detections["distpsnr1"])
    with_ps1 = first_true(~np.isnan(all_distpsnr1[by_object.order]), by_object)
    rows = by_object.order[np.maximum(with_ps1, 0)]
    distpsnr1 = np.where(with_ps1 >= 0, all_distpsnr1[rows], np.nan)
    sgscore1 = np.where(with_ps1 >= 0, as_float(detections["sgscore1"])[rows], np.nan)

    near_ztf = _in_range(distnr, 0.0, DISTANCE_THRESHOLD)
    near_ps1 = _in_range(distpsnr1, 0.0, DISTANCE_THRESHOLD)
    with np.errstate(invalid="ignore"):
        stellar_ps1 = sgscore1 > SCORE_THRESHOLD
    stellar_ztf = _in_range(chinr, 0.0, CHINR_THRESHOLD) & _in_range(sharpnr, SHARPNR_MIN, SHARPNR_MAX, False)
    stellar = near_ztf & ((near_ps1 & stellar_ps1) | (~near_ps1 & stellar_ztf))
    return dict(zip(STELLAR_COLUMNS, (near_ztf, near_ps1, stellar_ztf, stellar_ps1, stellar), strict=True))


def stellar_flags(detections: pd.DataFrame) -> pd.DataFrame:
    """Per object (index ``oid``): ``nearZTF``, ``nearPS1``, ``stellarZTF``, ``stellarPS1``, ``stellar``.

    See the module docstring for the rule and the PS1 fallback.
    """
    require_columns(detections, REQUIRED_STELLAR, "stellar_flags()")
    _, _, by_object = object_segments(detections, "stellar_flags()")
    if len(detections) == 0:  # an empty object array makes an object (not str) index, as it always did
        flags = {c: np.zeros(0, dtype=bool) for c in STELLAR_COLUMNS}
        return pd.DataFrame(flags, index=pd.Index(take(detections["oid"], by_object.first), name="oid"))
    oids = take_column(detections["oid"], by_object.first)
    return pd.DataFrame(stellar_arrays(detections, by_object), index=pd.Index(oids, name="oid"))


def empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    """An empty frame with the contract's columns and dtypes (float64 unless stated)."""
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES.get(c, "float64")) for c in columns})


def _dmdt(
    non_detections: pd.DataFrame | None,
    group_keys: np.ndarray,
    oids: pd.Index,
    fids: pd.Index,
    firsts: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """dm/dt from the non-detections older than the first detection by more than DMDT_MIN_DT days.

    ``group_keys`` (ascending) are ``oid_code * len(fids) + fid_code`` of the (oid, fid) groups; ``firsts``
    holds ``fid`` (its dtype is the join dtype), ``mjd``, ``mag`` and ``err`` of each group's first detection.
    Among equal rates the earliest non-detection row wins (the order of a pandas inner merge).
    """
    n_groups = len(group_keys)
    out = {c: np.full(n_groups, np.nan) for c in ("dmdt_first", "dm_first", "sigmadm_first", "dt_first")}
    if non_detections is None or non_detections.empty:
        return out
    require_columns(non_detections, REQUIRED_NON_DETECTIONS, "magstats() non_detections")
    nd_fid = non_detections["fid"].to_numpy().astype(firsts["fid"].dtype)
    oid_code = lookup(oids, non_detections["oid"])
    fid_code = fids.get_indexer(nd_fid)
    group_of_key = np.full(len(oids) * len(fids), -1)
    group_of_key[group_keys] = np.arange(n_groups)
    rows = np.flatnonzero((oid_code >= 0) & (fid_code >= 0))
    g = group_of_key[oid_code[rows] * len(fids) + fid_code[rows]]
    rows, g = rows[g >= 0], g[g >= 0]
    limit = as_float(non_detections["diffmaglim"])[rows]
    dt = firsts["mjd"][g] - as_float(non_detections["mjd"])[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = (firsts["mag"][g] + firsts["err"][g] - limit) / dt
        keep = np.flatnonzero((dt > DMDT_MIN_DT) & np.isfinite(limit) & np.isfinite(rate))
    if len(keep) == 0:
        return out
    g, limit, dt, rate, rows = g[keep], limit[keep], dt[keep], rate[keep], rows[keep]
    # Per group the smallest rate; among equal rates the earliest non-detection (rows ascend already).
    by_group = group_order(g, n_groups)
    gs = g[by_group]
    starts = np.flatnonzero(np.concatenate(([True], gs[1:] != gs[:-1])))
    lowest = np.minimum.reduceat(rate[by_group], starts)
    is_lowest = rate[by_group] == np.repeat(lowest, np.diff(np.append(starts, len(gs))))
    first_lowest = np.minimum.reduceat(np.where(is_lowest, np.arange(len(gs)), len(gs)), starts)
    best = by_group[first_lowest]
    gb = g[best]
    out["dmdt_first"][gb] = rate[best]
    out["dm_first"][gb] = firsts["mag"][gb] - limit[best]
    out["sigmadm_first"][gb] = firsts["err"][gb]
    out["dt_first"][gb] = dt[best]
    return out


def magstats(
    detections_corrected: pd.DataFrame,
    non_detections: pd.DataFrame | None,
    *,
    alerce_extras: bool = False,
) -> pd.DataFrame:
    """One row per (oid, fid) with the ``magstats`` columns of docs/data-model.md.

    ``detections_corrected`` is the output of :func:`features.correct`. ``non_detections`` may be None or
    empty. With ``alerce_extras`` the ALeRCE-only columns of ``EXTRA_COLUMNS`` are appended (needs ``rfid``
    and ``magap``).
    """
    required = REQUIRED_DETECTIONS + (("rfid", "magap") if alerce_extras else ())
    require_columns(detections_corrected, required, "magstats()")
    columns = MAGSTATS_COLUMNS + (EXTRA_COLUMNS if alerce_extras else ())
    if detections_corrected.empty:
        return empty_frame(columns)
    df = detections_corrected

    in_time = time_order(df)
    oid_code, oids, by_object = object_segments(df, "magstats()", in_time)
    fid_code, fids = key_codes(df["fid"], "magstats()")
    band_key = oid_code * len(fids) + fid_code
    seg = segments(band_key, in_time)
    order, first, last = seg.order, seg.first, seg.last

    out: dict[str, np.ndarray] = {
        "oid": take_column(df["oid"], first),
        "fid": take(df["fid"], first),
        "survey": take_column(df["survey"], first),
        "ndet": seg.sizes.astype("int64"),
        "ndubious": np.add.reduceat(df["dubious"].to_numpy(dtype="int64", na_value=0)[order], seg.starts),
    }
    magpsf = as_float(df["magpsf"])
    raw = segment_stats(magpsf[order], seg)
    for stat, col in zip(_STATS, ("mean", "median", "max", "min", "std"), strict=True):
        out[f"mag{stat}"] = raw[col]
    out["maglast"], out["magfirst"] = magpsf[last], magpsf[first]

    # Valid corrected magnitudes only: invalid ones become NaN, which every statistic skips.
    mag_corr = as_float(df["magpsf_corr"])[order]
    valid = df["corrected"].to_numpy(dtype=bool)[order] & np.isfinite(mag_corr) & (mag_corr != SENTINEL)
    mag_corr = np.where(valid, mag_corr, np.nan)
    corr = segment_stats(mag_corr, seg, nan_rows_dropped=True)
    for stat, col in zip(_STATS, ("mean", "median", "max", "min", "std"), strict=True):
        out[f"mag{stat}_corr"] = corr[col]
    out["maglast_corr"] = pick(mag_corr, first_true(valid, seg, last=True))
    out["magfirst_corr"] = pick(mag_corr, first_true(valid, seg))

    mjd = as_float(df["mjd"])
    out["firstmjd"], out["lastmjd"] = mjd[first], mjd[last]
    out["corrected"] = df["corrected"].array.take(first).to_numpy(dtype=bool)
    group_oid = band_key[first] // len(fids)
    flags = stellar_arrays(df, by_object)
    out["stellar"] = flags["stellar"][group_oid]
    saturated = np.add.reduceat((valid & (mag_corr < SATURATION_THRESHOLD)).astype(np.int64), seg.starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["saturation_rate"] = saturated / corr["count"]

    sigmapsf = as_float(df["sigmapsf"])
    firsts = {"fid": out["fid"], "mjd": out["firstmjd"], "mag": out["magfirst"], "err": sigmapsf[first]}
    out.update(_dmdt(non_detections, band_key[first], oids, fids, firsts))
    out["night"] = take(df["night"], last).astype("int32")

    if alerce_extras:
        for col in STELLAR_COLUMNS[:4]:
            out[col] = flags[col][group_oid]
        group_of_row = np.empty(len(df), dtype=np.int64)
        group_of_row[order] = seg.ids()
        out["nrfid"] = distinct_counts(group_of_row, value_codes(df["rfid"]), len(first))
        out["sigmapsf_first"] = sigmapsf[first]
        magap = as_float(df["magap"])
        ap = segment_stats(magap[order], seg)
        for stat in ("mean", "median", "max", "min"):
            out[f"magap_{stat}"] = ap[stat]
        out["magap_first"], out["magap_last"] = magap[first], magap[last]
    return pd.DataFrame({c: out[c] for c in columns})
