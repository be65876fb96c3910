"""The raw-packet archive: every alert packet exactly as it arrived, in the lake's ``raw`` table.

The hot tables never carry stamps (they would dominate the lake's size); the archive keeps them durably and
lets anyone re-decode an alert later, e.g. with a fixed decoder. Files are ``{lake}/raw/night=N/{batch}.parquet``
with ``candid``, ``oid``, ``night``, ``payload``, sorted by ``candid`` in small row groups, so fetching one
packet reads one row group: Parquet statistics skip the rest. The PostgreSQL ``alert`` table stores each
alert's archive file (``raw_path``), which makes a fetch a single small read.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import fastavro
import pandas as pd
import pyarrow.parquet as pq

from alert_broker.storage.lake import Lake

RAW_TABLE = "raw"
RAW_COLUMNS = ["candid", "oid", "night", "payload"]
#: Rows per row group: ~100 ZTF packets (~6 MB) per read when fetching one.
ROW_GROUP = 100
STAMP_FIELDS = {"cutoutScience": "science", "cutoutTemplate": "template", "cutoutDifference": "difference"}
_AVRO_MAGIC = b"Obj\x01"
#: The payload column's codec and level. Measured on real packets (pyarrow, row groups of 100): zstd level 1
#: shrinks ZTF alerts with stamps 1.28x, Rubin alerts (uncompressed cutouts) 3.5x and simulated ZTF alerts
#: without stamps ~20x, at ~20 us of writer CPU per ZTF alert; level 3 gains a few per cent for twice the CPU
#: (docs/data-model.md, "Lake layout").
PAYLOAD_CODEC = ("zstd", 1)
#: The columns whose Parquet statistics are written: a fetch by ``candid`` skips row groups on them.
STATS_COLUMNS = ["candid", "oid"]


def stamps_from_packet(payload: bytes) -> dict[str, bytes]:
    """The cutouts of an Avro-container alert packet as ``{'science'|'template'|'difference': bytes}`` (the
    gzipped FITS as carried; ZTF nests it in ``stampData``, LSST carries bytes directly). Absent ones are left
    out."""
    if not payload.startswith(_AVRO_MAGIC):
        raise ValueError(
            "payload is not an Avro container file (schemaless packets need their schema to decode)"
        )
    reader = fastavro.reader(io.BytesIO(payload))
    try:
        record = next(iter(reader))
    except StopIteration:
        raise ValueError("the Avro container holds no record") from None
    out: dict[str, bytes] = {}
    for field, name in STAMP_FIELDS.items():
        value = record.get(field)
        if isinstance(value, dict):
            value = value.get("stampData")
        if value:
            out[name] = bytes(value)
    return out


class RawArchive:
    """Write raw packets per batch and fetch them back by ``candid``."""

    def __init__(self, lake: Lake):
        self.lake = lake

    def write(self, raw_df: pd.DataFrame, batch_id: str) -> list[str]:
        """Archive ``raw_df`` (``candid``, ``oid``, ``night``, ``payload``): one file per night. Returns paths."""
        missing = [c for c in RAW_COLUMNS if c not in raw_df.columns]
        if missing:
            raise ValueError(f"raw frame lacks columns {missing}")
        if raw_df.empty:
            return []
        # grouped by night (each night's file is then a zero-copy slice of the packets) and sorted by candid
        frame = raw_df[RAW_COLUMNS].sort_values(["night", "candid"], kind="stable")
        # Dictionary-encoding unique blobs costs CPU for nothing; compressing them does not: a packet is not only
        # its stamps (ZTF's gzipped FITS hardly shrink), its history and LSST's uncompressed cutouts do (PAYLOAD_CODEC).
        return self.lake.write_table(
            RAW_TABLE,
            frame,
            batch_id,
            row_group_size=ROW_GROUP,
            compression={"candid": "snappy", "oid": "snappy", "night": "snappy", "payload": PAYLOAD_CODEC[0]},
            compression_level={"payload": PAYLOAD_CODEC[1]},
            use_dictionary=["oid"],
            # Min/max of the packets are never stored (too long for the footer) but pyarrow still compares every
            # blob to find them: a third of the write's CPU for ZTF packets. Fetches prune on candid.
            write_statistics=STATS_COLUMNS,
        )

    def fetch_many(
        self, candids: Iterable[int], night: int | None = None, path: str | None = None
    ) -> dict[int, bytes]:
        """``{candid: packet}`` for those found. Looks in ``path`` if given, else the ``night`` partition,
        else the whole archive; what a stale ``path`` misses is looked for more widely."""
        wanted = {int(c) for c in candids}
        found: dict[int, bytes] = {}
        attempts: list[tuple[list[str] | None, list[int] | None]] = []
        if path is not None:
            attempts.append(([path], None))
        if night is not None:
            attempts.append((None, [int(night)]))
        attempts.append((None, None))
        for files, nights in attempts:
            todo = sorted(wanted - found.keys())
            if not todo:
                break
            found.update(self._read(todo, files, nights))
        return found

    def fetch(self, candid: int, night: int | None = None, path: str | None = None) -> bytes:
        """The raw packet of ``candid``, byte for byte as it arrived. Raises ``KeyError`` if not archived."""
        got = self.fetch_many([candid], night=night, path=path)
        if int(candid) not in got:
            where = path or (f"night {night}" if night is not None else "the whole archive")
            raise KeyError(f"candid {candid} is not in the raw archive (looked in {where} and wider)")
        return got[int(candid)]

    def fetch_stamps(
        self, candid: int, night: int | None = None, path: str | None = None
    ) -> dict[str, bytes]:
        """The alert's cutouts: ``{'science'|'template'|'difference': gzipped FITS bytes}``."""
        return stamps_from_packet(self.fetch(candid, night=night, path=path))

    def _read(
        self, candids: list[int], files: list[str] | None, nights: list[int] | None
    ) -> dict[int, bytes]:
        flt = [("candid", "in", candids)] if len(candids) > 1 else [("candid", "==", candids[0])]
        if files is not None:
            frames = []
            for f in files:
                try:
                    frames.append(self._read_file(f, flt))
                except FileNotFoundError:
                    continue  # superseded by a replay; the wider search finds the new file
            df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        else:
            df = self.lake.read_table(RAW_TABLE, filters=flt, columns=["candid", "payload"], nights=nights)
        if df.empty:
            return {}
        return dict(zip(df["candid"].astype("int64").tolist(), df["payload"].tolist(), strict=True))

    def _read_file(self, path: str, flt: list) -> pd.DataFrame:
        table = pq.read_table(
            self.lake._fs_path(path),
            filesystem=self.lake.arrow_fs,
            columns=["candid", "payload"],
            filters=flt,
        )
        return table.to_pandas()
