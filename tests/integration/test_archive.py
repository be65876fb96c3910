"""The raw-packet archive with real ZTF alert files: exact bytes back by candid, stamps as gzipped FITS."""

from __future__ import annotations

import datetime as dt
import gzip
import io

import fastavro
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from alert_broker.storage.archive import RawArchive, stamps_from_packet
from alert_broker.storage.lake import Lake

pytestmark = pytest.mark.integration

PALOMAR_LON = -116.86  # degrees east


def night_of(jd: float) -> int:
    """docs/data-model.md: the site-local date of the evening the night began."""
    utc = dt.datetime(1858, 11, 17) + dt.timedelta(days=jd - 2400000.5)
    local = utc + dt.timedelta(hours=PALOMAR_LON / 15.0 - 12.0)
    return int(local.strftime("%Y%m%d"))


@pytest.fixture(scope="module")
def raw_frame(shared_data) -> pd.DataFrame:
    """Eight real alerts as raw bytes, with candid/oid/night read by fastavro (independently of the broker)."""
    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:8]
    rows = []
    for f in files:
        payload = f.read_bytes()
        rec = next(iter(fastavro.reader(io.BytesIO(payload))))
        rows.append(
            {
                "candid": rec["candid"],
                "oid": rec["objectId"],
                "night": night_of(rec["candidate"]["jd"]),
                "payload": payload,
                "science": rec["cutoutScience"]["stampData"],
            }
        )
    df = pd.DataFrame(rows)
    df["candid"] = df["candid"].astype(np.int64)
    df["night"] = df["night"].astype(np.int32)
    assert (df["candid"] > 2**53).all()  # real ZTF candids are beyond float64's exact range
    return df


def test_fetch_by_candid_returns_exact_bytes(tmp_path, raw_frame):
    archive = RawArchive(Lake(str(tmp_path)))
    paths = archive.write(raw_frame.drop(columns=["science"]), "b1")
    nights = sorted(raw_frame["night"].unique())
    assert len(paths) == len(nights)
    assert sorted(int(p.split("night=")[1][:8]) for p in paths) == nights
    by_night = {int(p.split("night=")[1][:8]): p for p in paths}
    for row in raw_frame.itertuples():
        assert archive.fetch(row.candid) == row.payload  # full scan
        assert archive.fetch(row.candid, night=row.night) == row.payload
        assert archive.fetch(row.candid, path=by_night[row.night]) == row.payload
    # a stale or wrong path falls back to a wider search
    assert len(nights) >= 2
    first = raw_frame.iloc[0]
    other = next(p for n, p in by_night.items() if n != first["night"])
    assert archive.fetch(first["candid"], path=other) == first["payload"]
    assert archive.fetch(first["candid"], path=str(tmp_path / "raw" / "gone.parquet")) == first["payload"]
    many = archive.fetch_many(raw_frame["candid"].tolist()[:3] + [12345])
    assert set(many) == set(raw_frame["candid"].tolist()[:3])
    with pytest.raises(KeyError, match="12345"):
        archive.fetch(12345)


def test_stamps_decode_as_gzipped_fits(tmp_path, raw_frame):
    archive = RawArchive(Lake(str(tmp_path)))
    archive.write(raw_frame, "b1")
    for row in raw_frame.itertuples():
        stamps = archive.fetch_stamps(row.candid, night=row.night)
        assert set(stamps) == {"science", "template", "difference"}
        assert stamps["science"] == row.science
        for blob in stamps.values():
            assert blob[:2] == b"\x1f\x8b"
            fits = gzip.decompress(blob)
            assert fits[:6] == b"SIMPLE" and len(fits) % 2880 == 0  # FITS files come in 2880-byte blocks
    with pytest.raises(ValueError, match="Avro container"):
        stamps_from_packet(b"\x00\x00\x00\x00\x01not a container")


def test_archive_on_s3(s3_lake_url, raw_frame):
    url, options = s3_lake_url
    archive = RawArchive(Lake(url, options))
    paths = archive.write(raw_frame.drop(columns=["science"]), "b7")
    assert all(p.startswith(f"{url}/raw/night=") for p in paths)
    row = raw_frame.iloc[-1]
    assert archive.fetch(row["candid"]) == row["payload"]
    path = next(p for p in paths if f"night={row['night']}" in p)
    assert archive.fetch_stamps(row["candid"], path=path)["science"] == row["science"]


def test_raw_frame_needs_its_columns(tmp_path):
    with pytest.raises(ValueError, match="payload"):
        RawArchive(Lake(str(tmp_path))).write(pd.DataFrame({"candid": [1], "oid": ["x"], "night": [1]}), "b1")


def test_payloads_are_stored_compressed_and_read_back_whole(tmp_path, shared_data):
    """Rubin packets carry uncompressed FITS cutouts: the archive's zstd column must store them smaller than their
    bytes, and give every packet back unchanged."""
    files = sorted((shared_data / "lsst").rglob("*.avro"))[:20]
    assert files, "no LSST packets in the shared data"
    payloads = [f.read_bytes() for f in files]
    frame = pd.DataFrame(
        {
            "candid": np.arange(1, len(payloads) + 1, dtype=np.int64),
            "oid": [f"o{i}" for i in range(len(payloads))],
            "night": np.full(len(payloads), 20250101, dtype=np.int32),
            "payload": payloads,
        }
    )
    archive = RawArchive(Lake(str(tmp_path)))
    (path,) = archive.write(frame, "b1")
    meta = pq.ParquetFile(path).metadata
    col = [meta.schema.column(i).name for i in range(meta.num_columns)].index("payload")
    stored = sum(meta.row_group(g).column(col).total_compressed_size for g in range(meta.num_row_groups))
    assert meta.row_group(0).column(col).compression == "ZSTD"
    assert stored < 0.6 * sum(map(len, payloads))  # 3.5x measured on these packets
    back = archive.fetch_many(frame["candid"].tolist(), night=20250101)
    assert [back[c] for c in frame["candid"]] == payloads


def test_candid_statistics_are_written_and_the_payloads_are_not(tmp_path, raw_frame):
    """A fetch skips row groups on candid's min/max; the packets' own min/max would cost a comparison of every
    blob for statistics too long to keep, so they are not computed at all."""
    frame = pd.concat([raw_frame] * 3, ignore_index=True)
    frame["candid"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    paths = RawArchive(Lake(str(tmp_path))).write(frame, "b1")
    assert paths
    for path in paths:
        candid = pq.read_table(path, columns=["candid"]).column("candid").to_numpy()
        assert np.all(np.diff(candid) > 0)  # sorted within the night's file: row groups prune on it
        meta = pq.ParquetFile(path).metadata
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            candid = rg.column(names.index("candid"))
            assert candid.is_stats_set and candid.statistics.has_min_max
            assert not rg.column(names.index("payload")).is_stats_set
