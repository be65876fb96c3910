"""Alert cutouts as images: FITS (gzipped for ZTF, plain for LSST) to a greyscale PNG for browsers.

The pixel values are scaled with IRAF's zscale (astropy's ``ZScaleInterval``, as ALeRCE's and most brokers'
viewers do) and an asinh stretch, then flipped so north is up as in DS9 (FITS rows start at the bottom).
"""

from __future__ import annotations

import gzip
import io
import warnings

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.visualization import AsinhStretch, ZScaleInterval
from PIL import Image

STAMP_KINDS = ("science", "template", "difference")
_GZIP_MAGIC = b"\x1f\x8b"


def fits_bytes(data: bytes) -> bytes:
    """The FITS file of a cutout, ungzipped if it came gzipped."""
    return gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data


def stamp_array(data: bytes) -> np.ndarray:
    """The first 2-D image of a cutout's FITS file, as float64 (NaN where the survey masked pixels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # ZTF's cutouts pad the SIMPLE card unusually
        with fits.open(io.BytesIO(fits_bytes(data)), memmap=False) as hdus:
            for hdu in hdus:
                if hdu.data is not None and np.ndim(hdu.data) == 2:
                    return np.asarray(hdu.data, dtype=np.float64)
    raise ValueError("the cutout's FITS file holds no 2-D image")


def stamp_png(data: bytes, scale: int = 1) -> bytes:
    """A greyscale PNG of a cutout (zscale + asinh), ``scale`` times bigger (nearest pixel)."""
    image = stamp_array(data)
    finite = np.isfinite(image)
    if not finite.any():
        grey = np.zeros(image.shape, dtype=np.uint8)
    else:
        filled = np.where(finite, image, np.nanmedian(image))
        try:
            lo, hi = ZScaleInterval().get_limits(filled)
        except Exception:  # zscale gives up on some flat images: fall back to min/max
            lo, hi = float(filled.min()), float(filled.max())
        if not hi > lo:
            lo, hi = float(filled.min()), float(filled.max())
        norm = np.clip((filled - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(filled)
        grey = np.round(AsinhStretch(a=0.1)(norm) * 255).astype(np.uint8)
        grey[~finite] = 0
    img = Image.fromarray(np.ascontiguousarray(np.flipud(grey)))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()
