"""The stamp statistics, computed over stacks of cutouts, against a plain per-cutout derivation of the same
definitions (docs/stamp.md): on real ZTF cutouts, and on the awkward ones (masked pixels, a fully masked cutout,
a missing cutout, cutouts truncated at a CCD edge, several shapes in one batch)."""

from __future__ import annotations

import gzip
import io
import warnings

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from alert_broker.classifiers.stamp.cutouts import decode_cutout, decode_cutouts
from alert_broker.classifiers.stamp.stampstats import STAT_COLUMNS, stamp_statistics


# -- the reference: one cutout at a time, loops and plain numpy reductions --------------------------------------
def _box(img, half):
    cy, cx = img.shape[0] // 2, img.shape[1] // 2
    return img[max(cy - half, 0) : cy + half + 1, max(cx - half, 0) : cx + half + 1]


def _background(img):
    cy, cx = img.shape[0] // 2, img.shape[1] // 2
    ring = [
        img[y, x]
        for y in range(img.shape[0])
        for x in range(img.shape[1])
        if abs(y - cy) > 10 or abs(x - cx) > 10
    ]
    v = np.array(ring if len(ring) >= 50 else img.ravel(), dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 10:
        return np.nan, np.nan
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med)))


def _moments(patch):
    w = np.where(np.isfinite(patch) & (patch > 0), patch, 0.0)
    tot = w.sum()
    if tot <= 0:
        return np.nan, np.nan
    yy, xx = np.mgrid[: patch.shape[0], : patch.shape[1]]
    my, mx = (w * yy).sum() / tot, (w * xx).sum() / tot
    cyy, cxx = (w * (yy - my) ** 2).sum() / tot, (w * (xx - mx) ** 2).sum() / tot
    cxy = (w * (yy - my) * (xx - mx)).sum() / tot
    tr, det = cyy + cxx, cyy * cxx - cxy**2
    disc = np.sqrt(max(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, max(tr / 2 - disc, 1e-6)
    return 2.3548 * np.sqrt(max((l1 + l2) / 2, 0.0)), np.sqrt(l1 / l2)


def _reference(cutouts):
    out = dict.fromkeys(STAT_COLUMNS, np.nan)
    nan_pix = all_pix = 0
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
        out[f"{kind}_peak_snr"] = peak / sig if sig > 0 else np.nan
        sub = _box(img, 4) - med
        if kind == "ref":
            out["ref_fwhm"], out["ref_elongation"] = _moments(sub)
            c9 = np.nansum(np.clip(sub, 0, None))
            out["ref_concentration"] = np.nansum(np.clip(c3 - med, 0, None)) / c9 if c9 > 0 else np.nan
            p7 = _box(img, 7)
            if np.isfinite(p7).any():
                iy, ix = np.unravel_index(np.nanargmax(p7), p7.shape)
                out["ref_offset"] = float(np.hypot(iy - p7.shape[0] // 2, ix - p7.shape[1] // 2))
        elif kind == "diff":
            out["diff_fwhm"], out["diff_elongation"] = _moments(sub)
            if np.isfinite(sub).any():
                hi, lo = np.nanmax(sub), np.nanmin(sub)
                out["diff_neg_ratio"] = abs(min(lo, 0.0)) / hi if hi > 0 else np.nan
        elif kind == "sci":
            out["sci_fwhm"] = _moments(sub)[0]
    if "sci" in peaks and peaks["sci"] > 0 and "diff" in peaks:
        out["diff_sci_ratio"] = peaks["diff"] / peaks["sci"]
    out["nan_fraction"] = nan_pix / all_pix if all_pix else np.nan
    return np.array([out[c] for c in STAT_COLUMNS])


def _reference_frame(stamps):
    kinds = {"sci": "cutout_science", "ref": "cutout_template", "diff": "cutout_difference"}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = [
            _reference({k: decode_cutout(stamps[c].iloc[i]) for k, c in kinds.items()})
            for i in range(len(stamps))
        ]
    return np.array(rows).reshape(len(stamps), len(STAT_COLUMNS))


def _assert_same(got: pd.DataFrame, want: np.ndarray):
    g = got[list(STAT_COLUMNS)].to_numpy()
    assert (np.isnan(g) == np.isnan(want)).all(), [
        c for j, c in enumerate(STAT_COLUMNS) if (np.isnan(g[:, j]) != np.isnan(want[:, j])).any()
    ]
    np.testing.assert_allclose(g, want, rtol=1e-12, atol=0, equal_nan=True)


def ztf_fits_gz(img: np.ndarray) -> bytes:
    """A gzipped single-HDU FITS cutout of any shape (as ZTF ships them)."""
    buf = io.BytesIO()
    fits.PrimaryHDU(np.asarray(img, dtype=np.float32)).writeto(buf)
    return gzip.compress(buf.getvalue())


# -- the cases ----------------------------------------------------------------------------------------------------
def test_real_cutouts_match_the_per_cutout_derivation(shared_data):
    from alert_broker.surveys.decode import decode_batch
    from alert_broker.surveys.messages import RawMessage

    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[::5]
    tables, _, _ = decode_batch(
        [RawMessage("t", 0, i, f.read_bytes(), f.name) for i, f in enumerate(files)], "t"
    )
    stamps = tables.stamps.reset_index(drop=True)
    assert len(stamps) > 200
    got = stamp_statistics(stamps)
    _assert_same(got, _reference_frame(stamps))
    assert got["diff_fwhm"].notna().mean() > 0.9  # real cutouts measured, not NaN throughout
    _assert_same(stamp_statistics(stamps, decode_cutouts(stamps)), _reference_frame(stamps))  # decoded once


def test_awkward_cutouts_match_the_per_cutout_derivation():
    rng = np.random.default_rng(7)

    def img(shape=(63, 63), nan_share=0.0, signal=True):
        a = rng.normal(100.0, 3.0, shape)
        if signal:
            y, x = np.mgrid[: shape[0], : shape[1]]
            a += 500 * np.exp(-0.5 * (((y - shape[0] // 2) / 1.7) ** 2 + ((x - shape[1] // 2) / 1.3) ** 2))
        a[rng.random(shape) < nan_share] = np.nan
        return a.astype(np.float32)

    masked = img(nan_share=0.999)
    masked[:] = np.nan
    rows = [
        (img(), img(), img()),
        (img(nan_share=0.2), img(nan_share=0.05), img(nan_share=0.5)),  # masked pixels (median of the rest)
        (img(), masked, img()),  # a fully masked template
        (img(), None, img()),  # no template at all
        (img((40, 63)), img((40, 63)), img((40, 63))),  # truncated at a CCD edge
        (img((15, 15)), img((15, 15)), img((15, 15), signal=False)),  # too small for a background ring
        (img((63, 30)), img(), img((63, 30), nan_share=0.3)),  # shapes differ within one alert
        (img(signal=False) - 100.0, img(), -img()),  # no positive flux in the difference
        (img(), img(), img(nan_share=0.9995)),  # fewer than 10 background pixels left
    ]
    stamps = pd.DataFrame(
        {
            col: [None if r[k] is None else ztf_fits_gz(r[k]) for r in rows]
            for k, col in enumerate(("cutout_science", "cutout_template", "cutout_difference"))
        }
    )
    got = stamp_statistics(stamps)
    want = _reference_frame(stamps)
    _assert_same(got, want)
    assert np.isnan(got.loc[3, "ref_bkg_sigma"]) and np.isnan(got.loc[2, "ref_fwhm"])
    assert got.loc[1, "nan_fraction"] == pytest.approx(want[1, STAT_COLUMNS.index("nan_fraction")])
    assert np.isnan(got.loc[8, "diff_bkg_sigma"])


def test_median_and_mad_kernel_equal_numpy_to_the_bit():
    """The compiled background kernel against np.median on rows numpy's partition finds easy and quickselect
    finds hard: odd and even counts, constant rows, two values, heavy ties, sorted and reversed runs, NaN and
    inf among the pixels, too few finite pixels."""
    from alert_broker.classifiers.stamp.stampstats import _median_mad

    rng = np.random.default_rng(7)
    for m in (301, 3529):  # below and above the size where the median is bracketed first
        _check_kernel_rows(_median_mad, rng, m)


def _check_kernel_rows(_median_mad, rng, m: int) -> None:
    rows = [
        rng.normal(size=m),
        np.full(m, 3.25),
        np.where(rng.random(m) < 0.5, 1.0, 2.0),
        rng.integers(0, 4, m).astype(float),
        np.arange(m, dtype=float),
        np.arange(m, dtype=float)[::-1],
        np.where(rng.random(m) < 0.3, np.nan, rng.normal(size=m)),
        np.where(rng.random(m) < 0.1, np.inf, rng.lognormal(size=m)),
        np.r_[np.full(m - 9, np.nan), np.ones(9)],  # 9 finite: below the minimum of 10
        np.r_[np.full(m - 10, np.nan), rng.normal(size=10)],  # exactly 10
        _sample_decoy(rng, m),  # the bracketing sample sees only outliers: the bracket misses
        np.round(rng.normal(100, 5, size=m)),  # a sky of integer counts: long runs of equal values
    ]
    flat = np.vstack(rows)
    for pixels in (np.arange(m), np.arange(0, m, 2), np.arange(1, m - 1)):  # odd and even counts
        med, mad = _median_mad(flat, pixels, 10)
        for i, row in enumerate(flat):
            v = row[pixels]
            v = v[np.isfinite(v)]
            if v.size < 10:
                assert np.isnan(med[i]) and np.isnan(mad[i])
                continue
            want = np.median(v)
            assert med[i] == want, (i, med[i], want)
            assert mad[i] == np.median(np.abs(v - want)), i


def _sample_decoy(rng, m: int) -> np.ndarray:
    """A row whose evenly spaced sample (the values the bracketed median looks at first) is all huge outliers,
    so its bracket holds none of the middle values and the kernel must fall back to selecting among all."""
    from alert_broker.classifiers.stamp.stampstats import _SAMPLE

    row = rng.normal(size=m)
    row[[(t * m) // _SAMPLE for t in range(_SAMPLE)]] = 1e9
    return row


def test_bracketed_median_equals_numpy_for_any_count_and_ties():
    """The bracketed selection (the sample, the branch-free counting pass, the fallback) against np.median on
    random sizes around and far above its threshold, with ties, a decoy sample and sorted input."""
    from alert_broker.classifiers.stamp.stampstats import _SAMPLE, _median_bracketed

    rng = np.random.default_rng(11)
    sample, inside = np.empty(_SAMPLE), np.empty(5000)
    for trial in range(300):
        n = int(rng.integers(200, 5000))
        kind = trial % 5
        if kind == 0:
            a = rng.normal(size=n)
        elif kind == 1:
            a = rng.integers(0, 7, n).astype(float)
        elif kind == 2:
            a = np.sort(rng.lognormal(size=n))
        elif kind == 3:
            a = _sample_decoy(rng, n)
        else:
            a = np.abs(rng.standard_cauchy(n))
        want = np.median(a)
        got = _median_bracketed(a.copy(), n, sample, inside)
        assert got == want, (trial, n, kind, got, want)
