"""Cutouts -> the CNN's image input: centre crop, per-cutout normalisation, NaN -> 0.

As ALeRCE's stamp classifier (Carrasco-Davis et al. 2021): the central 21 x 21 pixels of the 63 x 63 cutouts
(21" on ZTF's 1.01" pixels, a few PSF widths: the source and its immediate surroundings), each cutout scaled on
its own to [0, 1] by its minimum and maximum, then masked pixels set to 0. Scaling each cutout on its own removes
the zero point, sky level and exposure depth, which differ between nights and fields, and keeps the *shape*: a
PSF, a galaxy, a single hot pixel, a dipole. Fluxes are still seen by the network through the metadata (magpsf,
sigmapsf, diffmaglim).

"Robust" here means: the extrema are taken over finite pixels only (ZTF masks bad pixels with NaN), an infinite
pixel is treated as masked, and a constant or fully masked cutout becomes all zeros instead of a division by
zero.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from alert_broker.classifiers.stamp.cutouts import DecodedCutouts, cutout_cube

#: Side of the crop fed to the CNN [pixels].
CROP_SIZE = 21

#: Version of the network's inputs (crop, normalisation, metadata fills and clipping): a saved model records it
#: and code whose inputs differ refuses the model. Bump on any change here or in metadata.py that changes numbers.
STAMP_FEATURE_VERSION = "stamp-inputs-1.0"


def normalise_cutouts(images: np.ndarray) -> np.ndarray:
    """Min-max scale each cutout (axis 1, 2 of an (N, H, W, C) array) to [0, 1] over its finite pixels; masked
    (NaN / inf) pixels -> 0; a cutout with no finite pixel or no dynamic range -> 0. Returns float32.

    One compiled pass per cutout (:func:`_normalise`; numpy's strided reductions over an (N, H, W, C) stack
    took ~35 us a stamp), in float32 like the numpy expression it replaced: ``(x - lo) / (hi - lo)`` clipped to
    [0, 1] (:func:`normalise_cutouts_numpy`, the same values to the bit; tests/unit/test_stamp_preprocess.py)."""
    x = np.ascontiguousarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"expected an (N, H, W, C) stack of cutouts, got shape {x.shape}")
    return _normalise(x)


@njit(cache=True)
def _normalise(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    out = np.zeros(x.shape, dtype=np.float32)
    for i in range(n):
        for ch in range(c):
            lo = np.float32(np.inf)
            hi = np.float32(-np.inf)
            for r in range(h):
                for q in range(w):
                    v = x[i, r, q, ch]
                    if np.isfinite(v):
                        lo = min(lo, v)
                        hi = max(hi, v)
            span = hi - lo
            if not (np.isfinite(span) and span > 0):
                continue  # no finite pixel or no dynamic range: all zeros
            for r in range(h):
                for q in range(w):
                    v = x[i, r, q, ch]
                    if np.isfinite(v):
                        y = (v - lo) / span
                        out[i, r, q, ch] = min(max(y, np.float32(0.0)), np.float32(1.0))
    return out


def normalise_cutouts_numpy(images: np.ndarray) -> np.ndarray:
    """:func:`normalise_cutouts` as the numpy expression it was: the reference the compiled pass is tested
    against."""
    x = np.asarray(images, dtype=np.float32)
    finite = np.isfinite(x)
    lo = np.where(finite, x, np.inf).min(axis=(1, 2), keepdims=True)
    hi = np.where(finite, x, -np.inf).max(axis=(1, 2), keepdims=True)
    # a range beyond float32 overflows to inf: no usable range, as the compiled pass decides
    with np.errstate(over="ignore"):
        span = hi - lo
    ok = np.isfinite(span) & (span > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (x - np.where(ok, lo, 0.0)) / np.where(ok, span, 1.0)
    out = np.where(finite & ok, out, 0.0).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def stamp_images(
    stamps, size: int = CROP_SIZE, decoded: DecodedCutouts | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A `stamps` table -> (images (N, size, size, 3) float32 ready for the CNN, complete (N,) bool: all three
    cutouts present and readable). Rows of incomplete alerts are zeros; callers skip them. ``decoded``: the
    table's ``cutouts.decode_cutouts``, when the caller has them already."""
    cube, complete = cutout_cube(stamps, size, decoded)
    return normalise_cutouts(cube), complete


def warm_up_preprocess() -> None:
    """Load the compiled normalisation (numba's on-disk cache; compiled on a first run) on one tiny cutout."""
    normalise_cutouts(np.zeros((1, 2, 2, 3), dtype=np.float32))
