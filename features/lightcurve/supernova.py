"""Supernova-oriented features of one band from its detections and non-detections (ALeRCE's SN extractors).

Non-detections of a band are split at the band's first detection: those strictly earlier say how deep the
position was observed before the object appeared (a young transient has deep, recent limits), the rest count
the epochs it was missed afterwards.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._nb import NAN, sorted_median

SN_NAMES: tuple[str, ...] = (
    "delta_mag_fid",
    "delta_mjd_fid",
    "first_mag",
    "mean_mag",
    "min_mag",
    "n_det",
    "n_neg",
    "n_pos",
    "positive_fraction",
    "n_non_det_before_fid",
    "max_diffmaglim_before_fid",
    "median_diffmaglim_before_fid",
    "last_diffmaglim_before_fid",
    "last_mjd_before_fid",
    "dmag_non_det_fid",
    "dmag_first_det_fid",
    "n_non_det_after_fid",
    "max_diffmaglim_after_fid",
    "median_diffmaglim_after_fid",
)
N_SN = len(SN_NAMES)


@njit(cache=True)
def sn_batch(
    t: np.ndarray,
    m: np.ndarray,
    sign: np.ndarray,
    seg_off: np.ndarray,
    nd_t: np.ndarray,
    nd_lim: np.ndarray,
    nd_off: np.ndarray,
) -> np.ndarray:
    """SN features for every segment with at least one detection (detections and non-detections time-sorted)."""
    nseg = seg_off.size - 1
    out = np.full((nseg, N_SN), NAN)
    for s in range(nseg):
        a = seg_off[s]
        b = seg_off[s + 1]
        n = b - a
        if n < 1:
            continue
        row = out[s]
        mmin = np.inf
        mmax = -np.inf
        msum = 0.0
        npos = 0
        nneg = 0
        for i in range(a, b):
            mmin = min(mmin, m[i])
            mmax = max(mmax, m[i])
            msum += m[i]
            if sign[i] > 0:
                npos += 1
            elif sign[i] < 0:
                nneg += 1
        first_t = t[a]
        first_m = m[a]
        row[0] = mmax - mmin
        row[1] = t[b - 1] - first_t
        row[2] = first_m
        row[3] = msum / n
        row[4] = mmin
        row[5] = float(npos + nneg)
        row[6] = float(nneg)
        row[7] = float(npos)
        row[8] = npos / (npos + nneg) if npos + nneg > 0 else NAN
        na = nd_off[s]
        nb = nd_off[s + 1]
        split = na
        while split < nb and nd_t[split] < first_t:
            split += 1
        nbefore = split - na
        row[9] = float(nbefore)
        if nbefore > 0:
            lims = np.sort(nd_lim[na:split])
            row[10] = lims[nbefore - 1]
            row[11] = sorted_median(lims)
            row[12] = nd_lim[split - 1]
            row[13] = nd_t[split - 1]
            row[14] = row[11] - mmin
            row[15] = row[12] - first_m
        nafter = nb - split
        row[16] = float(nafter)
        if nafter > 0:
            lims = np.sort(nd_lim[split:nb])
            row[17] = lims[nafter - 1]
            row[18] = sorted_median(lims)
    return out
