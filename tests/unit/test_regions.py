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


def test_order29_ranges_hold_exactly_the_points_of_the_pixels():
    """Random points: a point's order-29 index lies in the ranges of a pixel set iff its pixel at that order is in
    the set (pixel p of order k is [p * 4**(29 - k), (p + 1) * 4**(29 - k))); adjacent pixels merge into one."""
    from alert_broker.features.healpix import healpix29, order29_ranges, pixel_of

    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 360, 20_000)
    dec = np.rad2deg(np.arcsin(rng.uniform(-1, 1, 20_000)))
    order = 3
    chosen = np.array([5, 6, 7, 100, 300, 301])
    lows, highs = order29_ranges(chosen, order)
    assert len(lows) == 3 and lows == sorted(lows)  # 5-7 and 300-301 merged
    assert lows[0] == 5 * 4 ** (29 - order) and highs[0] == 8 * 4 ** (29 - order) - 1
    h = healpix29(ra, dec)
    lo, hi = np.asarray(lows), np.asarray(highs)
    i = np.searchsorted(lo, h, side="right") - 1
    inside = (i >= 0) & (h <= hi[np.clip(i, 0, None)])
    np.testing.assert_array_equal(inside, np.isin(pixel_of(ra, dec, order), chosen))
    assert order29_ranges(np.array([], dtype=np.int64), order) == ([], [])


def test_with_neighbours_holds_every_point_near_the_pixels():
    """A point 30 arcsec from another lies in the other's pixel or one touching it, at an order whose pixels
    are ~50 arcsec wide (so that many pairs cross a border); a pixel away from the faces' corners has eight
    neighbours."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from alert_broker.features.healpix import pixel_of, with_neighbours

    rng = np.random.default_rng(4)
    order = 12
    n = 2_000
    first = SkyCoord(rng.uniform(0, 360, n) * u.deg, np.rad2deg(np.arcsin(rng.uniform(-1, 1, n))) * u.deg)
    second = first.directional_offset_by(rng.uniform(0, 360, n) * u.deg, 30 * u.arcsec)
    a = pixel_of(first.ra.deg, first.dec.deg, order)
    b = pixel_of(second.ra.deg, second.dec.deg, order)
    assert (a != b).sum() > n // 4  # the test crosses borders
    for k in range(n):
        assert b[k] in with_neighbours(a[k : k + 1], order)
    mid = pixel_of(np.array([45.0]), np.array([20.0]), 4)
    assert len(with_neighbours(mid, 4)) == 9
    assert len(with_neighbours(np.array([], dtype=np.int64), 4)) == 0
