"""Clean the contract's detections/non-detections and lay them out for the numba kernels.

Layout (CSR): detections sorted by (object, band, mjd); object ``o`` owns two band segments, ``2*o`` (g, fid 1)
and ``2*o + 1`` (r, fid 2), delimited by ``seg_off``. Non-detections use the same segment numbering with their own
offsets. Every kernel then loops over segments inside compiled code.

Cleaning follows ALeRCE's ZTF preprocessing: the magnitude of an object is ``magpsf_corr`` with
``sigmapsf_corr_ext`` when the object is corrected, ``magpsf``/``sigmapsf`` otherwise; detections with a
non-finite value, an error outside (0, 1) mag or rb below ``rb_min`` are dropped (0.3 since lc-features-1.1.0,
ALeRCE's 0.55 before: real variable stars have many genuine detections with 0.3 <= rb < 0.55, 25 % of the points of
ALeRCE's labelled periodic light curves, against ~2 % of simulated ones); of detections sharing (oid, mjd) the one
with the highest rb is kept. Objects qualify with at least ``MIN_DETECTIONS`` detections in g or in r.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BANDS = (1, 2)
MIN_DETECTIONS = 6
#: rb threshold of lc-features-1.1.0 (``RB_MIN_LEGACY`` = ALeRCE's 0.55 for lc-features-1.0.0).
RB_MIN = 0.3
RB_MIN_LEGACY = 0.55
MAX_SIGMA = 1.0
REQUIRED_DETECTION_COLUMNS = ("oid", "mjd", "fid", "magpsf", "sigmapsf")
REQUIRED_NON_DETECTION_COLUMNS = ("oid", "fid", "mjd", "diffmaglim")


@dataclass(frozen=True)
class Batch:
    """Cleaned detections of the qualifying objects, in CSR layout (see module docstring)."""

    oids: np.ndarray  # object ids, sorted; object o is oids[o]
    seg_off: np.ndarray  # int64, 2 * n_objects + 1
    t: np.ndarray  # mjd
    mag: np.ndarray  # magnitude used for features (corrected or not)
    err: np.ndarray  # its error
    mag_raw: np.ndarray  # magpsf (difference magnitude)
    err_raw: np.ndarray  # sigmapsf
    sign: np.ndarray  # isdiffpos as +1 / -1 (0 unknown), float64
    rb: np.ndarray
    sgscore1: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    nd_t: np.ndarray  # non-detections, same segment numbering
    nd_lim: np.ndarray
    nd_off: np.ndarray

    @property
    def n_objects(self) -> int:
        return self.oids.size


def _column(df: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    """A float64 column, or a column of ``default`` when absent; non-numeric values become NaN."""
    if name not in df.columns:
        return np.full(len(df), default, dtype=np.float64)
    col = df[name]
    if col.dtype == object or isinstance(col.dtype, pd.CategoricalDtype):
        col = pd.to_numeric(col, errors="coerce")
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def _isdiffpos(df: pd.DataFrame) -> np.ndarray:
    """+1 / -1 from the contract's int8 (or ZTF's 't'/'f'/'1'/'0' strings); 0 where unknown."""
    if "isdiffpos" not in df.columns:
        return np.ones(len(df))
    col = df["isdiffpos"]
    if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
        s = col.astype("string").str.strip().str.lower()
        out = np.zeros(len(df))
        out[s.isin(["t", "1", "1.0", "+1", "true"]).to_numpy(dtype=bool, na_value=False)] = 1.0
        out[s.isin(["f", "0", "0.0", "-1", "-1.0", "false"]).to_numpy(dtype=bool, na_value=False)] = -1.0
        return out
    v = col.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isnan(v), 0.0, np.where(v > 0, 1.0, -1.0))


def _corrected_objects(
    det: pd.DataFrame, codes: np.ndarray, uniq: np.ndarray, objects: pd.DataFrame | None
) -> np.ndarray:
    """Per object code: is it corrected?

    ``objects.corrected`` decides where the objects table knows the object (ALeRCE's batch mode); otherwise an
    object counts as corrected when all its detections are (ALeRCE's stream mode).
    """
    n = uniq.size
    corrected = np.zeros(n, dtype=bool)
    if "corrected" in det.columns and codes.size:
        corr = det["corrected"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        ok = codes >= 0
        n_true = np.bincount(codes[ok], weights=corr[ok].astype(np.float64), minlength=n)
        n_all = np.bincount(codes[ok], minlength=n)
        corrected = (n_true == n_all) & (n_all > 0)
    if objects is not None and {"oid", "corrected"} <= set(objects.columns):
        table = objects.drop_duplicates("oid").set_index("oid")["corrected"].astype("boolean")
        looked = table.reindex(pd.Index(uniq))
        known = looked.notna().to_numpy()
        corrected = np.where(known, looked.fillna(False).to_numpy(dtype=bool), corrected)
    return corrected


def prepare(
    detections: pd.DataFrame,
    non_detections: pd.DataFrame | None,
    objects: pd.DataFrame | None = None,
    *,
    rb_min: float = RB_MIN,
) -> Batch:
    """Clean and lay out one batch (detections with rb < ``rb_min`` dropped). Raises ValueError when a required
    column is missing."""
    missing = [c for c in REQUIRED_DETECTION_COLUMNS if c not in detections.columns]
    if missing:
        raise ValueError(f"detections lack required columns {missing} (see docs/data-model.md)")
    det = detections
    oid_all = det["oid"].to_numpy()
    codes_all, uniq_all = pd.factorize(oid_all, sort=True)
    n_all = uniq_all.size

    corrected = _corrected_objects(det, codes_all, uniq_all, objects)

    mag_raw = _column(det, "magpsf")
    err_raw = _column(det, "sigmapsf")
    mag_corr = _column(det, "magpsf_corr")
    err_corr = _column(det, "sigmapsf_corr_ext")
    use_corr = corrected[codes_all] & (codes_all >= 0)
    mag = np.where(use_corr, mag_corr, mag_raw)
    err = np.where(use_corr, err_corr, err_raw)
    t = _column(det, "mjd")
    fid = _column(det, "fid")
    rb = _column(det, "rb")

    keep = (
        (codes_all >= 0)
        & np.isin(fid, BANDS)
        & np.isfinite(t)
        & np.isfinite(mag)
        & np.isfinite(err)
        & np.isfinite(mag_raw)
        & np.isfinite(err_raw)
        & (err > 0.0)
        & (err < MAX_SIGMA)
        & ~(rb < rb_min)
    )
    idx = np.flatnonzero(keep)
    codes = codes_all[idx]
    # Deduplicate (oid, mjd): keep the highest rb (then the first row) of each pair.
    rb_key = np.where(np.isnan(rb[idx]), -np.inf, rb[idx])
    order = np.lexsort((np.arange(idx.size), -rb_key, t[idx], codes))
    idx = idx[order]
    codes = codes[order]
    first = np.ones(idx.size, dtype=bool)
    first[1:] = (codes[1:] != codes[:-1]) | (t[idx][1:] != t[idx][:-1])
    idx = idx[first]
    codes = codes[first]
    band = fid[idx].astype(np.int64) - 1

    # Objects with enough detections in g or r.
    counts = np.bincount(2 * codes + band, minlength=2 * n_all).reshape(n_all, 2)
    good = counts.max(axis=1) >= MIN_DETECTIONS
    remap = np.cumsum(good) - 1
    sel = good[codes]
    idx = idx[sel]
    codes = remap[codes[sel]]
    band = band[sel]
    oids = uniq_all[good]
    nobj = oids.size

    order = np.lexsort((t[idx], band, codes))
    idx = idx[order]
    seg = 2 * codes[order] + band[order]
    seg_off = np.zeros(2 * nobj + 1, dtype=np.int64)
    seg_off[1:] = np.cumsum(np.bincount(seg, minlength=2 * nobj))

    nd_t, nd_lim, nd_off = _layout_non_detections(non_detections, oids)
    return Batch(
        oids=np.asarray(oids, dtype=object),
        seg_off=seg_off,
        t=np.ascontiguousarray(t[idx]),
        mag=np.ascontiguousarray(mag[idx]),
        err=np.ascontiguousarray(err[idx]),
        mag_raw=np.ascontiguousarray(mag_raw[idx]),
        err_raw=np.ascontiguousarray(err_raw[idx]),
        sign=np.ascontiguousarray(_isdiffpos(det)[idx]),
        rb=np.ascontiguousarray(rb[idx]),
        sgscore1=np.ascontiguousarray(_column(det, "sgscore1")[idx]),
        ra=np.ascontiguousarray(_column(det, "ra")[idx]),
        dec=np.ascontiguousarray(_column(det, "dec")[idx]),
        nd_t=nd_t,
        nd_lim=nd_lim,
        nd_off=nd_off,
    )


def _layout_non_detections(
    nd: pd.DataFrame | None, oids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-detections of the selected objects, sorted by (segment, mjd), exact duplicates dropped."""
    nseg = 2 * oids.size
    empty = (np.zeros(0), np.zeros(0), np.zeros(nseg + 1, dtype=np.int64))
    if nd is None or len(nd) == 0 or oids.size == 0:
        return empty
    missing = [c for c in REQUIRED_NON_DETECTION_COLUMNS if c not in nd.columns]
    if missing:
        raise ValueError(f"non_detections lack required columns {missing} (see docs/data-model.md)")
    code = pd.Index(oids).get_indexer(nd["oid"].to_numpy())
    fid = _column(nd, "fid")
    t = _column(nd, "mjd")
    lim = _column(nd, "diffmaglim")
    keep = (code >= 0) & np.isin(fid, BANDS) & np.isfinite(t) & np.isfinite(lim)
    seg = 2 * code[keep] + (fid[keep].astype(np.int64) - 1)
    t = t[keep]
    lim = lim[keep]
    order = np.lexsort((lim, t, seg))
    seg, t, lim = seg[order], t[order], lim[order]
    first = np.ones(seg.size, dtype=bool)
    first[1:] = (seg[1:] != seg[:-1]) | (t[1:] != t[:-1])
    seg, t, lim = seg[first], t[first], lim[first]
    off = np.zeros(nseg + 1, dtype=np.int64)
    off[1:] = np.cumsum(np.bincount(seg, minlength=nseg))
    return np.ascontiguousarray(t), np.ascontiguousarray(lim), off
