"""Analysis-ready lake tables: one row per thing, opened directly by ``dask.dataframe.read_parquet`` and, for
the sky-partitioned ones, by ``lsdb.read_hats`` (``broker lake publish``).

The pipeline's lake tables (``objects``, ``detections``, ``probabilities``, ...) are per-batch files: an object
seen by three batches has three ``objects`` rows, a detection carried by several alerts' histories is in several
``detections`` files. They stay as they are (they are the provenance: which batch wrote what). This module writes
the current state beside them, under names that say so:

==========================  ==================================================  =====================================
table                       one row per                                         layout
==========================  ==================================================  =====================================
``objects_current``         object (PostgreSQL ``object`` + ``xid``)           HATS collection (with a 5" margin)
``magstats_current``        (object, band)                                      HATS collection, object's position
``probabilities_latest``    (object, classifier, class): latest version        Parquet (sorted by ``oid``)
``detections_current``      (object, candid), corrected: the history store     HATS collection, object's position
``non_detections_current``  (object, fid, mjd)                                  HATS collection, object's position
``forced_photometry_current``  (object, pid)                                    HATS collection, object's position
==========================  ==================================================  =====================================

Each HATS collection is written by :func:`alert_broker.storage.catalogs.import_catalog` (the same writer as
the cross-match catalogues, checked with hats and lsdb), partitioned by the *object's* position (``meanra``,
``meandec``) so an object's whole light curve sits in one partition and lsdb joins objects with their light
curves partition by partition. A ``_metadata`` summary at the collection's root lists the main catalogue's
files (not the margin's), so ``dask.dataframe.read_parquet("{lake}/objects_current")`` reads each row once.

Every table is built in a staging folder and then swapped in, so readers see the old or the new table, never
half of one (on S3 the swap is a delete and an upload: a reader may briefly find the table missing).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alert_broker.api.data import FID_BANDS
from alert_broker.classifiers.registry import version_key
from alert_broker.features.correction import correct
from alert_broker.features.fluxstats import apparent_from_science_flux
from alert_broker.storage import Lake, SummaryStore
from alert_broker.storage.catalogs import import_catalog
from alert_broker.storage.history import HistoryStore
from alert_broker.storage.lake import frame_to_arrow

log = logging.getLogger(__name__)

SKY_TABLES = ("objects_current", "magstats_current", "detections_current", "non_detections_current",
              "forced_photometry_current")  # fmt: skip
PLAIN_TABLES = ("probabilities_latest",)
PUBLISHED_TABLES = SKY_TABLES + PLAIN_TABLES
#: Rows per HEALPix partition the automatic order aims at (lsdb and dask cost grows with partitions).
TARGET_ROWS_PER_PIXEL = 250_000
MARGIN_ARCSEC = 5.0


@dataclass
class PublishReport:
    lake: str
    rows: dict[str, int] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def render(self) -> str:
        lines = [f"published analysis-ready tables in {self.lake} ({self.seconds:.1f} s)"]
        for name, n in self.rows.items():
            order = f"  HATS order {self.orders[name]}" if name in self.orders else ""
            lines.append(f"  {name:<27} {n:>10} rows{order}")
        return "\n".join(lines)


def auto_order(rows: int, target: int = TARGET_ROWS_PER_PIXEL) -> int:
    """The lowest HEALPix order whose 12 * 4**k pixels hold about ``target`` rows each (0..7)."""
    if rows <= 12 * target:
        return 0
    return int(min(7, np.ceil(np.log(rows / (12.0 * target)) / np.log(4.0))))


def latest_probabilities(prob: pd.DataFrame) -> pd.DataFrame:
    """Per (object, classifier) the rows of the latest classifier version only."""
    if prob.empty:
        return prob
    keys = prob[["oid", "classifier_name", "classifier_version"]].drop_duplicates()
    keys = keys.assign(_v=keys["classifier_version"].map(version_key))
    keys = keys.sort_values("_v", kind="stable").drop_duplicates(["oid", "classifier_name"], keep="last")
    out = prob.merge(keys.drop(columns="_v"), on=["oid", "classifier_name", "classifier_version"])
    return out.sort_values(["oid", "classifier_name", "ranking", "class_name"], kind="stable").reset_index(
        drop=True
    )


def _positions(objects: pd.DataFrame, history: HistoryStore) -> pd.DataFrame:
    """oid -> (meanra, meandec): PostgreSQL's mean position, else the history index's first position."""
    pos = objects[["oid", "meanra", "meandec"]].dropna()
    known = history.read("objects", history.pixels("objects"))
    if not known.empty:
        extra = known[~known["oid"].isin(pos["oid"])][["oid", "ra", "dec"]]
        extra = extra.rename(columns={"ra": "meanra", "dec": "meandec"}).dropna()
        pos = pd.concat([pos, extra], ignore_index=True)
    return pos.drop_duplicates("oid").reset_index(drop=True)


def _with_position(df: pd.DataFrame, positions: pd.DataFrame, table: str) -> pd.DataFrame:
    if df.empty:
        return df
    drop = [c for c in ("meanra", "meandec", "pixel") if c in df.columns]
    out = df.drop(columns=drop).merge(positions, on="oid", how="left")
    lost = out["meanra"].isna()
    if lost.any():
        log.warning("%s: %d rows of objects with no known position left out", table, int(lost.sum()))
        out = out[~lost]
    return out.reset_index(drop=True)


def _write_hats(frame: pd.DataFrame, name: str, staging: Path, order: int | None) -> int:
    """``frame`` as the HATS collection ``staging/name`` (import_catalog), plus the root ``_metadata``."""
    work = staging / f".{name}-input.parquet"
    pq.write_table(frame_to_arrow(frame), work)
    k = auto_order(len(frame)) if order is None else int(order)
    import_catalog(
        name, work, "meanra", "meandec", staging, id_col="oid", order=k, margin_arcsec=MARGIN_ARCSEC
    )
    work.unlink()
    _write_root_metadata(staging / name, staging / name / name)
    return k


def _write_root_metadata(root: Path, catalog: Path) -> None:
    """A Parquet ``_metadata`` summary at the collection's root listing the main catalogue's pixel files, so
    dask reads the folder as one dataset of the catalogue's rows (the margin's copies left out)."""
    files = sorted((catalog / "dataset").rglob("Npix=*.parquet"))
    if not files:
        return
    collector = []
    schema = pq.read_schema(files[0])
    for f in files:
        md = pq.read_metadata(f)
        md.set_file_path(str(f.relative_to(root)))
        collector.append(md)
    pq.write_metadata(schema, root / "_metadata", metadata_collector=collector)
    pq.write_metadata(schema, root / "_common_metadata")


def _write_plain(frame: pd.DataFrame, name: str, staging: Path) -> None:
    folder = staging / name
    folder.mkdir(parents=True)
    table = (
        frame_to_arrow(frame)
        if not frame.empty
        else pa.table({c: pa.array([], pa.string()) for c in frame.columns})
    )
    pq.write_table(table, folder / "part-000.parquet", row_group_size=131_072)


def _swap_in(lake: Lake, staging: Path, name: str) -> None:
    """Replace ``{lake}/{name}`` by ``staging/name``."""
    if lake.local:
        target = Path(lake.root) / name
        old = Path(lake.root) / f".{name}.old-{uuid.uuid4().hex[:8]}"
        if target.exists():
            os.replace(target, old)
        os.replace(staging / name, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    target = f"{lake.root}/{name}"
    if lake.fs.exists(target):
        lake.fs.rm(target, recursive=True)
    lake.fs.put(str(staging / name), target, recursive=True)
    lake.fs.invalidate_cache()


def publish(
    dsn: str,
    lake_url: str,
    storage_options: dict | None = None,
    history_order: int = 4,
    order: int | None = None,
    tables: tuple[str, ...] = PUBLISHED_TABLES,
) -> PublishReport:
    """Write the analysis-ready tables of the lake at ``lake_url`` from PostgreSQL (``dsn``) and the history
    store. ``order`` fixes the HEALPix order of the HATS tables (default: from each table's size)."""
    t0 = time.perf_counter()
    unknown = [t for t in tables if t not in PUBLISHED_TABLES]
    if unknown:
        raise ValueError(f"unknown published table(s) {unknown}; known: {', '.join(PUBLISHED_TABLES)}")
    lake = Lake(lake_url, storage_options or None)
    history = HistoryStore(lake, order=history_order)
    report = PublishReport(lake=lake.url)
    with SummaryStore(dsn) as store:
        objects = store.fetch_df(
            "SELECT o.*, x.xid FROM object o LEFT JOIN object_association x ON x.oid = o.oid AND x.survey = o.survey "
            "ORDER BY o.oid"
        ).drop(columns=["hpx29"], errors="ignore")
        magstats = store.fetch_df(
            "SELECT m.*, o.meanra, o.meandec FROM magstats m JOIN object o ON o.oid = m.oid ORDER BY m.oid, m.fid"
        )
        prob = store.fetch_df(
            "SELECT p.*, t.level, t.parent FROM probability p LEFT JOIN taxonomy t "
            "ON t.classifier_name = p.classifier_name AND t.classifier_version = p.classifier_version "
            "AND t.class_name = p.class_name"
        )
    if not magstats.empty:
        magstats.insert(2, "band", magstats["fid"].map(FID_BANDS))
    positions = _positions(objects, history)
    local = lake.local
    staging_parent = Path(lake.root) if local else Path(tempfile.mkdtemp(prefix="broker-publish-"))
    staging = staging_parent / f".publish-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        for name in tables:
            if name == "probabilities_latest":
                frame = latest_probabilities(prob)
                _write_plain(frame, name, staging)
            else:
                if name == "objects_current":
                    frame = objects
                elif name == "magstats_current":
                    frame = magstats
                else:
                    frame = _light_curve(history, name.removesuffix("_current"), positions)
                if frame.empty:
                    log.info("%s: no rows; left unpublished", name)
                    report.rows[name] = 0
                    continue
                report.orders[name] = _write_hats(frame, name, staging, order)
            report.rows[name] = len(frame)
            _swap_in(lake, staging, name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not local:
            shutil.rmtree(staging_parent, ignore_errors=True)
    report.seconds = time.perf_counter() - t0
    return report


def _light_curve(history: HistoryStore, table: str, positions: pd.DataFrame) -> pd.DataFrame:
    """Every stored row of a history table, deduplicated (the store's keys), corrected for detections, with the
    object's position, sorted by object and time."""
    rows = history.read(table, history.pixels(table))
    if rows.empty:
        return rows
    if table == "detections":
        try:
            rows = apparent_from_science_flux(correct(rows))
        except ValueError as err:
            log.warning("detections published uncorrected: %s", err)
    rows = _with_position(rows, positions, f"{table}_current")
    return rows.sort_values(["oid", "mjd"], kind="stable").reset_index(drop=True)
