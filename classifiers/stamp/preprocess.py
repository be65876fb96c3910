"""Cutouts -> the CNN's image input: centre crop, per-cutout normalisation, NaN -> 0 (pure numpy).

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

from alert_broker.classifiers.stamp.cutouts import DecodedCutouts, cutout_cube

#: Side of the crop fed to the CNN [pixels].
CROP_SIZE = 21

#: Version of the network's inputs (crop, normalisation, metadata fills and clipping): a saved model records it
#: and code whose inputs differ refuses the model. Bump on any change here or in metadata.py that changes numbers.
STAMP_FEATURE_VERSION = "stamp-inputs-1.0"


def normalise_cutouts(images: np.ndarray) -> np.ndarray:
    """Min-max scale each cutout (axis 1, 2 of an (N, H, W, C) array) to [0, 1] over its finite pixels; masked
    (NaN / inf) pixels -> 0; a cutout with no finite pixel or no dynamic range -> 0. Returns float32."""
    x = np.asarray(images, dtype=np.float32)
    finite = np.isfinite(x)
    lo = np.where(finite, x, np.inf).min(axis=(1, 2), keepdims=True)
    hi = np.where(finite, x, -np.inf).max(axis=(1, 2), keepdims=True)
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
