"""Physical statistics of the three cutouts, measured on the raw pixels (not the CNN's min-max scaled crop).

The CNN learns shapes from simulated stamps and transfers poorly to real ones (docs/stamp.md); a few robust
numbers measured the same way on both transfer better, and they are what an astronomer looks at first: is there
a source in the template at the alert's position (a variable star or a galaxy nucleus: yes; a supernova far from
its host, an asteroid: no), is it point-like, how wide is the difference PSF compared with the science image's
(a hot pixel or a cosmic ray is narrower than the seeing), is the difference elongated (a trailed asteroid, a
satellite streak) or a dipole (a bad subtraction).

``stamp_statistics(stamps)`` -> a float frame, one row per stamps row (NaN when a cutout is missing):

| column | meaning |
|---|---|
| ``{s}_bkg_sigma`` | robust background noise of cutout s (1.4826 x MAD of the outer ring), s in sci, ref, diff |
| ``{s}_peak_snr`` | (mean of the central 3x3 - background median) / background sigma |
| ``ref_concentration`` | template flux in the central 3x3 over the central 9x9 (point source ~0.3-0.5, galaxy lower) |
| ``ref_offset`` | distance [pixels] of the template's brightest pixel within 7 px from the centre (a host's offset) |
| ``diff_fwhm``, ``sci_fwhm``, ``ref_fwhm`` | FWHM [pixels] from the second moments of the positive central 9x9 pixels |
| ``diff_elongation``, ``ref_elongation`` | ratio of the principal axes of those moments (1 = round) |
| ``diff_neg_ratio`` | \\|most negative\\| / most positive central 9x9 difference pixel (a dipole: ~1) |
| ``diff_sci_ratio`` | difference peak over science peak (above their backgrounds): how much of the light is new |
| ``nan_fraction`` | share of masked (NaN) pixels over the three cutouts |

The same function measures simulated and real stamps (docs/simulator.md, "Real data in the simulator"), and
the stamp classifier's second stage uses them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from alert_broker.classifiers.stamp.cutouts import decode_cutout

STAT_COLUMNS: tuple[str, ...] = (
    "sci_bkg_sigma",
    "ref_bkg_sigma",
    "diff_bkg_sigma",
    "sci_peak_snr",
    "ref_peak_snr",
    "diff_peak_snr",
    "ref_concentration",
    "ref_offset",
    "diff_fwhm",
    "sci_fwhm",
    "ref_fwhm",
    "diff_elongation",
    "ref_elongation",
    "diff_neg_ratio",
    "diff_sci_ratio",
    "nan_fraction",
)
_KINDS = (("sci", "cutout_science"), ("ref", "cutout_template"), ("diff", "cutout_difference"))


def _centre(img: np.ndarray) -> tuple[int, int]:
    return img.shape[0] // 2, img.shape[1] // 2


def _box(img: np.ndarray, half: int) -> np.ndarray:
    cy, cx = _centre(img)
    return img[max(cy - half, 0) : cy + half + 1, max(cx - half, 0) : cx + half + 1]


def _background(img: np.ndarray) -> tuple[float, float]:
    """(median, robust sigma) of the pixels outside the central 21x21 (the whole cutout if it is small)."""
    cy, cx = _centre(img)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    ring = (np.abs(yy - cy) > 10) | (np.abs(xx - cx) > 10)
    v = img[ring] if ring.sum() >= 50 else img.ravel()
    v = v[np.isfinite(v)]
    if v.size < 10:
        return np.nan, np.nan
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med)))


def _moments(patch: np.ndarray) -> tuple[float, float]:
    """(FWHM, elongation) from the second moments of the positive pixels of a background-subtracted patch."""
    w = np.where(np.isfinite(patch) & (patch > 0), patch, 0.0)
    tot = w.sum()
    if tot <= 0:
        return np.nan, np.nan
    yy, xx = np.mgrid[: patch.shape[0], : patch.shape[1]]
    my, mx = (w * yy).sum() / tot, (w * xx).sum() / tot
    cyy = (w * (yy - my) ** 2).sum() / tot
    cxx = (w * (xx - mx) ** 2).sum() / tot
    cxy = (w * (yy - my) * (xx - mx)).sum() / tot
    tr, det = cyy + cxx, cyy * cxx - cxy**2
    disc = np.sqrt(max(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, max(tr / 2 - disc, 1e-6)
    return float(2.3548 * np.sqrt(max((l1 + l2) / 2, 0.0))), float(np.sqrt(l1 / l2))


def _one(cutouts: dict[str, np.ndarray | None]) -> np.ndarray:
    out = dict.fromkeys(STAT_COLUMNS, np.nan)
    nan_pix, all_pix = 0, 0
    peaks = {}
    for kind, img in cutouts.items():
        if img is None:
            continue
        img = np.asarray(img, dtype=np.float64)
        nan_pix += int((~np.isfinite(img)).sum())
        all_pix += img.size
        med, sig = _background(img)
        out[f"{kind}_bkg_sigma"] = sig
        c3 = _box(img, 1)
        peak = float(np.nanmean(c3)) - med if np.isfinite(c3).any() else np.nan
        peaks[kind] = peak
        out[f"{kind}_peak_snr"] = peak / sig if sig and sig > 0 else np.nan
        sub = _box(img, 4) - med
        if kind == "ref":
            out["ref_fwhm"], out["ref_elongation"] = _moments(sub)
            c9 = np.nansum(np.clip(sub, 0, None))
            out["ref_concentration"] = float(np.nansum(np.clip(c3 - med, 0, None)) / c9) if c9 > 0 else np.nan
            p7 = _box(img, 7)
            if np.isfinite(p7).any():
                iy, ix = np.unravel_index(np.nanargmax(p7), p7.shape)
                out["ref_offset"] = float(np.hypot(iy - p7.shape[0] // 2, ix - p7.shape[1] // 2))
        elif kind == "diff":
            out["diff_fwhm"], out["diff_elongation"] = _moments(sub)
            finite = np.isfinite(sub).any()
            hi = np.nanmax(sub) if finite else np.nan
            lo = np.nanmin(sub) if finite else np.nan
            out["diff_neg_ratio"] = float(abs(min(lo, 0.0)) / hi) if hi and hi > 0 else np.nan
        elif kind == "sci":
            out["sci_fwhm"], _ = _moments(sub)
    if peaks.get("sci") and peaks["sci"] > 0 and "diff" in peaks:
        out["diff_sci_ratio"] = peaks["diff"] / peaks["sci"]
    out["nan_fraction"] = nan_pix / all_pix if all_pix else np.nan
    return np.array([out[c] for c in STAT_COLUMNS], dtype=np.float64)


def stamp_statistics(stamps: pd.DataFrame) -> pd.DataFrame:
    """:data:`STAT_COLUMNS` for every row of a `stamps` table (columns ``cutout_science``, ``cutout_template``,
    ``cutout_difference``: gzipped FITS bytes), index of ``stamps``."""
    rows = np.full((len(stamps), len(STAT_COLUMNS)), np.nan)
    cols = {kind: stamps[col].to_numpy(dtype=object) if col in stamps else None for kind, col in _KINDS}
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a fully masked cutout is data, not a bug
        for i in range(len(stamps)):
            cut = {kind: decode_cutout(c[i]) if c is not None else None for kind, c in cols.items()}
            rows[i] = _one(cut)
    return pd.DataFrame(rows, columns=list(STAT_COLUMNS), index=stamps.index)
