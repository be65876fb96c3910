"""The history store (storage.history) and the merge of a batch with it (pipeline.history), on a local lake."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from alert_broker.features.healpix import pixel_of, pixels_around
from alert_broker.features.tables import Tables
from alert_broker.pipeline.history import first_positions, merge_history, write_history
from alert_broker.storage import Lake
from alert_broker.storage.history import HistoryStore, dedupe_rows


def _det(oid, candids, mjd0, ra, dec, has_stamp=None):
    n = len(candids)
    return pd.DataFrame(
        {
            "oid": [oid] * n,
            "candid": np.asarray(candids, dtype=np.int64),
            "survey": "ztf",
            "mjd": mjd0 + np.arange(n, dtype=float),
            "fid": np.array([1, 2] * n, dtype=np.int16)[:n],
            "ra": np.full(n, ra),
            "dec": np.full(n, dec),
            "magpsf": np.linspace(18, 19, n),
            "has_stamp": np.asarray(has_stamp if has_stamp is not None else [False] * (n - 1) + [True]),
        }
    )


def _batch(*dets) -> Tables:
    det = pd.concat(dets, ignore_index=True)
    alerts = det[det["has_stamp"]][["oid", "candid", "mjd", "ra", "dec", "survey"]].reset_index(drop=True)
    nondet = pd.DataFrame(
        {
            "oid": det["oid"].unique(),
            "survey": "ztf",
            "fid": np.int16(1),
            "mjd": det.groupby("oid")["mjd"].min().to_numpy() - 1.5,
            "diffmaglim": 20.0,
        }
    )
    return Tables(alerts=alerts, detections=det, non_detections=nondet)


def test_pixels_around_adds_a_neighbour_only_near_a_border():
    order = 4
    # a pixel centre (far from every border) and a point 1" from the border between two pixels
    from astropy_healpix import HEALPix

    hp = HEALPix(nside=2**order, order="nested")
    lon, lat = hp.healpix_to_lonlat([100])
    centre = pixels_around(np.array([lon.deg[0]]), np.array([lat.deg[0]]), order, 3.0)
    assert list(centre) == [100]
    # walk from the centre of pixel 100 eastwards until the pixel changes: that is the border
    ra = np.linspace(lon.deg[0], lon.deg[0] + 10, 200001)
    pix = pixel_of(ra, np.full(ra.size, lat.deg[0]), order)
    edge = np.argmax(pix != 100)
    near = ra[edge - 1]  # last point inside, within ~0.2" of the border
    got = pixels_around(np.array([near]), np.array([lat.deg[0]]), order, 3.0)
    # every pixel a dense circle of radius 3" touches (east of a pixel centre lies a corner: up to 4 pixels)
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    circle = SkyCoord(near * u.deg, lat.deg[0] * u.deg).directional_offset_by(
        np.linspace(0, 360, 721)[:-1] * u.deg, 3.0 * u.arcsec
    )
    brute = set(pixel_of(circle.ra.deg, circle.dec.deg, order)) | {100}
    assert {100, pix[edge]} <= set(got) <= brute
    far = ra[edge - 200]  # ~36" inside
    assert list(pixels_around(np.array([far]), np.array([lat.deg[0]]), order, 3.0)) == [100]


def test_pixels_around_wraps_ra_and_poles():
    got = pixels_around(np.array([359.9999, 0.0001, 10.0]), np.array([0.0, 0.0, 89.9999]), 3, 2.0)
    assert len(got) >= 3 and (got >= 0).all() and (got < 12 * 4**3).all()


def test_dedupe_prefers_the_alert_packet_then_the_later_row():
    df = pd.DataFrame(
        {
            "oid": ["a", "a", "a"],
            "candid": [1, 1, 2],
            "has_stamp": [True, False, False],
            "magpsf": [1.0, 2.0, 3.0],
        }
    )
    out = dedupe_rows("detections", df)
    assert out.set_index("candid")["magpsf"].to_dict() == {1: 1.0, 2: 3.0}
    nd = pd.DataFrame({"oid": ["a", "a"], "fid": [1, 1], "mjd": [5.0, 5.0], "diffmaglim": [19.0, 20.0]})
    assert dedupe_rows("non_detections", nd)["diffmaglim"].tolist() == [20.0]


def test_merge_write_and_return_across_batches(tmp_path):
    store = HistoryStore(Lake(str(tmp_path / "lake")), order=4)
    night1 = _batch(_det("A", [1, 2, 3], 59000.0, 10.0, 20.0), _det("B", [10, 11], 59000.0, 200.0, -30.0))
    m1 = merge_history(night1, store)
    assert m1.stored_rows == {"detections": 0, "non_detections": 0, "forced_photometry": 0}
    assert set(m1.new_rows["objects"]["oid"]) == {"A", "B"}
    paths = write_history(store, m1, "batch1-r000")
    # one delta file per table, whatever the number of pixels
    assert len(paths) == 3 and all("/history/" in p and "/deltas/batch1-r000.parquet" in p for p in paths)

    # 60 days later: A comes back with only its recent history (candid 3 as a copy) and moved by 0.5"
    later = _det("A", [3, 4, 5], 59060.0, 10.0 + 0.5 / 3600, 20.0, has_stamp=[False, False, True])
    night2 = _batch(later, _det("C", [20], 59060.0, 50.0, 5.0))
    m2 = merge_history(night2, store)
    det = m2.tables.detections
    assert sorted(det[det["oid"] == "A"]["candid"]) == [1, 2, 3, 4, 5]
    # the stored alert packet of candid 3 beats the history copy this batch carried
    assert bool(det[(det["oid"] == "A") & (det["candid"] == 3)]["has_stamp"].iloc[0])
    assert m2.home["A"] == m1.home["A"]
    assert set(m2.new_rows["objects"]["oid"]) == {"C"}
    assert sorted(m2.new_rows["detections"]["candid"]) == [4, 5, 20]  # 3 was stored already
    assert m2.stored_rows["detections"] == 3 and m2.stored_rows["non_detections"] == 1
    write_history(store, m2, "batch2-r000")

    # a second read of unchanged folders comes from this process's cache
    store.read("detections", store.pixels("detections"))
    read_before = store.stats["files_read"]
    store.read("detections", store.pixels("detections"))
    assert store.stats["files_read"] == read_before and store.stats["files_cached"] > 0

    # a fresh process (no cache) sees the same; compaction keeps every row once
    fresh = HistoryStore(Lake(str(tmp_path / "lake")), order=4)
    every = fresh.read("detections", fresh.pixels("detections"))
    assert sorted(every["candid"]) == [1, 2, 3, 4, 5, 10, 11, 20]
    stats = fresh.compact()
    assert stats["deltas"] == 6 and stats["pixels"] >= 2 * 3  # A's and B's pixels, three tables
    assert fresh.delta_files("detections") == []
    assert fresh.read_pixel("detections", m1.home["A"])["candid"].tolist() == [1, 2, 3, 4, 5]
    again = store.read("detections", store.pixels("detections"))  # the first store's cache drops old files
    assert sorted(again["candid"]) == [1, 2, 3, 4, 5, 10, 11, 20]


def test_home_pixel_is_the_first_position_even_across_a_border(tmp_path):
    """An object that first appeared just inside one pixel stays there when a later alert lies across the
    border: it is found by id in the neighbouring pixel."""
    order = 4
    store = HistoryStore(Lake(str(tmp_path / "lake")), order=order)
    ra = np.linspace(30.0, 40.0, 400001)
    pix = pixel_of(ra, np.full(ra.size, 10.0), order)
    edge = int(np.argmax(pix != pix[0]))
    inside, across = ra[edge - 1], ra[edge + 1]
    assert (
        pixel_of(np.array([inside]), np.array([10.0]), order)[0]
        != pixel_of(np.array([across]), np.array([10.0]), order)[0]
    )
    m1 = merge_history(_batch(_det("X", [1, 2], 59000.0, inside, 10.0)), store)
    write_history(store, m1, "b1-r000")
    m2 = merge_history(_batch(_det("X", [3], 59100.0, across, 10.0)), store)
    assert m2.home["X"] == m1.home["X"]
    assert sorted(m2.tables.detections["candid"]) == [1, 2, 3]
    assert m2.new_rows["objects"].empty


def test_cache_is_bounded(tmp_path):
    store = HistoryStore(Lake(str(tmp_path / "lake")), order=2, cache_mb=0)
    m = merge_history(
        _batch(_det("A", [1], 59000.0, 10.0, 20.0), _det("B", [2], 59000.0, 200.0, -30.0)), store
    )
    write_history(store, m, "b-r000")
    store.read("detections", store.pixels("detections"))
    assert len(store._cache) == 1  # a zero budget keeps only the folder just read


def test_first_positions_uses_the_earliest_detection():
    t = _batch(_det("A", [1, 2], 59000.0, 10.0, 20.0))
    t.detections.loc[0, "ra"] = 10.001
    fp = first_positions(t)
    assert fp.loc[0, "ra"] == pytest.approx(10.001) and fp.loc[0, "firstmjd"] == 59000.0


def test_failed_objects_are_not_stored(tmp_path):
    store = HistoryStore(Lake(str(tmp_path / "lake")), order=4)
    m = merge_history(
        _batch(_det("A", [1], 59000.0, 10.0, 20.0), _det("B", [2], 59000.0, 200.0, -30.0)), store
    )
    write_history(store, m, "b-r000", failed_oids=["B"])
    assert set(store.read("objects", store.pixels("objects"))["oid"]) == {"A"}


def _survey(t: Tables, prefix: str, survey: str) -> Tables:
    for df in (t.detections, t.alerts):
        df.loc[df["oid"].str.startswith(prefix), "survey"] = survey
    return t


def test_new_objects_get_a_cross_survey_id_from_stored_objects(tmp_path):
    """A ZTF object stored on night 1; on night 2 an LSST object 1" away takes its id as xid and one 3" away
    (beyond 1.5") keeps its own."""
    store = HistoryStore(Lake(str(tmp_path / "lake")), order=4)
    m1 = merge_history(_batch(_det("ZTF1", [1, 2], 59000.0, 150.0, 2.0)), store)
    assert m1.associations.set_index("oid")["xid"].to_dict() == {"ZTF1": "ZTF1"}
    write_history(store, m1, "b1-r000")

    near = _det("lsst-1", [100], 59001.0, 150.0 + 1.0 / 3600 / np.cos(np.deg2rad(2.0)), 2.0)
    far = _det("lsst-2", [101], 59001.0, 150.0, 2.0 - 3.0 / 3600)
    m2 = merge_history(_survey(_batch(near, far), "lsst", "lsst"), store)
    got = m2.associations.set_index("oid")
    assert got.loc["lsst-1", "xid"] == "ZTF1"
    assert got.loc["lsst-1", "xid_distance_arcsec"] == pytest.approx(1.0, abs=1e-3)
    assert got.loc["lsst-2", "xid"] == "lsst-2"
    write_history(store, m2, "b2-r000")
    stored = store.read("objects", store.pixels("objects")).set_index("oid")
    assert stored.loc["lsst-1", "xid"] == "ZTF1" and stored.loc["ZTF1", "xid"] == "ZTF1"


def test_same_survey_objects_are_told_apart_by_id(tmp_path):
    store = HistoryStore(Lake(str(tmp_path / "lake")), order=4)
    write_history(store, merge_history(_batch(_det("ZTF1", [1], 59000.0, 150.0, 2.0)), store), "b1-r000")
    m = merge_history(_batch(_det("ZTF2", [2], 59001.0, 150.0, 2.0 + 0.5 / 3600)), store)
    assert m.associations.set_index("oid")["xid"].to_dict() == {"ZTF2": "ZTF2"}
    assert sorted(m.tables.detections["candid"]) == [2]  # ZTF1's light curve is not ZTF2's


def test_reads_and_compaction_unify_files_of_different_columns(tmp_path):
    """Files written by different batches may differ in columns (a schema version adds one) and in which
    columns are all null; reads and a second compaction over an existing compacted file keep every row once,
    equal to a plain pandas union of what was written."""
    store = HistoryStore(Lake(str(tmp_path / "lake")), order=3)
    m1 = merge_history(
        _batch(_det("A", [1, 2], 59000.0, 10.0, 20.0), _det("B", [7], 59000.0, 80.0, 5.0)), store
    )
    write_history(store, m1, "b1-r000")
    store.compact()  # night 1 compacted: A's and B's pixels have a file each

    later = _det("A", [2, 3], 59030.0, 10.0, 20.0, has_stamp=[False, True])
    later["newcol"] = [None, "x"]  # a column the stored files lack, null in the history copy
    m2 = merge_history(_batch(later, _det("C", [9], 59030.0, 10.0 + 2e-3, 20.0)), store)
    assert m2.stored_rows["detections"] == 2
    write_history(store, m2, "b2-r000")
    before = store.read("detections", store.pixels("detections"))  # compacted file + delta
    stats = store.compact()
    assert stats["pixels"] >= 2
    after = HistoryStore(Lake(str(tmp_path / "lake")), order=3).read("detections", store.pixels("detections"))

    written = pd.concat([m1.new_rows["detections"], m2.new_rows["detections"]], ignore_index=True)
    expected = written.drop_duplicates(["oid", "candid"], keep="last").sort_values(["oid", "candid"])
    for got in (before, after):
        got = got.sort_values(["oid", "candid"]).reset_index(drop=True)
        assert got[["oid", "candid"]].values.tolist() == expected[["oid", "candid"]].values.tolist()
        assert got["newcol"].isna().tolist() == [True, True, False, True, True]  # only A's candid 3 has it
    # the compacted file of A's pixel is sorted by object then time
    home = store.folder("detections", int(m1.home["A"]))
    (compacted,) = Path(home).glob("compacted-*.parquet")
    rows = pq.read_table(compacted).to_pandas()
    assert rows[["oid", "mjd"]].equals(
        rows[["oid", "mjd"]].sort_values(["oid", "mjd"]).reset_index(drop=True)
    )


def test_files_arrow_cannot_unify_are_read_through_pandas(tmp_path):
    """A column whose type changed between writers (int in one file, text in another) cannot be concatenated
    by Arrow; the read falls back to pandas and still returns every wanted row once."""
    store = HistoryStore(Lake(str(tmp_path / "lake")), order=2)
    m = merge_history(_batch(_det("A", [1, 2], 59000.0, 10.0, 20.0)), store)
    first = m.new_rows["detections"].assign(note=np.int64(7))
    store.write("detections", first, m.home, "b1-r000")
    second = _det("A", [3], 59010.0, 10.0, 20.0).assign(note="seven")
    store.write("detections", second, m.home, "b2-r000")
    got = store.read("detections", [int(m.home["A"])], ["A", "nobody"])
    assert sorted(got["candid"]) == [1, 2, 3]
    assert sorted(map(str, got["note"])) == ["7", "7", "seven"]
    assert store.read("detections", [int(m.home["A"])], ["nobody"]).empty


def test_files_too_big_to_cache_are_read_row_selectively(tmp_path):
    """A compacted pixel file larger than an eighth of the cache is read for the wanted objects only (its row
    groups are sorted by oid, so Parquet statistics skip the rest) and never cached; the rows are the same as a
    whole read gives."""
    n_obj, per = 7000, 10
    oids = np.repeat([f"ZTF{i:06d}" for i in range(n_obj)], per)
    det = pd.DataFrame(
        {
            "oid": oids,
            "candid": np.arange(oids.size, dtype=np.int64) + 10**12,
            "survey": "ztf",
            "mjd": 59000.0 + np.tile(np.arange(per, dtype=float), n_obj),
            "fid": np.int16(1),
            "magpsf": 18.0,
            "has_stamp": False,
        }
    )
    home = pd.Series(np.int64(7), index=pd.unique(oids))
    lake = Lake(str(tmp_path / "lake"))
    whole = HistoryStore(lake, order=2)
    whole.write("detections", det, home, "b1-r000")
    whole.compact()
    (path,) = Path(whole.folder("detections", 7)).glob("compacted-*.parquet")
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 3  # 70,000 rows in groups of 32,768
    ranges = [
        (meta.row_group(g).column(0).statistics.min, meta.row_group(g).column(0).statistics.max)
        for g in range(meta.num_row_groups)
    ]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges))  # sorted oid ranges: prunable

    wanted = ["ZTF000003", "ZTF006999", "nobody"]
    small = HistoryStore(lake, order=2, cache_mb=0.01)  # every file is "too big" for a 10 kB cache
    got = small.read("detections", [7], wanted)
    assert (
        small.stats["files_selective"] == 1
        and small.stats["files_read"] == 0
        and not small._cache[small.folder("detections", 7)].files
    )
    expected = whole.read("detections", [7], wanted)
    assert len(got) == 2 * per
    pd.testing.assert_frame_equal(got, expected)
