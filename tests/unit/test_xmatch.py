"""Nearest-neighbour matching against analytic separations (spherical offsets, not the code under test)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alert_broker.features.xmatch import (
    CatalogTree,
    angular_distance_arcsec,
    crossmatch,
    nearest,
    properties_frame,
)
from alert_broker.storage.catalogs import Catalog, import_catalog


def offset(ra0: float, dec0: float, sep_arcsec: float, pa_deg: float) -> tuple[float, float]:
    """The point ``sep_arcsec`` from (ra0, dec0) at position angle ``pa_deg`` (east of north).

    Rotates the centre's unit vector towards the local north/east tangent vectors (stable at the poles, unlike
    the asin form of the spherical-trigonometry offset)."""
    a, d = np.radians(ra0), np.radians(dec0)
    th, pa = np.radians(sep_arcsec / 3600.0), np.radians(pa_deg)
    centre = np.array([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
    north = np.array([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)])
    east = np.array([-np.sin(a), np.cos(a), 0.0])
    v = np.cos(th) * centre + np.sin(th) * (np.cos(pa) * north + np.sin(pa) * east)
    return float(np.degrees(np.arctan2(v[1], v[0])) % 360.0), float(
        np.degrees(np.arctan2(v[2], np.hypot(v[0], v[1])))
    )


CENTRES = [
    (10.0, 20.0),  # ordinary
    (359.99995, 0.0),  # offsets cross RA = 0/360
    (0.00001, -45.0),
    (123.0, 89.99990),  # offsets cross the north pole
    (250.0, -89.99995),  # and the south pole
    (45.0, 0.0),  # on the border of HEALPix base pixels
    (0.0, 41.8103149),  # near the equatorial/polar base-pixel boundary (dec = asin(2/3))
]


@pytest.mark.parametrize(("ra0", "dec0"), CENTRES)
def test_known_separations_are_found_at_the_right_distance(ra0: float, dec0: float) -> None:
    seps = np.array([0.05, 0.3, 0.9, 1.7, 2.5])
    pas = np.array([0.0, 77.0, 181.0, 270.0, 333.0])
    pts = np.array([offset(ra0, dec0, s, p) for s, p in zip(seps, pas, strict=True)])
    # each catalogue source alone: the query at the centre finds it at exactly its separation
    for (ra, dec), sep in zip(pts, seps, strict=True):
        idx, dist = nearest([ra0], [dec0], [ra], [dec], 3.0)
        assert idx[0] == 0
        assert abs(dist[0] - sep) < 1e-6, (ra0, dec0, sep, dist[0])
    # all together: the nearest is the 0.05 arcsec one
    idx, dist = nearest([ra0], [dec0], pts[:, 0], pts[:, 1], 3.0)
    assert idx[0] == 0 and abs(dist[0] - 0.05) < 1e-6


def test_nothing_beyond_the_radius() -> None:
    r = 1.5
    for ra0, dec0 in CENTRES:
        inside = offset(ra0, dec0, r - 1e-5, 40.0)
        outside = offset(ra0, dec0, r + 1e-5, 40.0)
        idx, dist = nearest([ra0, ra0], [dec0, dec0], [inside[0]], [inside[1]], r)
        assert list(idx) == [0, 0] and np.all(np.abs(dist - (r - 1e-5)) < 1e-6)
        idx, dist = nearest([ra0], [dec0], [outside[0]], [outside[1]], r)
        assert idx[0] == -1 and np.isnan(dist[0])


def test_nearest_is_chosen_among_several_and_misses_are_minus_one() -> None:
    ra0, dec0 = 200.0, -30.0
    seps = [1.2, 0.4, 0.8, 0.41, 3.0]
    cat = np.array([offset(ra0, dec0, s, 37.0 * i) for i, s in enumerate(seps)])
    far = offset(ra0, dec0, 60.0, 0.0)
    idx, dist = nearest([ra0, far[0]], [dec0, far[1]], cat[:, 0], cat[:, 1], 2.0)
    assert idx[0] == 1 and abs(dist[0] - 0.4) < 1e-6
    assert idx[1] == -1 and np.isnan(dist[1])


def test_agrees_with_brute_force_on_random_sky() -> None:
    rng = np.random.default_rng(7)
    n_cat, n_q = 3000, 400
    # a small patch so many queries have several candidates, across RA = 0
    cat_ra = rng.uniform(-0.01, 0.01, n_cat) % 360.0
    cat_dec = rng.uniform(-0.01, 0.01, n_cat)
    q_ra = rng.uniform(-0.01, 0.01, n_q) % 360.0
    q_dec = rng.uniform(-0.01, 0.01, n_q)
    radius = 0.7
    idx, dist = CatalogTree(cat_ra, cat_dec).nearest(q_ra, q_dec, radius)
    full = angular_distance_arcsec(q_ra[:, None], q_dec[:, None], cat_ra[None, :], cat_dec[None, :])
    best = full.argmin(axis=1)
    best_d = full[np.arange(n_q), best]
    has = best_d <= radius
    assert 0 < has.sum() < n_q  # both cases exercised
    assert np.array_equal(idx >= 0, has)
    np.testing.assert_array_equal(idx[has], best[has])
    np.testing.assert_allclose(dist[has], best_d[has], atol=1e-6, rtol=0)


def test_empty_inputs() -> None:
    idx, dist = nearest([], [], [1.0], [2.0], 1.0)
    assert idx.size == 0 and dist.size == 0
    idx, dist = nearest([1.0], [2.0], [], [], 1.0)
    assert idx[0] == -1 and np.isnan(dist[0])


@pytest.fixture()
def border_catalog(tmp_path):
    """Sources scattered around HEALPix order-2 pixel corners and the poles, imported at order 2."""
    from astropy_healpix import core as hp

    rng = np.random.default_rng(3)
    corners = hp.boundaries_lonlat(np.arange(0, 192, 7), 1, 4, order="nested")
    c_ra = np.degrees(corners[0].to_value("rad")).ravel()
    c_dec = np.degrees(corners[1].to_value("rad")).ravel()
    c_ra = np.concatenate([c_ra, [0.0, 0.0, 180.0]])
    c_dec = np.concatenate([c_dec, [90.0, -90.0, 0.0]])
    per = 40
    ra = np.repeat(c_ra, per) + rng.normal(0, 3 / 3600, c_ra.size * per) / np.maximum(
        np.cos(np.radians(np.repeat(c_dec, per))), 1e-2
    )
    dec = np.clip(np.repeat(c_dec, per) + rng.normal(0, 3 / 3600, c_ra.size * per), -90, 90)
    df = pd.DataFrame({"ra": ra % 360.0, "dec": dec, "name": [f"s{i}" for i in range(ra.size)]})
    df["mag"] = rng.uniform(10, 20, len(df))
    df.loc[::5, "mag"] = np.nan
    df.to_csv(tmp_path / "border.csv", index=False)
    import_catalog("border", tmp_path / "border.csv", "ra", "dec", tmp_path, id_col="name", order=2)
    qra = np.repeat(c_ra, 10) + rng.normal(0, 3 / 3600, c_ra.size * 10)
    qdec = np.clip(np.repeat(c_dec, 10) + rng.normal(0, 3 / 3600, c_ra.size * 10), -90, 90)
    return Catalog(tmp_path, "border"), df, qra % 360.0, qdec


def test_crossmatch_through_pixels_equals_brute_force_at_pixel_borders(border_catalog) -> None:
    cat, df, qra, qdec = border_catalog
    objects = pd.DataFrame({"oid": [f"o{i}" for i in range(qra.size)], "meanra": qra, "meandec": qdec})
    radius = 2.0
    xm = crossmatch(objects, cat, radius, columns=["mag"])
    full = angular_distance_arcsec(
        qra[:, None], qdec[:, None], df["ra"].to_numpy()[None], df["dec"].to_numpy()[None]
    )
    best = full.argmin(axis=1)
    best_d = full[np.arange(qra.size), best]
    has = best_d <= radius
    assert has.sum() > 50 and len(xm) == has.sum()
    expected = pd.DataFrame(
        {"oid": objects["oid"][has], "name": df["name"].to_numpy()[best[has]], "d": best_d[has]}
    )
    got = xm.merge(expected, on="oid", how="outer", validate="1:1")
    assert (got["catalog_id"] == got["name"]).all()
    np.testing.assert_allclose(got["dist_arcsec"], got["d"], atol=1e-6, rtol=0)
    assert (xm["catalog"] == "border").all()
    # selected columns travel as JSON, NaN as null
    props = [json.loads(p) for p in xm["properties"]]
    mags = df.set_index("name").loc[xm["catalog_id"], "mag"].to_numpy()
    for p, m in zip(props, mags, strict=True):
        assert (p["mag"] is None) if np.isnan(m) else p["mag"] == pytest.approx(m, abs=0)
    wide = properties_frame(xm)
    assert list(wide.columns) == ["border_mag"] and len(wide) == len(xm)


def test_pixels_for_covers_every_source_within_the_radius(border_catalog) -> None:
    cat, df, qra, qdec = border_catalog
    from alert_broker.storage.catalogs import healpix29

    src_pix = healpix29(df["ra"].to_numpy(), df["dec"].to_numpy()) >> (2 * (29 - cat.order))
    for radius in (2.0, 30.0, 4 * 3600.0):  # the last is wider than an order-2 pixel (cone-search path)
        for ra, dec in zip(qra[::13], qdec[::13], strict=True):
            pix = cat.pixels_for([ra], [dec], radius)
            d = angular_distance_arcsec(ra, dec, df["ra"].to_numpy(), df["dec"].to_numpy())
            assert set(src_pix[d <= radius].tolist()) <= pix


def test_crossmatch_rejects_unknown_columns(border_catalog) -> None:
    cat, _, qra, qdec = border_catalog
    objects = pd.DataFrame({"oid": ["a"], "meanra": qra[:1], "meandec": qdec[:1]})
    with pytest.raises(ValueError, match="no column"):
        crossmatch(objects, cat, 1.0, columns=["W1mag"])
    empty = crossmatch(objects.iloc[:0], cat, 1.0)
    assert (
        list(empty.columns) == ["oid", "catalog", "catalog_id", "dist_arcsec", "properties"] and empty.empty
    )


def test_benchmark_smoke(capsys) -> None:
    """The benchmark runs and its synthetic matches are what its construction implies (half near a source)."""
    from bench.bench_xmatch import bench_tree

    t = bench_tree(100_000, 20_000, 1.5)
    # half the queries lie N(0, 0.5") per axis from a source: P(r <= 1.5") = 1 - exp(-4.5) = 98.9 %
    assert 0.97 * 10_000 < t["matched"] < 10_000 + 50
    with capsys.disabled():
        print(
            f"\nxmatch: {t['queries_per_s']:,.0f} queries/s/core against 1e5 rows (bench.bench_xmatch for 1e6)"
        )
