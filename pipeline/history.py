"""Merging a region's batch with the stored light-curve history of its objects (storage.history), on a worker.

``merge_history`` finds each object's home pixel (stored objects by id around their current position; new
objects at the pixel of their first position), reads the stored rows of the returning objects, and gives the
science the union (deduplicated as ``merge_pieces`` does within a batch). ``write_history`` then stores only
the rows the store did not have, in the home pixels. Both run inside the region task, so the history a task
needs travels from storage to the worker that needs it and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alert_broker.features.association import associate
from alert_broker.features.healpix import pixel_of
from alert_broker.features.science import merge_pieces
from alert_broker.features.tables import Tables
from alert_broker.storage.history import (
    HISTORY_KEYS,
    LIGHT_CURVE_TABLES,
    OBJECT_COLUMNS,
    HistoryStore,
)


@dataclass
class HistoryMerge:
    """A region's tables with the stored history of its objects, and what to write back."""

    tables: Tables  # batch + stored history, deduplicated
    home: pd.Series  # oid -> home pixel, for every object of the region
    new_rows: dict[str, pd.DataFrame] = field(default_factory=dict)  # rows the store lacks, per table
    stored_rows: dict[str, int] = field(default_factory=dict)  # rows read from the store, per table
    associations: pd.DataFrame = field(default_factory=pd.DataFrame)  # cross-survey ids of new objects


def first_positions(tables: Tables) -> pd.DataFrame:
    """oid, survey, ra, dec, firstmjd of each object: its earliest detection in the batch (alerts as fallback)."""
    det = tables.detections
    frames = []
    if not det.empty and {"ra", "dec", "mjd"} <= set(det.columns):
        ok = det[np.isfinite(det["ra"].to_numpy(dtype=float)) & np.isfinite(det["dec"].to_numpy(dtype=float))]
        frames.append(ok)
    if not tables.alerts.empty:
        frames.append(tables.alerts)
    if not frames:
        return pd.DataFrame(columns=OBJECT_COLUMNS[:-1])
    cols = ["oid", "ra", "dec", "mjd"] + (["survey"] if all("survey" in f.columns for f in frames) else [])
    rows = pd.concat([f[cols] for f in frames], ignore_index=True)
    first = rows.sort_values(["oid", "mjd"], kind="stable").drop_duplicates("oid")
    first = first.rename(columns={"mjd": "firstmjd"})
    if "survey" not in first.columns:
        first["survey"] = "ztf"
    return first[["oid", "survey", "ra", "dec", "firstmjd"]].reset_index(drop=True)


def _align(stored: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """Stored rows with the batch's dtypes where they can take them (Parquet brings back nullable ints for
    columns that had nulls; the science wants the batch's numpy dtypes)."""
    if stored.empty or like.empty:
        return stored
    out = {}
    for c in stored.columns:
        col = stored[c]
        if c in like.columns and col.dtype != like[c].dtype:
            try:
                col = col.astype(like[c].dtype)
            except (TypeError, ValueError):
                if like[c].dtype.kind == "f":
                    col = col.astype("float64")
        out[c] = col
    return pd.DataFrame(out, index=stored.index)


def _keys(df: pd.DataFrame, table: str) -> pd.MultiIndex | pd.Index:
    key = list(HISTORY_KEYS[table])
    return pd.MultiIndex.from_frame(df[key]) if len(key) > 1 else pd.Index(df[key[0]])


def _missing_from(batch: pd.DataFrame, stored: pd.DataFrame, table: str) -> pd.DataFrame:
    """The batch rows the store lacks; for detections also the alert's own packet where only a history copy
    of it was stored (it carries more: the PS1 neighbour, the stamps)."""
    if batch.empty or stored.empty:
        return batch
    have = _keys(stored, table)
    new = ~_keys(batch, table).isin(have)
    if table == "detections" and "has_stamp" in batch.columns and "has_stamp" in stored.columns:
        full = stored[stored["has_stamp"].fillna(False).astype(bool)]
        upgrade = batch["has_stamp"].fillna(False).astype(bool).to_numpy() & ~_keys(batch, table).isin(
            _keys(full, table)
        )
        new = new | upgrade
    return batch[new]


def merge_history(tables: Tables, store: HistoryStore) -> HistoryMerge:
    """The region's batch ``tables`` merged with the stored history of their objects (see module docstring)."""
    first = first_positions(tables)
    if first.empty:
        return HistoryMerge(tables, pd.Series(dtype="int64", name="pixel"))
    # look a returning object up around every position it has in this batch (it may have moved a little)
    where = pd.concat(
        [first[["oid", "ra", "dec"]]]
        + ([tables.alerts[["oid", "ra", "dec"]]] if not tables.alerts.empty else [])
    )
    known = store.locate(where)
    new = first[~first["oid"].isin(known.index)].copy()
    new["pixel"] = pixel_of(new["ra"].to_numpy(), new["dec"].to_numpy(), store.order)
    associations = _associate(new, store)
    new = new.merge(associations[["oid", "xid"]], on="oid", how="left")
    home = pd.concat([known, new.set_index("oid")["pixel"]]).astype("int64")
    home.name = "pixel"

    stored = Tables()
    counts: dict[str, int] = {}
    returning = list(known.index)
    pixels = sorted(set(known.to_numpy().tolist()))
    for table in LIGHT_CURVE_TABLES:
        rows = store.read(table, pixels, returning) if returning else pd.DataFrame()
        rows = rows.drop(columns=["pixel"], errors="ignore")  # the store's own column, not the science's
        counts[table] = len(rows)
        setattr(stored, table, _align(rows, getattr(tables, table)))
    merged = merge_pieces([stored, tables])
    merged.stamps = tables.stamps
    new_rows = {"objects": new[OBJECT_COLUMNS].reset_index(drop=True)}
    for table in LIGHT_CURVE_TABLES:
        new_rows[table] = _missing_from(getattr(tables, table), getattr(stored, table), table)
    return HistoryMerge(merged, home, new_rows, counts, associations)


def _associate(new: pd.DataFrame, store: HistoryStore) -> pd.DataFrame:
    """Cross-survey ids of objects seen for the first time: by position (1.5") against every stored object
    around them and against each other (features.association)."""
    cols = ["oid", "survey", "xid", "xid_distance_arcsec", "ra", "dec", "firstmjd"]
    if new.empty:
        return pd.DataFrame(columns=cols)
    known = store.nearby_objects(new)
    if known.empty:
        known = pd.DataFrame({c: pd.Series(dtype=new[c].dtype) for c in new.columns if c != "pixel"})
        known["xid"] = pd.Series(dtype=object)
    elif "xid" not in known.columns:  # stores written before cross-survey ids existed
        known["xid"] = known["oid"]
    else:
        known["xid"] = known["xid"].fillna(known["oid"])
    known = known[~known["oid"].isin(new["oid"])]
    out = associate(
        new[["oid", "survey", "ra", "dec", "firstmjd"]],
        known[["oid", "survey", "ra", "dec", "firstmjd", "xid"]],
    )
    return out.merge(new[["oid", "survey", "ra", "dec", "firstmjd"]], on=["oid", "survey"], how="left")[cols]


def write_history(store: HistoryStore, merge: HistoryMerge, name: str, failed_oids=()) -> list[str]:
    """Store the rows the store lacked, in their objects' home pixels (one file per pixel and table).
    Objects whose science failed (dead-lettered) are left out, so their replay starts from the same state."""
    paths: list[str] = []
    skip = set(failed_oids)
    for table, df in merge.new_rows.items():
        if skip and not df.empty:
            df = df[~df["oid"].isin(skip)]
        drop = [c for c in ("batch_id", "alert_night") if c in df.columns]
        paths += store.write(table, df.drop(columns=drop), merge.home, name)
    return paths
