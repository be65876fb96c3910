"""The sink registry: which result goes to which lake table, PostgreSQL table and output stream.

One row per output. The region and decode tasks iterate it to write their lake files and to hand the driver
the PostgreSQL rows (small frames: the driver stays light as workers scale); the driver iterates it to upsert
them. Adding an output is one row here (and, if it is new, the step that fills the state's field).

A row's ``name`` is the field of the task's state that holds the result (``RegionState`` for region tasks,
``DecodeState`` for decode tasks). ``lake_rows`` chooses what the lake files when that differs from the field
(e.g. only the detections this batch brought, not the stored history merged in); ``postgres_rows`` turns the
field into the PostgreSQL table's rows when they differ (e.g. one JSON feature vector per object). ``stream``
names the section of the annotated output stream that carries the result (none yet).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from alert_broker.features import FEATURE_VERSION, latest_neighbours
from alert_broker.features.healpix import healpix29
from alert_broker.storage import Lake
from alert_broker.storage.lake import partition_key

#: Columns of the PostgreSQL ``alert`` summary row (the rest stays in the lake).
ALERT_SUMMARY_COLUMNS = [
    "candid", "oid", "mjd", "night", "fid", "band", "ra", "dec", "magpsf", "sigmapsf", "flux", "flux_err", "survey",
    "raw_path", "batch_id",
    "partition", "offset",  # not stored: the driver matches them to the messages' Kafka timestamps (produced_at)
]  # fmt: skip

Stage = Literal["decode", "region"]


@dataclass(frozen=True)
class Sink:
    """One output: a state field and where it goes."""

    name: str
    lake: str | None = None
    postgres: str | None = None
    stream: str | None = None
    stage: Stage = "region"
    lake_rows: Callable[[Any], pd.DataFrame] | None = None
    postgres_rows: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    def frame(self, state: Any) -> pd.DataFrame:
        """The state's result for this sink."""
        return getattr(state, self.name)

    def lake_frame(self, state: Any) -> pd.DataFrame:
        return self.lake_rows(state) if self.lake_rows is not None else self.frame(state)

    def postgres_frame(self, state: Any) -> pd.DataFrame:
        frame = self.frame(state)
        if frame is None or frame.empty:
            return pd.DataFrame()
        return self.postgres_rows(frame) if self.postgres_rows is not None else frame


# ---------------------------------------------------------------------------------- per-sink selections
def batch_detections(state: Any) -> pd.DataFrame:
    """The corrected detections this batch brought (the stored history merged in is already in the lake)."""
    det, brought = state.detections, state.batch.detections
    if det.empty or brought.empty or len(det) == len(brought):
        return det
    return det[det["candid"].isin(brought["candid"])]


def batch_non_detections(state: Any) -> pd.DataFrame:
    return state.batch.non_detections


def batch_forced_photometry(state: Any) -> pd.DataFrame:
    return state.batch.forced_photometry


def batch_survey_objects(state: Any) -> pd.DataFrame:
    return state.batch.survey_objects


def batch_solar_system(state: Any) -> pd.DataFrame:
    return state.batch.solar_system


def alert_summary(alerts: pd.DataFrame) -> pd.DataFrame:
    return alerts[[c for c in ALERT_SUMMARY_COLUMNS if c in alerts.columns]]


def feature_summary(feats: pd.DataFrame) -> pd.DataFrame:
    """One PostgreSQL row per object: its feature vector as JSON (NaN as null), keyed by feature version."""
    cols = ["oid", "feature_version", "lastmjd", "n_features", "features", "night"]
    if feats.empty:
        return pd.DataFrame(columns=cols)
    names = [c for c in feats.columns if c not in ("oid", "FEATURE_VERSION", "lastmjd", "night", "batch_id")]
    version = feats["FEATURE_VERSION"].to_numpy() if "FEATURE_VERSION" in feats.columns else FEATURE_VERSION
    values = feats[names].astype("float64")
    finite = values.astype(object).where(np.isfinite(values.to_numpy()), None)
    records = finite.to_dict(orient="records")
    return pd.DataFrame(
        {
            "oid": feats["oid"].to_numpy(),
            "feature_version": version,
            "lastmjd": feats["lastmjd"].to_numpy(),
            "n_features": np.isfinite(values.to_numpy()).sum(axis=1),
            "features": records,
            "night": feats["night"].to_numpy(),
        },
        columns=cols,
    )


def object_rows(objects: pd.DataFrame) -> pd.DataFrame:
    """The ``object`` rows with their order-29 HEALPix index (cone searches read index ranges of it)."""
    if objects.empty or "meanra" not in objects.columns:
        return objects
    ra = objects["meanra"].to_numpy(dtype=float)
    dec = objects["meandec"].to_numpy(dtype=float)
    ok = np.isfinite(ra) & np.isfinite(dec)
    hpx = np.zeros(len(objects), dtype=np.int64)
    hpx[ok] = healpix29(ra[ok], dec[ok])
    return objects.assign(hpx29=pd.arrays.IntegerArray(hpx, ~ok))


def xmatch_rows(matches: pd.DataFrame) -> pd.DataFrame:
    """The ``xmatch`` rows with their catalogue columns as a JSON object (JSONB in PostgreSQL)."""
    return matches.assign(properties=matches["properties"].map(json.loads))


#: Every output of a batch, in the order the driver upserts them.
SINKS: tuple[Sink, ...] = (
    Sink("objects", lake="objects", postgres="object", postgres_rows=object_rows),
    Sink("magstats", lake="magstats", postgres="magstats"),
    Sink("features", lake="features", postgres="feature", postgres_rows=feature_summary),
    Sink("flux_features", lake="flux_features", postgres="feature", postgres_rows=feature_summary),
    Sink("stamp_probabilities", lake="probabilities", postgres="probability", stage="decode"),
    Sink("probabilities", lake="probabilities", postgres="probability"),
    Sink("outliers", lake="outliers", postgres="outlier_score"),
    Sink("neighbours", lake="neighbours", postgres="neighbour", postgres_rows=latest_neighbours),
    Sink("associations", postgres="object_association"),
    Sink("xmatch", lake="xmatch", postgres="xmatch", postgres_rows=xmatch_rows),
    Sink("watchlist_hits", lake="watchlist_hits", postgres="watchlist_hit"),
    Sink("alerts", lake="alerts", postgres="alert", postgres_rows=alert_summary),
    Sink("detections", lake="detections", lake_rows=batch_detections),
    Sink("non_detections", lake="non_detections", lake_rows=batch_non_detections),
    Sink("forced_photometry", lake="forced_photometry", lake_rows=batch_forced_photometry),
    Sink("survey_objects", lake="survey_objects", lake_rows=batch_survey_objects),
    Sink("solar_system", lake="solar_system", lake_rows=batch_solar_system),
)


def sinks_of(stage: Stage, sinks: tuple[Sink, ...] = SINKS) -> tuple[Sink, ...]:
    return tuple(s for s in sinks if s.stage == stage)


# ------------------------------------------------------------------------------------- the worker side
def with_alert_night(df: pd.DataFrame, alerts: pd.DataFrame, latest: pd.Series | None = None) -> pd.DataFrame:
    """Tag rows with the night of the latest alert of their object in this batch (the lake partition of the
    history tables: a batch's history then lands in one file per alert night, not one per historical night).
    ``latest``: :func:`latest_alert_night` of ``alerts``, when the caller has it (one per region, every table)."""
    if df.empty or alerts.empty:
        return df
    latest = latest_alert_night(alerts) if latest is None else latest
    pos = latest.index.get_indexer(df["oid"])
    if (pos < 0).any():  # a row of an object without an alert in the batch: map it (and fail) as before
        return df.assign(alert_night=df["oid"].map(latest).astype("int32"))
    return df.assign(alert_night=latest.to_numpy()[pos].astype("int32"))


def latest_alert_night(alerts: pd.DataFrame) -> pd.Series:
    """The night of each object's latest alert (oid-indexed): what :func:`with_alert_night` files rows under."""
    return alerts.groupby("oid")["night"].max()


def with_batch(df: pd.DataFrame, batch_id: str) -> pd.DataFrame:
    return df if "batch_id" in df.columns else df.assign(batch_id=batch_id)


def write_lake(
    state: Any, sinks: tuple[Sink, ...], lake: Lake, batch_id: str, part: str, alerts: pd.DataFrame
) -> tuple[list[str], dict[str, int]]:
    """Write every lake sink's rows of ``state`` as the files ``part`` of ``batch_id``: (paths, rows per sink).
    ``alerts`` gives the alert night of tables filed by it."""
    paths: list[str] = []
    counts: dict[str, int] = {}
    latest = None
    for sink in sinks:
        if sink.lake is None:
            continue
        df = sink.lake_frame(state)
        counts[sink.name] = len(df)
        if df.empty:
            continue
        if partition_key(sink.lake) == "alert_night" and "alert_night" not in df.columns:
            if latest is None and not alerts.empty:
                latest = latest_alert_night(alerts)
            df = with_alert_night(df, alerts, latest)
        paths.extend(lake.write_table(sink.lake, with_batch(df, batch_id), part))
    return paths, counts


def postgres_rows(state: Any, sinks: tuple[Sink, ...]) -> dict[str, pd.DataFrame]:
    """The PostgreSQL rows of every sink that has a table (what travels back to the driver)."""
    out = {}
    for sink in sinks:
        if sink.postgres is not None:
            rows = sink.postgres_frame(state)
            if not rows.empty:
                out[sink.name] = rows
    return out
