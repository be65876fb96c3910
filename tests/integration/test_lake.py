"""The Parquet lake on a real local folder and on a real S3 endpoint (moto's server): layout, round trip,
idempotent rewrites, deduplication, and the analysts' dask path."""

from __future__ import annotations

import os
import pickle
import socket

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import s3fs

from alert_broker.storage.lake import Lake, LakeUnavailable
from alert_broker.storage.postgres import SummaryStore

pytestmark = pytest.mark.integration

BIG = 2**60 + 12345  # an id far beyond float64's exact range (2**53)


def detections(n: int = 6, first_candid: int = BIG, mag_offset: float = 0.0) -> pd.DataFrame:
    """An alerts-like frame (a night-partitioned table) spread over two nights, with 64-bit ids and a nullable int column."""
    candid = np.arange(n, dtype=np.int64) + first_candid
    return pd.DataFrame(
        {
            "oid": [f"ZTF20obj{i % 3}" for i in range(n)],
            "candid": candid,
            "night": np.where(np.arange(n) < n // 2, 20200101, 20200102).astype("int32"),
            "mjd": 58849.2 + np.arange(n) * 0.5,
            "fid": np.array([1, 2] * (n // 2), dtype="int16"),
            "magpsf": 18.0 + np.arange(n) * 0.1 + mag_offset,
            "pid": pd.array([BIG + 1] + [pd.NA] * (n - 1), dtype="Int64"),
            "has_stamp": np.arange(n) % 2 == 0,
        }
    )


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("candid").reset_index(drop=True)


# --------------------------------------------------------------------------------------------- local
def test_local_layout_and_round_trip(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    df = detections()
    paths = lake.write_table("alerts", df, "b0001")
    assert sorted(paths) == [
        str(tmp_path / "lake" / "alerts" / "night=20200101" / "b0001.parquet"),
        str(tmp_path / "lake" / "alerts" / "night=20200102" / "b0001.parquet"),
    ]
    assert all(os.path.isfile(p) for p in paths)
    # each file holds exactly its night's rows; the night lives in the folder name (hive layout), not the file,
    # and comes back from the path whether the lake, pandas or pyarrow reads the folder
    for p in paths:
        night = int(p.split("night=")[1][:8])
        assert "night" not in pq.read_table(p).column_names
        assert len(pq.read_table(p)) == int((df["night"] == night).sum())
    assert sorted(pd.read_parquet(tmp_path / "lake" / "alerts")["night"].astype(int)) == sorted(df["night"])
    # no temporary files left behind
    leftovers = [f for _, _, fs in os.walk(tmp_path) for f in fs if f.startswith(".")]
    assert leftovers == []

    back = _sorted(lake.read_table("alerts"))
    assert back["candid"].dtype == np.int64
    assert back["candid"].tolist() == df["candid"].tolist()  # exact beyond 2**53
    assert (
        back["pid"].dtype == pd.Int64Dtype()
        and back["pid"].iloc[0] == BIG + 1
        and back["pid"].isna().sum() == 5
    )
    assert back["fid"].dtype == np.int16 and back["night"].dtype == np.int32
    assert back["has_stamp"].dtype == bool
    pd.testing.assert_frame_equal(back[df.columns], df, check_dtype=False)
    np.testing.assert_array_equal(back["magpsf"].to_numpy(), df["magpsf"].to_numpy())


@pytest.mark.parametrize("grouped", [True, False])
def test_each_nights_file_holds_its_rows_in_the_frames_order(tmp_path, grouped):
    """Rows grouped by night are cut into slices, interleaved nights are filtered: either way each night's file
    holds exactly that night's rows, in the order the frame gave them."""
    df = detections(12)
    nights = np.array([20200101, 20200102, 20200103] * 4, dtype="int32")
    df["night"] = np.sort(nights) if grouped else nights
    Lake(str(tmp_path)).write_table("alerts", df, "b0001")
    for night in (20200101, 20200102, 20200103):
        back = pq.read_table(tmp_path / "alerts" / f"night={night}" / "b0001.parquet").to_pandas()
        want = df[df["night"] == night]
        assert back["candid"].tolist() == want["candid"].tolist()
        assert back["magpsf"].tolist() == want["magpsf"].tolist()


def test_rewrite_same_batch_does_not_double_and_new_batch_does(tmp_path):
    lake = Lake(str(tmp_path))
    df = detections()
    first = lake.write_table("alerts", df, "b1")
    second = lake.write_table("alerts", df.assign(magpsf=df["magpsf"] + 1), "b1")
    assert first == second
    back = lake.read_table("alerts")
    assert len(back) == len(df)
    np.testing.assert_allclose(np.sort(back["magpsf"]), np.sort(df["magpsf"] + 1))

    # a later batch repeating the same detections (history repeats): raw read shows both, dedupe the latest
    lake.write_table("alerts", df.assign(magpsf=df["magpsf"] + 5), "b2")
    assert len(lake.read_table("alerts")) == 2 * len(df)
    deduped = _sorted(lake.read_table("alerts", dedupe=True))
    assert len(deduped) == len(df)
    np.testing.assert_allclose(deduped["magpsf"], df["magpsf"] + 5)
    # ... and the latest write wins even if its batch id sorts first
    lake.write_table("alerts", df.assign(magpsf=df["magpsf"] - 3), "a0")
    np.testing.assert_allclose(_sorted(lake.read_table("alerts", dedupe=True))["magpsf"], df["magpsf"] - 3)


def test_empty_frame_and_tables_without_night(tmp_path):
    lake = Lake(str(tmp_path))
    assert lake.write_table("alerts", detections().iloc[0:0], "b1") == []
    assert not (tmp_path / "alerts").exists()
    assert lake.read_table("alerts").empty

    dl = pd.DataFrame(
        {
            "source": ["archive:x", "archive:x"],
            "partition": np.array([0, 0], dtype="int32"),
            "offset": np.array([3, 9], dtype="int64"),
            "reason": ["corrupt Avro", "no candid"],
            "error": ["ValueError", "KeyError"],
            "payload": [b"\x00\x01garbage", b"Obj\x01\xff"],
            "batch_id": ["b1", "b1"],
        }
    )
    (path,) = lake.write_table("dead_letters", dl, "b1")
    assert path == str(tmp_path / "dead_letters" / "b1.parquet")
    back = lake.read_table("dead_letters").sort_values("offset").reset_index(drop=True)
    assert back["payload"].tolist() == [b"\x00\x01garbage", b"Obj\x01\xff"]  # bytes stay bytes
    assert back["offset"].dtype == np.int64


def test_filters_columns_nights_and_schema_drift(tmp_path):
    lake = Lake(str(tmp_path))
    df = detections()
    lake.write_table("alerts", df.assign(note=None), "b1")  # an all-null object column
    later = detections(first_candid=BIG + 100).assign(note="seen", extra=1.5)
    lake.write_table("alerts", later, "b2")
    allrows = lake.read_table("alerts")
    assert len(allrows) == 12
    assert allrows["note"].isna().sum() == 6 and (allrows["note"] == "seen").sum() == 6
    assert allrows["extra"].isna().sum() == 6  # missing in b1's files: filled with nulls

    one_night = lake.read_table("alerts", filters=[("night", "=", 20200102)], columns=["candid", "magpsf"])
    assert list(one_night.columns) == ["candid", "magpsf"]
    assert len(one_night) == 6
    pruned = lake.read_table("alerts", nights=[20200101])
    assert set(pruned["night"]) == {20200101} and len(pruned) == 6
    assert len(lake.list_files("alerts", nights=[20200101])) == 2
    assert lake.list_files("alerts", nights=[20991231]) == []

    # a stray hidden temp file (a crashed writer) is not a lake file
    (tmp_path / "alerts" / "night=20200101" / ".b3.parquet.tmp").write_bytes(b"partial")
    assert len(lake.read_table("alerts")) == 12


def test_delete_files_and_dask_read_local(tmp_path):
    lake = Lake(str(tmp_path))
    df = detections()
    p1 = lake.write_table("alerts", df, "b1")
    lake.write_table("alerts", detections(first_candid=BIG + 50), "b2")
    ddf = lake.dask_read("alerts")
    assert len(ddf.compute()) == 12
    assert lake.delete_files(p1 + p1) == 4  # repeated and missing paths are fine
    assert all(not os.path.exists(p) for p in p1)
    back = lake.dask_read("alerts").compute()
    assert sorted(back["candid"].tolist()) == list(range(BIG + 50, BIG + 56))
    assert back["candid"].dtype == np.int64


def test_lake_and_store_travel_to_dask_workers(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_table("alerts", detections(), "b1")
    clone = pickle.loads(pickle.dumps(lake))
    assert clone.url == lake.url and len(clone.read_table("alerts")) == 6
    store = pickle.loads(pickle.dumps(SummaryStore("postgresql://nowhere/db")))
    assert store.dsn == "postgresql://nowhere/db"


def test_bad_names_are_rejected(tmp_path):
    lake = Lake(str(tmp_path))
    with pytest.raises(ValueError, match="batch id"):
        lake.write_table("alerts", detections(), "../escape")
    with pytest.raises(ValueError, match="table"):
        lake.write_table("a/b", detections(), "b1")
    with pytest.raises(ValueError, match="no night"):
        lake.write_table("alerts", detections().assign(night=pd.array([pd.NA] * 6, dtype="Int32")), "b1")


# --------------------------------------------------------------------------------------------- S3
def test_s3_round_trip_rewrite_and_dask(s3_lake_url):
    url, options = s3_lake_url
    lake = Lake(url, options)
    df = detections()
    paths = lake.write_table("alerts", df, "b0001")
    bucket_prefix = url.removeprefix("s3://")
    assert sorted(paths) == [
        f"{url}/alerts/night=20200101/b0001.parquet",
        f"{url}/alerts/night=20200102/b0001.parquet",
    ]
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    assert sorted(fs.find(bucket_prefix)) == sorted(p.removeprefix("s3://") for p in paths)

    back = _sorted(lake.read_table("alerts"))
    assert back["candid"].tolist() == df["candid"].tolist()
    pd.testing.assert_frame_equal(back[df.columns], df, check_dtype=False)

    # the analysts' path: dask straight on the S3 URL with the same storage options
    ddf = dd.read_parquet(f"{url}/alerts", storage_options=options)
    got = ddf.compute().sort_values("candid")
    assert got["candid"].tolist() == df["candid"].tolist()
    assert got["candid"].dtype == np.int64
    assert len(lake.dask_read("alerts").compute()) == len(df)

    # rewriting the same batch overwrites, a second batch adds, delete_files removes
    lake.write_table("alerts", df, "b0001")
    assert len(lake.read_table("alerts")) == len(df)
    p2 = lake.write_table("alerts", df.assign(magpsf=df["magpsf"] + 1), "b0002")
    assert len(lake.read_table("alerts")) == 2 * len(df)
    deduped = _sorted(lake.read_table("alerts", dedupe=True))
    np.testing.assert_allclose(deduped["magpsf"], df["magpsf"] + 1)
    lake.delete_files(p2)
    lake.delete_files(p2)  # again: already gone is fine (a crash may repeat the step)
    assert len(lake.read_table("alerts")) == len(df)
    assert len(fs.find(bucket_prefix)) == 2


def test_history_tables_partition_by_alert_night(tmp_path):
    """Detection history is filed under the night of the alert that brought it, keeping its own night."""
    lake = Lake(str(tmp_path))
    df = detections().assign(alert_night=np.int32(20200105))
    paths = lake.write_table("detections", df, "b1")
    assert paths == [str(tmp_path / "detections" / "alert_night=20200105" / "b1.parquet")]
    back = lake.read_table("detections", nights=[20200105])
    assert sorted(back["night"].unique()) == [20200101, 20200102]
    assert lake.list_files("detections", nights=[20200101]) == []


def test_only_non_float_columns_are_dictionary_encoded(tmp_path):
    """Floats rarely repeat, so their dictionaries only cost (storage.lake.dictionary_columns); ids, bands and
    names keep theirs. The values read back are the frame's."""
    df = detections(8)
    (path, *_) = Lake(str(tmp_path)).write_table("alerts", df, "b0001")
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    rg = meta.row_group(0)
    encodings = {n: rg.column(i).encodings for i, n in enumerate(names)}
    assert any("DICTIONARY" in e for e in encodings["oid"]) and any(
        "DICTIONARY" in e for e in encodings["fid"]
    )
    assert not any("DICTIONARY" in e for e in encodings["magpsf"]) and not any(
        "DICTIONARY" in e for e in encodings["mjd"]
    )
    back = pq.read_table(path).to_pandas()
    want = df[df["night"] == 20200101]
    assert back["magpsf"].tolist() == want["magpsf"].tolist() and back["oid"].tolist() == want["oid"].tolist()


def test_check_names_what_is_wrong_before_a_run_writes(tmp_path, s3_lake_url):
    """``Lake.check``, run before anything starts: a missing bucket and an endpoint that does not answer are
    told apart, in seconds, the secret never in the message; a new prefix and a new local folder are fine."""
    url, options = s3_lake_url
    Lake(url, options).check()  # the bucket exists; its prefix "lake" does not yet
    Lake(url + "/a/new/prefix", options).check()
    bucket = url.removeprefix("s3://").split("/")[0]
    with pytest.raises(LakeUnavailable, match=r"there is no bucket 'no-such-bucket'"):
        Lake(url.replace(bucket, "no-such-bucket"), options).check()
    with socket.socket() as s:  # bound, never listening: connections are refused, and no one else can take it
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(LakeUnavailable, match=rf"endpoint {closed}\): no answer") as err:
            Lake(url, {**options, "endpoint_url": closed}).check(timeout=3)
    assert options["secret"] not in str(err.value)
    local = tmp_path / "new" / "lake"
    Lake(str(local)).check()
    assert local.is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(LakeUnavailable, match="cannot create the folder"):
        Lake(str(tmp_path / "file" / "lake")).check()
