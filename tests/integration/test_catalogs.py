"""Importing the real catalogues (VSX, GCVS, SPICY, the AllWISE sample) and cross-matching against them."""

from __future__ import annotations

import argparse
import json
import time

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from alert_broker.features.xmatch import angular_distance_arcsec, crossmatch
from alert_broker.pipeline import catalog_cli
from alert_broker.storage.catalogs import (
    INDEX_COLUMN,
    PIXEL_CACHE,
    Catalog,
    _PixelCache,
    healpix29,
    import_catalog,
    read_properties,
)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="broker")
    catalog_cli.register(parser.add_subparsers(dest="command", required=True))
    return catalog_cli.run(parser.parse_args(argv))


@pytest.fixture(scope="module")
def vsx(shared_data, tmp_path_factory):
    """The whole of VSX (1.9M rows) imported at order 3 (~2-3 s here; order 5 takes ~7 s)."""
    root = tmp_path_factory.mktemp("catalogs")
    src = shared_data / "catalogs" / "vsx.parquet"
    t0 = time.perf_counter()
    info = import_catalog("vsx", src, "RAJ2000", "DEJ2000", root, order=3)
    print(f"\nVSX import: {info.total_rows} rows in {time.perf_counter() - t0:.1f} s")
    return Catalog(root, "vsx"), pd.read_parquet(src)


def test_vsx_layout_and_row_counts(vsx) -> None:
    cat, src = vsx
    base = cat.base
    assert cat.info.total_rows == len(src) == 1_933_544
    parts = pd.read_csv(base / "partition_info.csv")
    assert list(parts.columns) == ["Norder", "Npix", "num_rows"] and (parts["Norder"] == 3).all()
    assert parts["num_rows"].sum() == len(src)
    assert pq.ParquetFile(base / "dataset" / "_metadata").metadata.num_rows == len(src)
    lines = (base / "properties").read_text().splitlines()
    props = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    assert props["hats_nrows"] == str(len(src)) and props["hats_col_ra"] == "RAJ2000"
    assert props["dataproduct_type"] == "object" and props["hats_col_healpix"] == INDEX_COLUMN
    # read every pixel back: same rows, each in the pixel its position says, sorted by _healpix_29
    PIXEL_CACHE.clear()
    for npix in parts["Npix"].sample(40, random_state=1):
        path = base / "dataset" / "Norder=3" / f"Dir={npix // 10000 * 10000}" / f"Npix={npix}.parquet"
        df = pd.read_parquet(path)
        h = df[INDEX_COLUMN].to_numpy()
        assert np.all(np.diff(h) >= 0)
        assert np.all(h >> (2 * 26) == npix)
        np.testing.assert_array_equal(h, healpix29(df["RAJ2000"], df["DEJ2000"]))
    every = cat.load(set(parts["Npix"].tolist()))
    assert len(every) == len(src)
    # types were stripped of their padding, and _row points back to the source row
    back = every.set_index("_row").sort_index()
    np.testing.assert_array_equal(back["RAJ2000"].to_numpy(), src["RAJ2000"].to_numpy())
    assert (back["VType"].to_numpy() == src["VType"].str.strip().to_numpy()).all()


def test_cones_around_known_vsx_stars_find_them(vsx) -> None:
    cat, src = vsx
    rng = np.random.default_rng(11)
    rows = rng.choice(len(src), 300, replace=False)
    stars = src.iloc[rows]
    # 1) a cone at the star's own position contains it at distance 0
    for r in rows[:10]:
        found = cat.cone(src["RAJ2000"].iat[r], src["DEJ2000"].iat[r], 5.0)
        assert r in set(found["_row"]) and found.loc[found["_row"] == r, "dist_arcsec"].iat[0] < 1e-6
    # 2) objects put 0.5 arcsec off each star (random direction) match the star, at 0.5 arcsec, unless another
    #    VSX star is closer (checked by brute force on the whole catalogue)
    pa = rng.uniform(0, 2 * np.pi, len(rows))
    off = 0.5 / 3600.0
    dec = np.clip(stars["DEJ2000"].to_numpy() + off * np.cos(pa), -90, 90)
    ra = (stars["RAJ2000"].to_numpy() + off * np.sin(pa) / np.cos(np.radians(dec))) % 360.0
    objects = pd.DataFrame({"oid": [f"ZTF{r}" for r in rows], "meanra": ra, "meandec": dec})
    xm = crossmatch(objects, cat, 1.0, columns=["VType"])
    assert len(xm) == len(rows)
    expect_d = angular_distance_arcsec(ra, dec, stars["RAJ2000"], stars["DEJ2000"])
    own = xm["catalog_id"].to_numpy() == rows.astype(str)
    np.testing.assert_allclose(xm["dist_arcsec"].to_numpy()[own], expect_d[own], atol=1e-6, rtol=0)
    for i in np.flatnonzero(~own):  # a closer neighbour must really exist
        assert xm["dist_arcsec"].iat[i] <= expect_d[i]
    assert own.mean() > 0.95
    vtypes = [json.loads(p)["VType"] for p in xm["properties"]]
    assert vtypes[0] == src["VType"].iat[int(xm["catalog_id"].iat[0])].strip()


def test_gcvs_and_spicy_through_the_cli(shared_data, tmp_path) -> None:
    cats = shared_data / "catalogs"
    assert _cli(["catalog", "import", "gcvs", str(cats / "gcvs.parquet"), "--ra", "ra", "--dec", "dec",
                 "--columns", "VarType", "--order", "3", "--margin", "0", "--root", str(tmp_path)]) == 0  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "gcvs").iterdir()) == ["collection.properties", "gcvs"]
    assert "all_margins" not in read_properties(tmp_path / "gcvs" / "collection.properties")
    # SPICY through CSV, with an id column, to exercise another reader
    spicy = pd.read_parquet(cats / "spicy.parquet")
    spicy.insert(0, "spicy_id", np.arange(1, len(spicy) + 1) * 10)
    spicy.to_csv(tmp_path / "spicy.csv", index=False)
    assert _cli(["catalog", "import", "spicy", str(tmp_path / "spicy.csv"), "--ra", "RAdeg", "--dec", "DEdeg",
                 "--id", "spicy_id", "--root", str(tmp_path)]) == 0  # fmt: skip
    for name, n in (("gcvs", 59_099), ("spicy", 117_446)):
        cat = Catalog(tmp_path, name)
        assert cat.info.total_rows == n
        assert len(cat.load(set(cat.partitions.index.tolist()))) == n
    spicy_cat = Catalog(tmp_path, "spicy")
    star = spicy.iloc[1234]
    xm = crossmatch(
        pd.DataFrame({"oid": ["x"], "meanra": [star["RAdeg"]], "meandec": [star["DEdeg"]]}),
        spicy_cat,
        1.0,
        ["class"],
    )
    assert xm["catalog_id"].tolist() == [str(star["spicy_id"])]
    assert json.loads(xm["properties"].iat[0]) == {"class": star["class"].strip()}
    assert (tmp_path / "spicy" / "spicy_5arcs" / "properties").is_file()  # the default margin
    # bad input gives a message and a non-zero exit, not a traceback
    assert _cli(["catalog", "import", "bad", str(tmp_path / "spicy.csv"), "--ra", "nope", "--dec", "DEdeg",
                 "--root", str(tmp_path)]) == 1  # fmt: skip
    # a name with a space could not be listed in collection.properties (HATS separates names by spaces)
    assert _cli(["catalog", "import", "my cat", str(tmp_path / "spicy.csv"), "--ra", "RAdeg", "--dec", "DEdeg",
                 "--root", str(tmp_path)]) == 1  # fmt: skip
    # a margin wider than a quarter of a pixel (order 13: ~26 arcsec) is refused
    assert _cli(["catalog", "import", "bad", str(tmp_path / "spicy.csv"), "--ra", "RAdeg", "--dec", "DEdeg",
                 "--order", "13", "--margin", "10", "--root", str(tmp_path)]) == 1  # fmt: skip


def test_fits_import(shared_data, tmp_path) -> None:
    from astropy.table import Table

    gcvs = pd.read_parquet(shared_data / "catalogs" / "gcvs.parquet").iloc[:5000]
    Table.from_pandas(gcvs).write(tmp_path / "gcvs.fits")
    info = import_catalog("g", tmp_path / "gcvs.fits", "ra", "dec", tmp_path, order=2)
    cat = Catalog(tmp_path, "g")
    back = cat.load(set(cat.partitions.index.tolist())).sort_values("_row")
    assert info.total_rows == 5000 and len(back) == 5000
    np.testing.assert_array_equal(back["dec"].to_numpy(), gcvs["dec"].to_numpy())


def test_allwise_reference(shared_data, tmp_path) -> None:
    """Reproduce the CDS cross-match of the ALeRCE AllWISE sample.

    ``response.csv`` holds the best AllWISE match the CDS service gave each input within its radius; its
    largest ``angDist`` is 0.9927 arcsec, so the service ran with 1 arcsec (the radius ALeRCE uses for AllWISE).
    Importing the response as the catalogue and matching the inputs within 1 arcsec must give back the same
    matched inputs, the same AllWISE ids and the same distances (to the rounding of the published
    coordinates: RAJ2000/DEJ2000 carry 7 decimals, 0.36 mas).
    """
    ref_dir = shared_data / "catalogs" / "allwise_sample"
    inputs = pd.read_csv(ref_dir / "input.csv")
    ref = pd.read_csv(ref_dir / "response.csv")
    radius = 1.0
    assert ref["angDist"].max() <= radius < ref["angDist"].max() + 0.05
    cols = ["W1mag", "W2mag", "W3mag", "W4mag", "Jmag", "Hmag", "Kmag"]
    import_catalog("allwise", ref_dir / "response.csv", "RAJ2000", "DEJ2000", tmp_path,
                   columns=cols, id_col="AllWISE", order=4)  # fmt: skip
    cat = Catalog(tmp_path, "allwise")
    objects = pd.DataFrame(
        {"oid": inputs["id"].astype(str), "meanra": inputs["ra"], "meandec": inputs["dec"]}
    )
    xm = crossmatch(objects, cat, radius, columns=cols)
    expected = ref.assign(oid=ref["id_in"].astype(str)).set_index("oid")
    got = xm.set_index("oid")
    assert len(inputs) == 5553 and len(ref) == 5440
    assert set(got.index) == set(expected.index)
    assert (got["catalog_id"] == expected.loc[got.index, "AllWISE"]).all()
    diff = np.abs(got["dist_arcsec"].to_numpy() - expected.loc[got.index, "angDist"].to_numpy())
    print(
        f"\nAllWISE: {len(got)}/{len(expected)} matches agree; max |distance - CDS angDist| = {diff.max():.2e} arcsec"
    )
    assert diff.max() < 1e-3
    wide = json.loads(got.loc["587741727654543452", "properties"])
    assert wide["W1mag"] == pytest.approx(10.698) and wide["W2mag"] == pytest.approx(10.444)


def test_vsx_collection_and_margin(vsx) -> None:
    cat, src = vsx
    coll = cat.path
    props = read_properties(coll / "collection.properties")
    assert props == {
        "obs_collection": "vsx",
        "hats_primary_table_url": "vsx",
        "all_margins": "vsx_5arcs",
        "default_margin": "vsx_5arcs",
    }
    mprops = read_properties(coll / "vsx_5arcs" / "properties")
    assert mprops["dataproduct_type"] == "margin" and mprops["hats_margin_threshold"] == "5.0"
    assert mprops["hats_primary_table_url"] == "vsx"
    mparts = pd.read_csv(coll / "vsx_5arcs" / "partition_info.csv")
    margin = pd.read_parquet(coll / "vsx_5arcs" / "dataset")
    assert len(margin) == mparts["num_rows"].sum() == int(mprops["hats_nrows"]) > 0
    assert pq.read_schema(coll / "vsx_5arcs" / "dataset" / "_common_metadata").equals(
        pq.read_schema(cat.base / "dataset" / "_common_metadata")
    )
    # margin rows are catalogue rows, unchanged
    back = src.iloc[margin["_row"].to_numpy()]
    np.testing.assert_array_equal(margin["DEJ2000"].to_numpy(), back["DEJ2000"].to_numpy())


def test_margin_holds_every_row_within_its_threshold_of_a_pixel(tmp_path) -> None:
    """Checked by sampling circles around each source (independent of the neighbour logic in
    ``margin_rows``): a pixel that a circle of the margin's radius reaches must list the source in its margin
    (unless it is the source's own pixel), and no source is in the margin of a pixel more than 2 arcmin away.
    """
    from astropy_healpix import core as hp

    rng = np.random.default_rng(4)
    order, margin = 3, 5.0
    nside = 2**order
    # sources scattered around the borders of order-3 pixels (edges and corners), the poles and RA 0: two
    # within ~20 arcsec, one within a few arcmin (those beyond 2 arcmin must not be in a margin)
    lon, lat = hp.boundaries_lonlat(np.arange(0, 12 * nside**2, 5), 3, nside, order="nested")
    ra = np.degrees(lon.to_value("rad")).ravel()
    dec = np.degrees(lat.to_value("rad")).ravel()
    ra = np.concatenate([ra, [0.0, 0.0, 0.0, 359.9999]])
    dec = np.concatenate([dec, [90.0, -90.0, 12.0, -40.0]])
    n = ra.size * 3
    jitter = rng.normal(0, 1, (2, n)) * np.repeat([[8 / 3600, 8 / 3600, 90 / 3600]], ra.size, axis=0).ravel()
    dec = np.clip(np.repeat(dec, 3) + jitter[1], -90, 90)
    ra = (np.repeat(ra, 3) + jitter[0] / np.maximum(np.cos(np.radians(dec)), 1e-3)) % 360.0
    pd.DataFrame({"ra": ra, "dec": dec}).to_parquet(tmp_path / "b.parquet")
    import_catalog("b", tmp_path / "b.parquet", "ra", "dec", tmp_path, order=order, margin_arcsec=margin)
    files = list((tmp_path / "b" / "b_5arcs" / "dataset").rglob("Npix=*.parquet"))
    written = set()
    for f in files:
        npix = int(f.stem.split("=")[1])
        rows = pd.read_parquet(f)
        h = rows[INDEX_COLUMN].to_numpy()
        assert np.all(np.diff(h) >= 0) and np.all(h >> (2 * (29 - order)) != npix)
        written |= {(r, npix) for r in rows["_row"].tolist()}
    own = hp.lonlat_to_healpix(ra * u.deg, dec * u.deg, nside, order="nested")

    def reached(radius_arcsec: float) -> set[tuple[int, int]]:
        """(source, pixel) pairs where a point on the circle of that radius around the source lies."""
        theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)[None, :, None]
        # the circle as 3-vectors: cos(delta) p + sin(delta) (cos(theta) e1 + sin(theta) e2), with (e1, e2)
        # any orthonormal pair perpendicular to p: exact everywhere, the poles included
        p = np.stack([np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
                      np.cos(np.radians(dec)) * np.sin(np.radians(ra)), np.sin(np.radians(dec))], axis=1)  # fmt: skip
        ref = np.where(np.abs(p[:, 2:3]) > 0.9, [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]])
        e1 = np.cross(ref, p)
        e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
        e2 = np.cross(p, e1)
        out = set()
        for frac in (1.0, 0.5):
            delta = np.radians(frac * radius_arcsec / 3600.0)
            v = np.cos(delta) * p[:, None] + np.sin(delta) * (
                np.cos(theta) * e1[:, None] + np.sin(theta) * e2[:, None]
            )
            c_ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
            c_dec = np.degrees(np.arcsin(np.clip(v[..., 2], -1, 1)))
            pix = hp.lonlat_to_healpix(c_ra.ravel() * u.deg, c_dec.ravel() * u.deg, nside, order="nested")
            pix = pix.reshape(c_ra.shape)
            i, j = np.nonzero(pix != own[:, None])
            out |= set(zip(i.tolist(), pix[i, j].tolist(), strict=True))
        return out

    need = reached(margin * 0.999)
    assert len(need) > 1000
    assert need <= written
    assert written <= reached(120.0)


def test_pixel_cache_is_bounded_by_rows(vsx) -> None:
    cat, _ = vsx
    cache = _PixelCache(max_rows=60_000)
    sizes = cat.partitions.sort_values().iloc[-40:-30]  # pixels of a few 10^4 rows
    for p in sizes.index:
        cache.get(("t", p), lambda p=p: cat.load({p}))
        assert cache.rows <= max(60_000, sizes.max())
    assert cache.misses == 10 and len(cache._frames) < 10
    last = int(sizes.index[-1])
    cache.get(("t", last), lambda: pytest.fail("cached frame should be reused"))
    assert cache.hits == 1


def test_reimport_replaces_the_catalogue_and_its_cached_pixels(tmp_path) -> None:
    df = pd.DataFrame({"ra": [10.0, 10.0001], "dec": [5.0, 5.0], "v": [1, 2]})
    df.to_csv(tmp_path / "a.csv", index=False)
    import_catalog("a", tmp_path / "a.csv", "ra", "dec", tmp_path, order=6)
    cat = Catalog(tmp_path, "a")
    assert len(cat.load(cat.pixels_for([10.0], [5.0], 1.0))) == 2
    df.iloc[:1].to_csv(tmp_path / "a.csv", index=False)
    import_catalog("a", tmp_path / "a.csv", "ra", "dec", tmp_path, order=6)
    cat = Catalog(tmp_path, "a")
    assert len(cat.load(cat.pixels_for([10.0], [5.0], 1.0))) == 1
    assert len(list((tmp_path / "a").rglob("*.parquet"))) == 1  # one pixel, no margin rows


def test_catalogues_imported_before_the_collection_layout_still_read(tmp_path) -> None:
    """The previous layout had the object catalogue directly in ``{root}/{name}/`` and no margin."""
    df = pd.DataFrame({"ra": [10.0, 10.0001, 200.0], "dec": [5.0, 5.0, -30.0], "v": [1, 2, 3]})
    df.to_csv(tmp_path / "a.csv", index=False)
    import_catalog("a", tmp_path / "a.csv", "ra", "dec", tmp_path, order=4, margin_arcsec=0)
    coll = tmp_path / "a"
    (coll / "collection.properties").unlink()
    for f in list((coll / "a").iterdir()):
        f.rename(coll / f.name)
    (coll / "a").rmdir()
    cat = Catalog(tmp_path, "a")
    assert cat.base == coll and cat.info.total_rows == 3
    assert sorted(cat.cone(10.0, 5.0, 1.0)["v"]) == [1, 2]
    # re-importing replaces the old layout by the collection, leaving none of the old files behind
    import_catalog("a", tmp_path / "a.csv", "ra", "dec", tmp_path, order=4)
    assert sorted(p.name for p in coll.iterdir()) == ["a", "a_5arcs", "collection.properties"]
    assert Catalog(tmp_path, "a").base == coll / "a"
