"""Sky-region grouping: one region per object, contiguous HEALPix runs, balanced load."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alert_broker.pipeline.regions import assign_regions, healpix_pixels


def test_healpix_known_pixels():
    # order 0 nested: the north pole is in base pixel 0..3, the south pole in 8..11, (0,0) in pixel 4
    assert healpix_pixels(np.array([45.0]), np.array([89.9]), 0)[0] == 0
    assert healpix_pixels(np.array([0.0]), np.array([0.0]), 0)[0] == 4
    assert 8 <= healpix_pixels(np.array([45.0]), np.array([-89.9]), 0)[0] <= 11
    # nested: the parent of a pixel at order k+1 is pixel // 4 at order k
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, 1000), np.degrees(np.arcsin(rng.uniform(-1, 1, 1000)))
    assert np.array_equal(healpix_pixels(ra, dec, 8) // 4, healpix_pixels(ra, dec, 7))


def test_assign_regions_one_region_per_object_and_balanced():
    rng = np.random.default_rng(2)
    n_obj = 400
    ra0, dec0 = rng.uniform(0, 360, n_obj), np.degrees(np.arcsin(rng.uniform(-1, 1, n_obj)))
    rows = []
    for i in range(n_obj):
        for k in range(rng.integers(1, 4)):
            # later alerts jitter by ~1 arcsec: must not move the object to another region
            rows.append((f"o{i}", 59000.0 + k, ra0[i] + k * 3e-4, dec0[i]))
    alerts = pd.DataFrame(rows, columns=["oid", "mjd", "ra", "dec"])
    regions = assign_regions(alerts, n_regions=8, order=10)
    assert regions.index.is_unique and set(regions.index) == set(alerts["oid"])
    assert set(regions.unique()) == set(range(8))
    load = alerts["oid"].map(regions).value_counts()
    assert load.max() < 2.0 * len(alerts) / 8
    # regions are contiguous runs of pixels: sorting objects by pixel gives non-decreasing region numbers
    pix = regions.attrs["pixels"].sort_values()
    assert (np.diff(regions.reindex(pix.index).to_numpy()) >= 0).all()


def test_assign_regions_small_and_empty():
    one = pd.DataFrame({"oid": ["a", "a"], "mjd": [2.0, 1.0], "ra": [10.0, 10.0], "dec": [5.0, 5.0]})
    r = assign_regions(one, n_regions=8, order=10)
    assert r.to_dict() == {"a": 0}
    assert assign_regions(one.iloc[0:0], 4, 10).empty
