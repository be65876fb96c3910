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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.correction import DISTANCE_THRESHOLD, SENTINEL, as_float, require_columns

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


def stellar_flags(detections: pd.DataFrame) -> pd.DataFrame:
    """Per object (index ``oid``): ``nearZTF``, ``nearPS1``, ``stellarZTF``, ``stellarPS1``, ``stellar``.

    See the module docstring for the rule and the PS1 fallback.
    """
    require_columns(detections, REQUIRED_STELLAR, "stellar_flags()")
    cols = ["oid", "mjd", "distnr", "chinr", "sharpnr", "sgscore1", "distpsnr1"]
    if "candid" in detections.columns:
        cols.append("candid")
    s = sort_in_time(detections[cols], ["oid"])
    first = s[~s["oid"].duplicated()]
    with_ps1 = s[s["distpsnr1"].notna()]
    ps1 = with_ps1[~with_ps1["oid"].duplicated()].set_index("oid")[["sgscore1", "distpsnr1"]]
    ps1 = ps1.reindex(first["oid"])

    distnr, chinr, sharpnr = (as_float(first[c]) for c in ("distnr", "chinr", "sharpnr"))
    distpsnr1, sgscore1 = as_float(ps1["distpsnr1"]), as_float(ps1["sgscore1"])
    near_ztf = _in_range(distnr, 0.0, DISTANCE_THRESHOLD)
    near_ps1 = _in_range(distpsnr1, 0.0, DISTANCE_THRESHOLD)
    with np.errstate(invalid="ignore"):
        stellar_ps1 = sgscore1 > SCORE_THRESHOLD
    stellar_ztf = _in_range(chinr, 0.0, CHINR_THRESHOLD) & _in_range(sharpnr, SHARPNR_MIN, SHARPNR_MAX, False)
    stellar = near_ztf & ((near_ps1 & stellar_ps1) | (~near_ps1 & stellar_ztf))
    return pd.DataFrame(
        {
            "nearZTF": near_ztf,
            "nearPS1": near_ps1,
            "stellarZTF": stellar_ztf,
            "stellarPS1": stellar_ps1,
            "stellar": stellar,
        },
        index=pd.Index(first["oid"].to_numpy(), name="oid"),
    )


def sort_in_time(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows grouped by ``keys`` and in time order inside each group, with a fresh RangeIndex."""
    by = [*keys, "mjd", "candid"] if "candid" in df.columns else [*keys, "mjd"]
    return df.sort_values(by, kind="stable", na_position="last").reset_index(drop=True)


def empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    """An empty frame with the contract's columns and dtypes (float64 unless stated)."""
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES.get(c, "float64")) for c in columns})


def _dmdt(firsts: pd.DataFrame, non_detections: pd.DataFrame | None) -> pd.DataFrame:
    """dm/dt from the non-detections older than the first detection by more than DMDT_MIN_DT days."""
    cols = ["dmdt_first", "dm_first", "sigmadm_first", "dt_first"]
    out = pd.DataFrame(np.nan, index=firsts.index, columns=cols)
    if non_detections is None or non_detections.empty:
        return out
    require_columns(non_detections, REQUIRED_NON_DETECTIONS, "magstats() non_detections")
    nd = pd.DataFrame(
        {
            "oid": non_detections["oid"].to_numpy(),
            "fid": non_detections["fid"].to_numpy(),
            "nd_mjd": as_float(non_detections["mjd"]),
            "diffmaglim": as_float(non_detections["diffmaglim"]),
        }
    )
    f = pd.DataFrame(
        {
            "oid": firsts["oid"].to_numpy(),
            "fid": firsts["fid"].to_numpy(),
            "row": np.arange(len(firsts)),
            "mjd": as_float(firsts["mjd"]),
            "mag": as_float(firsts["magpsf"]),
            "err": as_float(firsts["sigmapsf"]),
        }
    )
    nd["fid"] = nd["fid"].astype(f["fid"].dtype)
    j = f.merge(nd, on=["oid", "fid"], how="inner")
    j["dt"] = j["mjd"] - j["nd_mjd"]
    j = j[(j["dt"] > DMDT_MIN_DT) & np.isfinite(j["diffmaglim"])]
    if j.empty:
        return out
    j = j.assign(dmdt=(j["mag"] + j["err"] - j["diffmaglim"]) / j["dt"])
    j = j[np.isfinite(j["dmdt"])]
    best = j.sort_values(["row", "dmdt"], kind="stable", na_position="last").drop_duplicates("row")
    rows = best["row"].to_numpy()
    out.iloc[rows, 0] = best["dmdt"].to_numpy()
    out.iloc[rows, 1] = (best["mag"] - best["diffmaglim"]).to_numpy()
    out.iloc[rows, 2] = best["err"].to_numpy()
    out.iloc[rows, 3] = best["dt"].to_numpy()
    return out


def _stats(values: pd.Series, keys: list[pd.Series], index: pd.MultiIndex) -> pd.DataFrame:
    g = values.groupby(keys, sort=False)
    agg = g.agg(["mean", "median", "max", "min", "std", "count"]).reindex(index)
    agg.loc[agg["count"] == 1, "std"] = 0.0
    return agg


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

    s = sort_in_time(detections_corrected, ["oid", "fid"])
    keys = [s["oid"], s["fid"]]
    first = s[~s.duplicated(["oid", "fid"], keep="first")]
    last = s[~s.duplicated(["oid", "fid"], keep="last")]
    index = pd.MultiIndex.from_frame(first[["oid", "fid"]])

    out = pd.DataFrame(
        {
            "oid": first["oid"].to_numpy(),
            "fid": first["fid"].to_numpy(),
            "survey": first["survey"].to_numpy(),
        }
    )
    counts = s.groupby(keys, sort=False).agg(ndet=("mjd", "size"), ndubious=("dubious", "sum")).reindex(index)
    out["ndet"] = counts["ndet"].to_numpy().astype("int64")
    out["ndubious"] = counts["ndubious"].to_numpy().astype("int64")

    raw = _stats(pd.Series(as_float(s["magpsf"])), keys, index)
    for stat, col in zip(_STATS, ("mean", "median", "max", "min", "std"), strict=True):
        out[f"mag{stat}"] = raw[col].to_numpy()
    out["maglast"] = as_float(last["magpsf"])
    out["magfirst"] = as_float(first["magpsf"])

    mag_corr = as_float(s["magpsf_corr"])
    valid = s["corrected"].to_numpy(dtype=bool) & np.isfinite(mag_corr) & (mag_corr != SENTINEL)
    sv = s[valid]
    vkeys = [sv["oid"], sv["fid"]]
    corr = _stats(pd.Series(mag_corr[valid], index=sv.index), vkeys, index)
    for stat, col in zip(_STATS, ("mean", "median", "max", "min", "std"), strict=True):
        out[f"mag{stat}_corr"] = corr[col].to_numpy()
    vlast = sv[~sv.duplicated(["oid", "fid"], keep="last")].set_index(["oid", "fid"])["magpsf_corr"]
    vfirst = sv[~sv.duplicated(["oid", "fid"], keep="first")].set_index(["oid", "fid"])["magpsf_corr"]
    out["maglast_corr"] = as_float(vlast.reindex(index))
    out["magfirst_corr"] = as_float(vfirst.reindex(index))

    out["firstmjd"] = as_float(first["mjd"])
    out["lastmjd"] = as_float(last["mjd"])
    out["corrected"] = first["corrected"].to_numpy(dtype=bool)
    flags = stellar_flags(detections_corrected)
    out["stellar"] = flags["stellar"].reindex(out["oid"]).to_numpy(dtype=bool)
    saturated = pd.Series(mag_corr[valid] < SATURATION_THRESHOLD, index=sv.index).groupby(vkeys).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["saturation_rate"] = as_float(saturated.reindex(index)) / corr["count"].to_numpy()

    dmdt = _dmdt(first, non_detections)
    for col in dmdt.columns:
        out[col] = dmdt[col].to_numpy()
    out["night"] = last["night"].to_numpy().astype("int32")

    if alerce_extras:
        for col in STELLAR_COLUMNS[:4]:
            out[col] = flags[col].reindex(out["oid"]).to_numpy(dtype=bool)
        out["nrfid"] = s.groupby(keys, sort=False)["rfid"].nunique().reindex(index).to_numpy().astype("int64")
        out["sigmapsf_first"] = as_float(first["sigmapsf"])
        ap = _stats(pd.Series(as_float(s["magap"])), keys, index)
        for stat in ("mean", "median", "max", "min"):
            out[f"magap_{stat}"] = ap[stat].to_numpy()
        out["magap_first"] = as_float(first["magap"])
        out["magap_last"] = as_float(last["magap"])
    return out[list(columns)]
