"""Cone searches over the ``object`` table's ``hpx29`` column (nested HEALPix index at order 29, B-tree indexed).

A cone becomes a few ranges of ``hpx29``: the pixels a HEALPix cone search finds at an order whose pixels are
about as wide as the radius, each widened to the order-29 indices it contains (pixel ``p`` of order ``k`` covers
``[p * 4**(29-k), (p+1) * 4**(29-k))``), adjacent ranges merged. The ranges may hold objects a little outside
the cone (the pixels overlap it); the exact angular distance then keeps those within the radius.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy_healpix import core as hp

from alert_broker.features.healpix import MAX_ORDER, healpix_pixels, order29_ranges, with_neighbours

#: Mean width of an order-0 HEALPix pixel (arcsec); order k pixels are 2**k times narrower.
ORDER0_WIDTH_ARCSEC = float(hp.nside_to_pixel_resolution(1).to_value(u.arcsec))
#: The widest cone the API searches (arcsec): 10 degrees.
MAX_RADIUS_ARCSEC = 36_000.0


def cone_order(radius_arcsec: float) -> int:
    """The order whose pixels are about as wide as the radius: a cone touches ~4-12 of them."""
    if radius_arcsec <= 0:
        raise ValueError("radius must be > 0")
    k = int(np.floor(np.log2(ORDER0_WIDTH_ARCSEC / radius_arcsec)))
    return int(min(max(k, 0), MAX_ORDER))


def cone_ranges(ra_deg: float, dec_deg: float, radius_arcsec: float) -> tuple[list[int], list[int]]:
    """Inclusive (lo, hi) lists of order-29 index ranges that cover the cone, merged and sorted."""
    k = cone_order(radius_arcsec)
    pixels = hp.healpix_cone_search(
        ra_deg * u.deg, dec_deg * u.deg, radius_arcsec * u.arcsec, 2**k, order="nested"
    )
    return order29_ranges(np.asarray(pixels, dtype=np.int64), k)


#: The finest order of a search around many positions at once: pixels at least ~51" wide, so neighbouring positions
#: share their ranges and thousands of positions stay a few thousand index range scans.
BULK_MAX_ORDER = 12


def bulk_order(radius_arcsec: float) -> int:
    """The order of a search around many positions: pixels at least four times as wide as the radius (two orders
    coarser than a single cone's), so a position's pixel and the ring of its neighbours hold its whole cone,
    however distorted the pixel (near the poles, at the corners of HEALPix's base faces)."""
    return min(max(cone_order(radius_arcsec) - 2, 0), BULK_MAX_ORDER)


def positions_ranges(
    ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float
) -> tuple[list[int], list[int]]:
    """Inclusive (lo, hi) lists of order-29 ranges that cover the cones of ``radius_arcsec`` around every
    position (each position's pixel at :func:`bulk_order` and its neighbours), merged and sorted. The ranges hold
    more than the cones; the exact distance decides."""
    k = bulk_order(radius_arcsec)
    return order29_ranges(with_neighbours(healpix_pixels(ra_deg, dec_deg, k), k), k)


def angular_distance_sql(ra_col: str, dec_col: str) -> str:
    """SQL for the great-circle distance in arcsec from (%(ra)s, %(dec)s) to the row's position (haversine,
    exact to well below a milliarcsecond at the API's radii). Column names come from the caller's code only."""
    return (
        f"degrees(2 * asin(least(1.0, sqrt("
        f"power(sin(radians({dec_col} - %(dec)s) / 2), 2) + "
        f"cos(radians({dec_col})) * cos(radians(%(dec)s)) * power(sin(radians({ra_col} - %(ra)s) / 2), 2)"
        f")))) * 3600.0"
    )
