"""Imported catalogues are real HATS collections: ``hats`` validates and reads them, ``lsdb`` opens them with
their margin, and its cone search and cross-match agree with brute force and with ``features.xmatch``.

Skipped where hats/lsdb are not installed (they are test extras, not runtime dependencies).
"""

from __future__ import annotations

import logging

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy_healpix import core as hp

from alert_broker.features.xmatch import crossmatch
from alert_broker.storage.catalogs import Catalog, import_catalog

hats = pytest.importorskip("hats")
lsdb = pytest.importorskip("lsdb")

ALLWISE_COLUMNS = ["W1mag", "W2mag", "W3mag", "W4mag", "Jmag", "Hmag", "Kmag"]


@pytest.fixture(scope="module")
def spicy(shared_data, tmp_path_factory):
    """SPICY (117,446 YSOs in the Galactic plane) imported at order 4 with the default 5 arcsec margin."""
    root = tmp_path_factory.mktemp("hats")
    src = shared_data / "catalogs" / "spicy.parquet"
    import_catalog("spicy", src, "RAdeg", "DEdeg", root, order=4)
    return Catalog(root, "spicy"), pd.read_parquet(src)


@pytest.fixture(scope="module")
def allwise(shared_data, tmp_path_factory):
    """The AllWISE sources the CDS service returned for the ALeRCE sample, and the sample's input positions
    (order 2: lsdb's cost is per partition, and these 5,440 sources spread over the whole sky)."""
    root = tmp_path_factory.mktemp("hats_allwise")
    ref_dir = shared_data / "catalogs" / "allwise_sample"
    import_catalog("allwise", ref_dir / "response.csv", "RAJ2000", "DEJ2000", root,
                   columns=ALLWISE_COLUMNS, id_col="AllWISE", order=2)  # fmt: skip
    return Catalog(root, "allwise"), pd.read_csv(ref_dir / "input.csv")


def _sep_arcsec(ra0, dec0, ra, dec) -> np.ndarray:
    """Angular distances with astropy (independent of features.xmatch)."""
    return SkyCoord(ra0 * u.deg, dec0 * u.deg).separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec


def test_hats_validates_and_reads_the_collection(spicy, caplog) -> None:
    from hats.io.validation import is_valid_collection

    cat, src = spicy
    with caplog.at_level(logging.WARNING):
        assert is_valid_collection(cat.path, strict=True), caplog.text
    coll = hats.read_hats(cat.path)
    assert isinstance(coll, hats.catalog.CatalogCollection)
    main = coll.main_catalog
    info = main.catalog_info
    assert info.catalog_type == "object" and info.catalog_name == "spicy"
    assert info.total_rows == len(src) == 117_446
    assert (info.ra_column, info.dec_column) == ("RAdeg", "DEdeg")
    assert (info.healpix_column, info.healpix_order) == ("_healpix_29", 29)
    # the partitions are exactly the order-4 pixels (nside 16) that hold a source
    expected = np.unique(
        hp.lonlat_to_healpix(
            src["RAdeg"].to_numpy() * u.deg, src["DEdeg"].to_numpy() * u.deg, 16, order="nested"
        )
    )
    pixels = main.get_healpix_pixels()
    assert {p.order for p in pixels} == {4}
    assert sorted(p.pixel for p in pixels) == expected.tolist()
    assert info.hats_max_rows == cat.partitions.max()
    margin = hats.read_hats(coll.default_margin_catalog_dir)
    assert margin.catalog_info.catalog_type == "margin"
    assert margin.catalog_info.margin_threshold == 5.0 and margin.catalog_info.primary_catalog == "spicy"


def test_lsdb_opens_every_row_with_the_margin(spicy) -> None:
    cat, src = spicy
    lc = lsdb.open_catalog(cat.path)
    assert lc.margin is not None and lc.margin.hc_structure.catalog_info.margin_threshold == 5.0
    assert len(lc.get_healpix_pixels()) == len(cat.partitions)
    df = lc.compute(progress_bar=False)
    assert len(df) == len(src) and df.index.name == "_healpix_29"
    back = df.set_index("_row").sort_index()
    assert back.index.tolist() == list(range(len(src)))
    np.testing.assert_array_equal(back["DEdeg"].to_numpy(), src["DEdeg"].to_numpy())
    assert (back["class"].to_numpy() == src["class"].str.strip().to_numpy()).all()
    # the margin holds copies of catalogue rows near partition borders (its geometry: test_catalogs.py)
    margin = lc.margin.compute(progress_bar=False)
    assert 0 < len(margin) < len(src) * 0.05
    assert set(margin["_row"]) <= set(back.index)


def test_lsdb_cone_search_equals_brute_force(spicy) -> None:
    cat, src = spicy
    lc = lsdb.open_catalog(cat.path)
    rng = np.random.default_rng(5)
    centres = src.sample(4, random_state=3)[["RAdeg", "DEdeg"]].to_numpy().tolist()
    # one cone on an order-4 pixel corner, so it spans several partitions
    corner = hp.boundaries_lonlat([int(cat.partitions.idxmax())], 1, 16, order="nested")
    centres.append([float(corner[0].to(u.deg).value[0, 0]), float(corner[1].to(u.deg).value[0, 0])])
    for (ra0, dec0), radius in zip(centres, rng.uniform(300, 1800, len(centres)), strict=True):
        got = lc.cone_search(ra0, dec0, radius).compute(progress_bar=False)
        d = _sep_arcsec(ra0, dec0, src["RAdeg"].to_numpy(), src["DEdeg"].to_numpy())
        expected = np.flatnonzero(d <= radius)
        assert len(expected) > 0
        assert sorted(got["_row"].tolist()) == expected.tolist()
        # our own reader agrees
        assert sorted(cat.cone(ra0, dec0, radius)["_row"].tolist()) == expected.tolist()


def _objects_catalog(objects: pd.DataFrame):
    """The objects as an lsdb catalogue (the left side of a cross-match needs no margin)."""
    return lsdb.from_dataframe(
        objects, ra_column="ra", dec_column="dec", catalog_name="ztf", margin_threshold=None
    )


def _compare(lsdb_xm: pd.DataFrame, ours: pd.DataFrame, id_col: str) -> None:
    got = lsdb_xm.set_index("oid").sort_index()
    mine = ours.set_index("oid").sort_index()
    assert got.index.tolist() == mine.index.tolist()
    assert (got[id_col].astype(str).to_numpy() == mine["catalog_id"].to_numpy()).all()
    np.testing.assert_allclose(got["_dist_arcsec"], mine["dist_arcsec"], atol=1e-6, rtol=0)


def test_lsdb_crossmatch_of_the_allwise_sample_equals_ours(allwise) -> None:
    cat, inputs = allwise
    objects = pd.DataFrame({"oid": inputs["id"].astype(str), "ra": inputs["ra"], "dec": inputs["dec"]})
    left = _objects_catalog(objects)
    right = lsdb.open_catalog(cat.path)
    xm = left.crossmatch(
        right, radius_arcsec=1.0, n_neighbors=1, suffix_method="overlapping_columns", log_changes=False
    ).compute(progress_bar=False)
    ours = crossmatch(objects.rename(columns={"ra": "meanra", "dec": "meandec"}), cat, 1.0)
    assert len(ours) == 5440  # the CDS reference (test_catalogs.test_allwise_reference)
    _compare(xm, ours, "AllWISE")


def test_lsdb_crossmatch_across_pixel_borders_uses_the_margin(spicy) -> None:
    """Objects 2 arcsec from SPICY sources near partition borders, pushed across the border where a direction
    does that: their nearest source is in another partition, which lsdb finds only through the margin."""
    cat, src = spicy
    lc = lsdb.open_catalog(cat.path)
    near = np.sort(lc.margin.compute(progress_bar=False)["_row"].unique())
    rng = np.random.default_rng(8)
    rows = np.concatenate([near, rng.choice(len(src), 1000, replace=False)])
    s_ra, s_dec = src["RAdeg"].to_numpy()[rows], src["DEdeg"].to_numpy()[rows]
    s_pix = hp.lonlat_to_healpix(s_ra * u.deg, s_dec * u.deg, 16, order="nested")
    off = 2.0 / 3600.0
    ra = dec = None
    crossed = np.zeros(rows.size, dtype=bool)
    for angle in rng.uniform(0, 2 * np.pi, 8):  # keep the first direction that leaves the source's pixel
        d = np.clip(s_dec + off * np.cos(angle), -90, 90)
        r = (s_ra + off * np.sin(angle) / np.cos(np.radians(d))) % 360.0
        if ra is None:
            ra, dec = r.copy(), d.copy()
        take = ~crossed & (hp.lonlat_to_healpix(r * u.deg, d * u.deg, 16, order="nested") != s_pix)
        ra[take], dec[take] = r[take], d[take]
        crossed |= take
    assert crossed.sum() >= 30
    objects = pd.DataFrame({"oid": [f"o{i}" for i in range(rows.size)], "ra": ra, "dec": dec})
    left = _objects_catalog(objects)
    kw = {
        "radius_arcsec": 3.0,
        "n_neighbors": 1,
        "suffix_method": "overlapping_columns",
        "log_changes": False,
    }
    xm = left.crossmatch(lc, **kw).compute(progress_bar=False)
    ours = crossmatch(objects.rename(columns={"ra": "meanra", "dec": "meandec"}), cat, 3.0)
    assert len(ours) == rows.size  # every object has its source (or a closer one) within 2 arcsec
    _compare(xm, ours, "_row")
    # without the margin, lsdb misses sources across the border
    with pytest.warns(RuntimeWarning, match="margin cache"):
        bare = left.crossmatch(lsdb.open_catalog(cat.base), **kw).compute(progress_bar=False)
    assert len(bare) < len(ours)
