"""HEALPix helpers (nested scheme, as hats/lsdb use it): the pixel of a position, and the pixels around one.

Sky regions of a batch, the history store's pixels and the catalogues' partitions all use these, so one sky
position always lands in the same pixel whoever asks.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy_healpix import core as hp


def healpix_pixels(ra_deg: np.ndarray, dec_deg: np.ndarray, order: int) -> np.ndarray:
    """Nested HEALPix pixel index (int64) at ``order`` (nside = 2**order) of each position."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.asarray(hp.lonlat_to_healpix(ra * u.deg, dec * u.deg, 2**order, order="nested"), dtype=np.int64)


def pixel_of(ra_deg: np.ndarray, dec_deg: np.ndarray, order: int) -> np.ndarray:
    """The nested pixel at ``order`` of each position (an alias that reads better at call sites that store it)."""
    return healpix_pixels(ra_deg, dec_deg, order)


def pixels_around(ra_deg: np.ndarray, dec_deg: np.ndarray, order: int, margin_arcsec: float) -> np.ndarray:
    """The distinct pixels within ``margin_arcsec`` of any of the positions: the pixel of each position and of
    eight points on a circle of that radius around it. Pixels are degrees wide and the margin a few arcsec,
    so a neighbour is only ever added for positions that really sit near a border."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.size == 0:
        return np.empty(0, dtype=np.int64)
    r = np.deg2rad(margin_arcsec / 3600.0)
    angles = np.arange(8) * np.pi / 4
    # destination points at angular distance r along 8 position angles (exact spherical formula)
    d0, a0 = np.deg2rad(dec)[:, None], np.deg2rad(ra)[:, None]
    sin_d = np.sin(d0) * np.cos(r) + np.cos(d0) * np.sin(r) * np.cos(angles)
    d1 = np.arcsin(np.clip(sin_d, -1, 1))
    a1 = a0 + np.arctan2(np.sin(angles) * np.sin(r) * np.cos(d0), np.cos(r) - np.sin(d0) * sin_d)
    all_ra = np.concatenate([ra, np.rad2deg(a1).ravel() % 360.0])
    all_dec = np.concatenate([dec, np.rad2deg(d1).ravel()])
    return np.unique(pixel_of(all_ra, all_dec, order))


#: The finest HEALPix order (nside 2**29): a pixel index at it orders positions along the nested curve, and a pixel
#: ``p`` of order ``k`` covers the order-29 indices ``[p * 4**(29 - k), (p + 1) * 4**(29 - k))``.
MAX_ORDER = 29


def healpix29(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Nested HEALPix index at order 29 of each position (hats and lsdb call it ``_healpix_29``)."""
    return healpix_pixels(ra_deg, dec_deg, MAX_ORDER)


def with_neighbours(pixels: np.ndarray, order: int) -> np.ndarray:
    """The distinct ``pixels`` (nested, at ``order``) and the up to eight pixels touching each."""
    pix = np.unique(np.asarray(pixels, dtype=np.int64))
    if pix.size == 0:
        return pix
    with np.errstate(invalid="ignore"):  # the missing neighbour of a face's corner pixel comes back as -1
        around = np.asarray(hp.neighbours(pix, 2**order, order="nested"), dtype=np.int64).ravel()
    return np.unique(np.concatenate([pix, around[around >= 0]]))


def order29_ranges(pixels: np.ndarray, order: int) -> tuple[list[int], list[int]]:
    """Inclusive (lo, hi) lists of the order-29 index ranges the nested ``pixels`` of ``order`` cover (pixel
    ``p`` covers ``[p * 4**(29 - order), (p + 1) * 4**(29 - order))``), adjacent ranges merged, sorted: what a
    B-tree on an order-29 column (``hpx29``) answers with one range scan each."""
    shift = 2 * (MAX_ORDER - order)
    lows: list[int] = []
    highs: list[int] = []
    for p in np.unique(np.asarray(pixels, dtype=np.int64)).tolist():
        lo, hi = p << shift, ((p + 1) << shift) - 1
        if highs and lo == highs[-1] + 1:
            highs[-1] = hi
        else:
            lows.append(lo)
            highs.append(hi)
    return lows, highs
