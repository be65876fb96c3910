"""Object-level features: g-r colours, galactic coordinates, median star/galaxy score and real/bogus score."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._nb import NAN, median

COLOR_NAMES: tuple[str, ...] = ("g-r_max", "g-r_max_corr", "g-r_mean", "g-r_mean_corr")
META_NAMES: tuple[str, ...] = ("gal_b", "gal_l", "sgscore1", "rb")

# Rotation from ICRS unit vectors to galactic ones, as astropy's ICRS -> Galactic transformation realises it
# (IAU 1958 galactic frame reached through FK4/FK5; the Hipparcos matrix differs by ~10 mas).
ICRS_TO_GALACTIC = np.array(
    [
        [-0.05487565771259163, -0.8734370519556159, -0.48383507361671546],
        [0.4941094371927268, -0.44482972122329517, 0.7469821839866676],
        [-0.8676661375596576, -0.19807633727300059, 0.45598381368730156],
    ]
)


@njit(cache=True)
def color_batch(mag_raw: np.ndarray, mag_ml: np.ndarray, seg_off: np.ndarray) -> np.ndarray:
    """g-r of the brightest and of the mean magnitudes, raw (magpsf) and as used for features (corrected).

    As ALeRCE, the ``_corr`` pair is NaN when it equals the raw pair (the object was not corrected).
    """
    nobj = (seg_off.size - 1) // 2
    out = np.full((nobj, 4), NAN)
    for o in range(nobj):
        ga, gb = seg_off[2 * o], seg_off[2 * o + 1]
        ra, rb = seg_off[2 * o + 1], seg_off[2 * o + 2]
        if gb - ga < 1 or rb - ra < 1:
            continue
        gmin_r = mag_raw[ga:gb].min()
        rmin_r = mag_raw[ra:rb].min()
        gmin_c = mag_ml[ga:gb].min()
        rmin_c = mag_ml[ra:rb].min()
        gmax_raw = gmin_r - rmin_r
        gmean_raw = mag_raw[ga:gb].mean() - mag_raw[ra:rb].mean()
        gmax_c = gmin_c - rmin_c
        gmean_c = mag_ml[ga:gb].mean() - mag_ml[ra:rb].mean()
        out[o, 0] = gmax_raw
        out[o, 2] = gmean_raw
        if not (gmax_raw == gmax_c and gmean_raw == gmean_c):
            out[o, 1] = gmax_c
            out[o, 3] = gmean_c
    return out


@njit(cache=True)
def _nanmedian(vals: np.ndarray) -> float:
    fin = vals[~np.isnan(vals)]
    return median(fin) if fin.size > 0 else NAN


@njit(cache=True)
def meta_batch(
    ra: np.ndarray, dec: np.ndarray, sg: np.ndarray, rb: np.ndarray, obj_off: np.ndarray, rot: np.ndarray
) -> np.ndarray:
    """Galactic (b, l) of the mean position (mean of unit vectors), median sgscore1 and median rb per object."""
    nobj = obj_off.size - 1
    out = np.full((nobj, 4), NAN)
    for o in range(nobj):
        a, b = obj_off[o], obj_off[o + 1]
        x = 0.0
        y = 0.0
        z = 0.0
        for i in range(a, b):
            if ra[i] == ra[i] and dec[i] == dec[i]:
                r = np.deg2rad(ra[i])
                d = np.deg2rad(dec[i])
                x += np.cos(d) * np.cos(r)
                y += np.cos(d) * np.sin(r)
                z += np.sin(d)
        norm = np.sqrt(x * x + y * y + z * z)
        if norm > 0.0:
            gx = rot[0, 0] * x + rot[0, 1] * y + rot[0, 2] * z
            gy = rot[1, 0] * x + rot[1, 1] * y + rot[1, 2] * z
            gz = rot[2, 0] * x + rot[2, 1] * y + rot[2, 2] * z
            out[o, 0] = np.rad2deg(np.arcsin(min(max(gz / norm, -1.0), 1.0)))
            out[o, 1] = np.rad2deg(np.arctan2(gy, gx)) % 360.0
        out[o, 2] = _nanmedian(sg[a:b])
        out[o, 3] = _nanmedian(rb[a:b])
    return out
