"""Grouping a micro-batch by sky region (HEALPix, nested scheme).

Every object of a batch goes to exactly one region task, chosen from the position of its earliest alert in the
batch, so its magstats are computed once from all its detections. Regions are runs of consecutive nested pixels
(spatially compact, the way hats/lsdb partition the sky), cut so each region task gets about the same number of
alerts: a crowded field does not make one straggler task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alert_broker.features.healpix import healpix_pixels


def assign_regions(alerts: pd.DataFrame, n_regions: int, order: int) -> pd.Series:
    """Map each ``oid`` to a region number in ``[0, n_regions)``.

    ``alerts`` needs ``oid``, ``mjd``, ``ra``, ``dec``. The object's pixel is that of its earliest alert; the
    sorted distinct pixels are cut into at most ``n_regions`` contiguous runs of roughly equal alert counts.
    """
    if alerts.empty:
        return pd.Series(dtype="int64", name="region")
    first = alerts.sort_values(["oid", "mjd"], kind="stable").drop_duplicates("oid")
    pix = pd.Series(
        healpix_pixels(first["ra"].to_numpy(), first["dec"].to_numpy(), order), index=first["oid"]
    )
    weight = alerts.groupby("oid").size().reindex(pix.index)
    by_pixel = weight.groupby(pix.to_numpy()).sum().sort_index()
    n = max(1, min(n_regions, len(by_pixel)))
    cum = by_pixel.cumsum().to_numpy()
    total = cum[-1]
    # region k holds the pixels whose cumulative weight falls in ((k)/n, (k+1)/n] of the total
    region_of_pixel = np.minimum((n * (cum - by_pixel.to_numpy()) // total).astype(np.int64), n - 1)
    mapping = pd.Series(region_of_pixel, index=by_pixel.index)
    out = pd.Series(mapping.reindex(pix.to_numpy()).to_numpy(), index=pix.index, name="region")
    out.attrs["pixels"] = pix
    return out
