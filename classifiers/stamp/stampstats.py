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
from numba import njit

from alert_broker.classifiers.stamp.cutouts import DecodedCutouts, decode_cutout

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


def _ring(shape: tuple[int, int]) -> np.ndarray:
    """Background pixels of a cutout of this shape: outside the central 21x21, or every pixel when fewer than 50
    lie outside (a small cutout)."""
    cy, cx = shape[0] // 2, shape[1] // 2
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ring = (np.abs(yy - cy) > 10) | (np.abs(xx - cx) > 10)
    return ring if ring.sum() >= 50 else np.ones(shape, dtype=bool)


def _box(stack: np.ndarray, half: int) -> np.ndarray:
    """The central (2 half + 1)^2 pixels of every image of an (n, h, w) stack (clipped at the edges)."""
    cy, cx = stack.shape[1] // 2, stack.shape[2] // 2
    return stack[:, max(cy - half, 0) : cy + half + 1, max(cx - half, 0) : cx + half + 1]


@njit(cache=True)
def _select(a: np.ndarray, n: int, k: int) -> float:
    """The k-th smallest of ``a[:n]`` (0-based), partitioning ``a[:n]`` in place so that ``a[:k] <= a[k]``
    (quickselect, Hoare's partition around a median of three: runs of equal pixels split evenly)."""
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) // 2
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@njit(cache=True)
def _median_in_place(a: np.ndarray, n: int) -> float:
    """numpy's median of ``a[:n]`` (the mean of the two middle values of an even count), reordering it."""
    upper = _select(a, n, n // 2)
    if n % 2:
        return upper
    lower = a[0]
    for j in range(1, n // 2):  # the largest of the lower half, which the selection left below a[n // 2]
        lower = max(lower, a[j])
    return (lower + upper) / 2


#: Below this many values a plain quickselect is as fast as bracketing the median first.
_BRACKET_MIN = 256
#: Values sampled (evenly spaced) to bracket the median, and the sample ranks kept either side of its rank.
_SAMPLE = 128
_MARGIN = 12


@njit(cache=True)
def _median_bracketed(a: np.ndarray, n: int, sample: np.ndarray, inside: np.ndarray) -> float:
    """``_median_in_place(a, n)``, ~3x faster on a cutout's ~3500 background pixels (Floyd and Rivest's idea):
    the sorted sample of ``_SAMPLE`` evenly spaced values brackets the middle ranks, one pass counts the values
    below the bracket and copies those inside it to ``inside``, and quickselect runs on those few. When the
    bracket misses a middle rank (possible for adversarial orderings), the plain selection runs instead: the
    value is the same either way, an order statistic of ``a[:n]``. ``a`` is left unchanged unless that happens."""
    if n < _BRACKET_MIN:
        return _median_in_place(a, n)
    upper_rank = n // 2
    lower_rank = upper_rank if n % 2 else upper_rank - 1
    for t in range(_SAMPLE):
        sample[t] = a[(t * n) // _SAMPLE]
    sample.sort()
    r_lo = (lower_rank * _SAMPLE) // n - _MARGIN
    r_hi = (upper_rank * _SAMPLE) // n + _MARGIN
    lo = sample[r_lo] if r_lo >= 0 else -np.inf
    hi = sample[r_hi] if r_hi < _SAMPLE else np.inf
    below = 0
    m = 0
    for j in range(n):  # without branches: a mispredicted one per value would cost more than the selection
        x = a[j]
        below += x < lo
        inside[m] = x
        m += (x >= lo) & (x <= hi)
    if below > lower_rank or upper_rank >= below + m:  # the bracket missed: select among all of them
        return _median_in_place(a, n)
    k = upper_rank - below
    upper = _select(inside, m, k)
    if n % 2:
        return upper
    lower = inside[0]  # the largest of the values below the upper middle one: k >= 1 here
    for j in range(1, k):
        lower = max(lower, inside[j])
    return (lower + upper) / 2


@njit(cache=True)
def _median_mad(flat: np.ndarray, pixels: np.ndarray, min_finite: int) -> tuple[np.ndarray, np.ndarray]:
    """(median, median absolute deviation) of the finite values among ``pixels`` (flat indices) of each row of
    ``flat`` (n, h*w); NaN for a row with fewer than ``min_finite``.

    One pass per image through a scratch buffer the size of one ring, selected in place: numpy's version (gather
    the ring, mask, partition, subtract, partition again) made five copies of the whole stack and was ~40 % of
    the stamp classifier's time. Both medians are numpy's (the mean of the two middle values of an even count),
    so the values are the same to the bit (tests/unit/test_stampstats.py); each is bracketed before it is selected
    (``_median_bracketed``: half the time again)."""
    n = flat.shape[0]
    med = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    buf = np.empty(pixels.size)
    inside = np.empty(pixels.size)
    sample = np.empty(_SAMPLE)
    for i in range(n):
        k = 0
        for j in pixels:
            x = flat[i, j]
            if np.isfinite(x):
                buf[k] = x
                k += 1
        if k < min_finite:
            continue
        m = _median_bracketed(buf, k, sample, inside)
        for j in range(k):
            buf[j] = abs(buf[j] - m)
        med[i] = m
        mad[i] = _median_bracketed(buf, k, sample, inside)
    return med, mad


def _background(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median, robust sigma = 1.4826 MAD) of each image's finite background pixels; NaN with fewer than 10."""
    flat = np.ascontiguousarray(stack, dtype=np.float64).reshape(len(stack), -1)
    med, mad = _median_mad(flat, np.flatnonzero(_ring(stack.shape[1:])), 10)
    return med, 1.4826 * mad


def _moments(patch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FWHM, elongation) per image from the second moments of the positive pixels of background-subtracted
    patches (n, h, w): the FWHM of a Gaussian with the mean of the two principal variances, and the ratio of the
    principal axes."""
    w = np.where(np.isfinite(patch) & (patch > 0), patch, 0.0)
    tot = w.sum(axis=(1, 2))
    ok = tot > 0
    t = np.where(ok, tot, 1.0)
    yy, xx = np.mgrid[: patch.shape[1], : patch.shape[2]]
    my = (w * yy).sum(axis=(1, 2)) / t
    mx = (w * xx).sum(axis=(1, 2)) / t
    dy, dx = yy - my[:, None, None], xx - mx[:, None, None]
    cyy = (w * dy**2).sum(axis=(1, 2)) / t
    cxx = (w * dx**2).sum(axis=(1, 2)) / t
    cxy = (w * dy * dx).sum(axis=(1, 2)) / t
    tr, det = cyy + cxx, cyy * cxx - cxy**2
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, np.maximum(tr / 2 - disc, 1e-6)
    fwhm = 2.3548 * np.sqrt(np.maximum((l1 + l2) / 2, 0.0))
    return np.where(ok, fwhm, np.nan), np.where(ok, np.sqrt(l1 / l2), np.nan)


def _kind_statistics(kind: str, stack: np.ndarray) -> dict[str, np.ndarray]:
    """The statistics one cutout kind ("sci", "ref", "diff") gives, for a stack of same-shape images (float64),
    plus ``_peak`` (central 3x3 mean above the background) and ``_nan`` (masked pixels per image)."""
    out: dict[str, np.ndarray] = {"_nan": (~np.isfinite(stack)).sum(axis=(1, 2)).astype(np.float64)}
    med, sig = _background(stack)
    out[f"{kind}_bkg_sigma"] = sig
    c3 = _box(stack, 1)
    peak = np.where(np.isfinite(c3).any(axis=(1, 2)), np.nanmean(c3, axis=(1, 2)), np.nan) - med
    out["_peak"] = peak
    out[f"{kind}_peak_snr"] = np.where(sig > 0, peak / np.where(sig > 0, sig, 1.0), np.nan)
    sub = _box(stack, 4) - med[:, None, None]
    if kind == "ref":
        out["ref_fwhm"], out["ref_elongation"] = _moments(sub)
        c9 = np.nansum(np.clip(sub, 0, None), axis=(1, 2))
        c3sum = np.nansum(np.clip(c3 - med[:, None, None], 0, None), axis=(1, 2))
        out["ref_concentration"] = np.where(c9 > 0, c3sum / np.where(c9 > 0, c9, 1.0), np.nan)
        p7 = _box(stack, 7)
        flat = np.where(np.isnan(p7), -np.inf, p7).reshape(len(p7), -1)
        iy, ix = np.unravel_index(flat.argmax(axis=1), p7.shape[1:])
        off = np.hypot(iy - p7.shape[1] // 2, ix - p7.shape[2] // 2).astype(np.float64)
        out["ref_offset"] = np.where(np.isfinite(p7).any(axis=(1, 2)), off, np.nan)
    elif kind == "diff":
        out["diff_fwhm"], out["diff_elongation"] = _moments(sub)
        finite = np.isfinite(sub).any(axis=(1, 2))
        hi = np.where(finite, np.nanmax(sub, axis=(1, 2)), np.nan)  # all-NaN rows: NaN (warning silenced)
        lo = np.where(finite, np.nanmin(sub, axis=(1, 2)), np.nan)
        neg = np.abs(np.minimum(lo, 0.0))
        out["diff_neg_ratio"] = np.where(hi > 0, neg / np.where(hi > 0, hi, 1.0), np.nan)
    elif kind == "sci":
        out["sci_fwhm"], _ = _moments(sub)
    return out


def stamp_statistics(stamps: pd.DataFrame, decoded: DecodedCutouts | None = None) -> pd.DataFrame:
    """:data:`STAT_COLUMNS` for every row of a `stamps` table (columns ``cutout_science``, ``cutout_template``,
    ``cutout_difference``: gzipped FITS bytes), index of ``stamps``. ``decoded``: the table's
    ``cutouts.decode_cutouts``, when the caller has them already (the CNN's input shares them).

    Computed per cutout kind over stacks of same-shape images (all of a batch's 63x63 ZTF cutouts at once);
    ``tests/unit/test_stampstats.py`` checks it against a plain per-cutout derivation."""
    n = len(stamps)
    if decoded is None:
        decoded = {
            col: [decode_cutout(c) for c in stamps[col].to_numpy(dtype=object)]
            if col in stamps
            else [None] * n
            for _, col in _KINDS
        }
    cols = {c: np.full(n, np.nan) for c in STAT_COLUMNS}
    nan_pix, all_pix = np.zeros(n), np.zeros(n)
    peaks = {kind: np.full(n, np.nan) for kind, _ in _KINDS}
    present = {kind: np.zeros(n, dtype=bool) for kind, _ in _KINDS}
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a fully masked cutout is data, not a bug
        for kind, col in _KINDS:
            images = decoded.get(col, [None] * n)
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for i, img in enumerate(images):
                if img is not None:
                    by_shape.setdefault(np.shape(img), []).append(i)
            for shape, rows in by_shape.items():
                idx = np.asarray(rows)
                stack = np.stack([images[i] for i in rows]).astype(np.float64)
                res = _kind_statistics(kind, stack)
                nan_pix[idx] += res.pop("_nan")
                all_pix[idx] += float(np.prod(shape))
                peaks[kind][idx] = res.pop("_peak")
                present[kind][idx] = True
                for name, values in res.items():
                    cols[name][idx] = values
        sci, dif = peaks["sci"], peaks["diff"]
        ratio = dif / np.where(sci > 0, sci, 1.0)
        cols["diff_sci_ratio"] = np.where(present["diff"] & (sci > 0), ratio, np.nan)
        cols["nan_fraction"] = np.where(all_pix > 0, nan_pix / np.where(all_pix > 0, all_pix, 1.0), np.nan)
    return pd.DataFrame(cols, columns=list(STAT_COLUMNS), index=stamps.index)


def warm_up_stamp_statistics() -> None:
    """Load the compiled kernels (numba's on-disk cache; compiled on a first run) on a tiny stack, so a worker's
    first batch of stamps does not pay for it."""
    stamp_statistics(pd.DataFrame(index=range(1)), {"cutout_science": [np.zeros((5, 5), dtype=np.float32)]})
