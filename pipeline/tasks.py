"""The functions Dask runs on workers for one micro-batch (step timings are the task thread's CPU seconds).

Two stages. ``decode_chunk`` turns a slice of raw packets into the internal tables, archives the raw packets
(they never travel back to the driver) and classifies the stamps of each new object's first alert (the stamps
are here, and nowhere else); ``regions_of_batch`` assigns every object to a sky region from the decoded
positions. ``process_region`` takes every piece of one sky region, runs the region steps (pipeline/steps.py)
and writes the region's lake files. Both hand the driver only small typed summaries (PostgreSQL rows per sink,
file paths, counts, timings), so the driver stays light as workers scale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from alert_broker.classifiers.stamp import first_alert_mask
from alert_broker.features.science import merge_pieces
from alert_broker.features.tables import Tables
from alert_broker.pipeline.history import write_history
from alert_broker.pipeline.output import StreamMessage
from alert_broker.pipeline.regions import assign_regions
from alert_broker.pipeline.resources import HistorySpec, LakeSpec, ModelSpec, resources
from alert_broker.pipeline.sinks import postgres_rows, sinks_of, write_lake
from alert_broker.pipeline.steps import (
    REGION_STEPS,
    PipelineState,
    RegionConfig,
    StepContext,
    annotated_stream,
    run_steps,
)
from alert_broker.storage import RawArchive
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import DeadLetter, RawMessage
from alert_broker.surveys.registry import registry_for


@dataclass(frozen=True)
class DecodeConfig:
    """What a decode task is asked to do."""

    lake: LakeSpec
    #: the stamp classifiers, one per survey whose cutouts one was trained on
    stamp_models: tuple[ModelSpec, ...] = ()
    keep_stamps: bool = False
    surveys: tuple[str, ...] = ()  # the accepted surveys (empty: every known one)


@dataclass
class DecodeState:
    """One decoded chunk: the tables (they stay on the worker for the region tasks) and the stamp classes."""

    tables: Tables
    stamp_probabilities: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class DecodeSummary:
    """What the driver gathers of a decode task."""

    keys: pd.DataFrame  # oid, mjd, ra, dec of each alert: all that region assignment needs
    dead: list[DeadLetter]
    rows: dict[str, pd.DataFrame]  # PostgreSQL rows per sink (pipeline/sinks.py)
    paths: list[str]  # lake and raw-archive files written
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class DecodedChunk:
    """A decode task's result: the chunk's tables stay on the worker; ``summary`` travels."""

    tables: Tables
    summary: DecodeSummary
    stamp_probabilities: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class RegionPiece:
    """The rows of one chunk that belong to one sky region, with the stamp classes of their first alerts."""

    tables: Tables
    stamp_probabilities: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class RegionResult:
    """What the driver gathers of a region task."""

    rows: dict[str, pd.DataFrame]  # PostgreSQL rows per sink (pipeline/sinks.py)
    paths: list[str]  # lake and history files written
    counts: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    failed: pd.DataFrame = field(default_factory=pd.DataFrame)  # alerts whose science failed: dead letters
    stream: list[StreamMessage] = field(default_factory=list)  # the annotated alerts, encoded
    notes: dict[str, str] = field(default_factory=dict)  # e.g. a filter's first error, reported once


def _night_of_path(path: str) -> int:
    for part in str(path).split("/"):
        if part.startswith("night="):
            return int(part.split("=", 1)[1])
    return -1


def decode_chunk(messages: list[RawMessage], batch_id: str, chunk: int, config: DecodeConfig) -> DecodedChunk:
    """Decode a slice of a batch, archive its raw packets (each alert row learns its ``raw_path``), classify
    the stamps of first alerts and write their lake rows."""
    res = resources()
    lake = res.lake(config.lake)
    part = f"{batch_id}-c{chunk:03d}"
    t0 = time.thread_time()
    decoded = decode_batch([m.loaded() for m in messages], batch_id, registry_for(config.surveys))
    tables = decoded.tables
    t1 = time.thread_time()
    paths: list[str] = []
    if not decoded.raw.empty:
        raw = decoded.raw
        written = RawArchive(lake).write(raw, part)
        paths += written
        by_night = {_night_of_path(p): p for p in written}
        raw_path = pd.Series(raw["night"].map(by_night).to_numpy(), index=raw["candid"].to_numpy())
        tables.alerts = tables.alerts.assign(raw_path=tables.alerts["candid"].map(raw_path).to_numpy())
    t2 = time.thread_time()
    stamp_rows, skipped = classify_stamps(tables, config.stamp_models)
    state = DecodeState(tables, stamp_rows)
    t3 = time.thread_time()
    sinks = sinks_of("decode")
    lake_paths, counts = write_lake(state, sinks, lake, batch_id, part, tables.alerts)
    paths += lake_paths
    if not config.keep_stamps:
        tables.stamps = tables.stamps.iloc[0:0]
    seconds = {"decode": t1 - t0, "archive": t2 - t1}
    if config.stamp_models:
        seconds["stamp"] = t3 - t2 + (time.thread_time() - t3)
        counts["stamp_classified"] = (
            int(state.stamp_probabilities["oid"].nunique()) if not state.stamp_probabilities.empty else 0
        )
        counts.update(skipped)
    keys = tables.alerts[["oid", "mjd", "ra", "dec"]] if not tables.alerts.empty else pd.DataFrame()
    summary = DecodeSummary(keys, decoded.dead, postgres_rows(state, sinks), paths, counts, seconds)
    return DecodedChunk(tables, summary, state.stamp_probabilities)


def decode_summary(chunk: DecodedChunk) -> DecodeSummary:
    """The small part of a decode result that travels to the driver."""
    return chunk.summary


def classify_stamps(tables: Tables, specs: tuple[ModelSpec, ...]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Stamp-classifier probability rows for the alerts that are the first detection of their object (no
    earlier detection in the alert's own history), each by the model of its survey, and how many first alerts
    of a survey no model was trained on were left out (``stamp_skipped_<survey>`` in the run summary)."""
    if not specs or tables.alerts.empty or tables.stamps.empty:
        return pd.DataFrame(), {}
    first = first_alert_mask(tables.alerts, tables.detections)
    survey = tables.alerts["survey"].astype(str).to_numpy()
    rows = []
    for spec in specs:
        clf = resources().stamp_model(spec)
        mine = first & (survey == clf.survey)
        first &= ~mine
        if mine.any():
            rows.append(clf.probabilities_long(tables.alerts[mine], tables.stamps))
    skipped = {
        f"stamp_skipped_{s}": int(n)
        for s, n in zip(*np.unique(survey[first], return_counts=True), strict=True)
    }
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()), skipped


def regions_of_batch(summaries: list[DecodeSummary], n_regions: int, order: int) -> pd.Series:
    """oid -> region for the whole batch, from the decode summaries (runs on a worker: the driver does not wait
    between decoding and the science)."""
    keys = [s.keys for s in summaries if not s.keys.empty]
    if not keys:
        return pd.Series(dtype="int64", name="region")
    return assign_regions(pd.concat(keys, ignore_index=True), n_regions, order)


def split_by_region(chunk: DecodedChunk, oid_region: pd.Series, n_regions: int) -> list[RegionPiece]:
    """Cut one chunk's tables (and stamp classes) into per-region pieces (by each row's ``oid``)."""
    pieces = [RegionPiece(Tables()) for _ in range(n_regions)]
    for name, df in chunk.tables.items():
        if df.empty or "oid" not in df.columns:
            continue
        region = df["oid"].map(oid_region)
        for r, part in df.groupby(region.to_numpy(), sort=False):
            setattr(pieces[int(r)].tables, name, part)
    stamps = chunk.stamp_probabilities
    if not stamps.empty:
        for r, part in stamps.groupby(stamps["oid"].map(oid_region).to_numpy(), sort=False):
            pieces[int(r)].stamp_probabilities = part
    return pieces


def process_region(
    pieces: list[RegionPiece | Tables], batch_id: str, region: int, config: RegionConfig
) -> RegionResult:
    """The steps of one sky region of a batch, then its lake files (and the history rows the store lacked).

    With a history store the driver submits it once the previous batch's region tasks have finished
    (pipeline/chain.py), so a batch always sees the history its predecessors wrote."""
    ctx = StepContext(config, resources())
    t0 = time.thread_time()
    pieces = [p if isinstance(p, RegionPiece) else RegionPiece(p) for p in pieces]
    state = PipelineState.start(merge_pieces([p.tables for p in pieces]))
    stamps = [p.stamp_probabilities for p in pieces if not p.stamp_probabilities.empty]
    if stamps:
        state = replace(state, stamp_probabilities=pd.concat(stamps, ignore_index=True))
    ctx.seconds["history"] = time.thread_time() - t0  # merging the pieces: part of getting the rows together
    # the history cache's hits and misses during this task (the store is the worker process's: with one thread
    # per worker, exactly this task's)
    cache = ctx.resources.history(config.lake, config.history).stats if config.history is not None else None
    cache_before = dict(cache) if cache is not None else {}
    state = run_steps(state, ctx, REGION_STEPS)

    part = f"{batch_id}-r{region:03d}"
    paths: list[str] = []
    counts: dict[str, int] = {}
    if state.history is not None:
        t = time.thread_time()
        failed_oids = state.failed["oid"].unique() if not state.failed.empty else ()
        store = ctx.resources.history(config.lake, config.history)  # type: ignore[arg-type]
        paths += write_history(store, state.history, part, failed_oids)
        ctx.seconds["history"] += time.thread_time() - t
        counts["history_rows_read"] = sum(state.history.stored_rows.values())
        if cache is not None:  # files found in this worker's cache / read whole / read row-selectively
            for key in ("files_cached", "files_read", "files_selective"):
                counts[f"history_{key}"] = cache[key] - cache_before.get(key, 0)
        counts["history_rows_written"] = sum(
            len(df) if len(failed_oids) == 0 else int((~df["oid"].isin(failed_oids)).sum())
            for df in state.history.new_rows.values()
        )
    t = time.thread_time()
    sinks = sinks_of("region")
    lake_paths, lake_counts = write_lake(
        state, sinks, ctx.resources.lake(config.lake), batch_id, part, state.tables.alerts
    )
    paths += lake_paths
    counts.update(lake_counts)
    counts["classified"] = len(state.outliers)
    if not state.alerts.empty:  # per survey too (the metrics label alerts by survey)
        for survey, n in state.alerts["survey"].value_counts().items():
            counts[f"alerts_{survey}"] = int(n)
    rows = postgres_rows(state, sinks)
    ctx.seconds["lake"] = time.thread_time() - t
    stream: list[StreamMessage] = []
    notes: dict[str, str] = {}
    if config.annotate:
        t = time.thread_time()
        stream, filter_counts, notes = annotated_stream(state, ctx)
        counts.update(filter_counts)
        ctx.seconds["annotate"] = time.thread_time() - t
    return RegionResult(rows, paths, counts, ctx.seconds, state.failed, stream, notes)


def compact_share(
    lake: LakeSpec,
    history: HistorySpec,
    share: int,
    shares: int,
    deltas: dict[str, list[str]],
    tiered: bool = False,
) -> dict[str, int]:
    """One Dask task of a history compaction: the pixels ``p % shares == share`` (``tiered``: a periodic one,
    storage/history.py). Its counts, plus ``cpu_ms``: the worker CPU it took (the run report's
    ``worker_seconds.compaction``)."""
    t = time.thread_time()
    out = resources().history(lake, history).compact_share(share, shares, deltas, tiered=tiered)
    return {**out, "cpu_ms": round(1e3 * (time.thread_time() - t))}
