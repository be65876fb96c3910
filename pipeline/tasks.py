"""The functions Dask runs on workers for one micro-batch (step timings are the task thread's CPU seconds).

Two stages. ``decode_chunk`` turns a slice of raw packets into the internal tables and archives the raw packets
(they never travel back to the driver); ``regions_of_batch`` assigns every object to a sky region from the decoded
positions. ``process_region`` takes every piece of one sky region, runs the science (correction, magstats, object
statistics, light-curve features, cross-matches, classification) and writes the lake files for that region. Both
return only the small frames the driver needs for PostgreSQL and the run report, so the driver stays light as
workers scale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from alert_broker.features import (
    FEATURE_VERSION,
    alert_neighbours,
    catalog_colours,
    compute_features,
    correct,
    latest_neighbours,
    magstats,
    object_stats,
)
from alert_broker.features.tables import Tables
from alert_broker.features.xmatch import crossmatch
from alert_broker.pipeline.regions import assign_regions
from alert_broker.storage import Catalog, Lake, RawArchive
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import DeadLetter, RawMessage

#: Columns of the PostgreSQL ``alert`` summary row (the rest stays in the lake).
ALERT_SUMMARY_COLUMNS = ["candid", "oid", "mjd", "night", "fid", "ra", "dec", "magpsf", "sigmapsf", "survey"]


@lru_cache(maxsize=8)
def _lake(url: str, options: tuple) -> Lake:
    """One Lake (and its filesystem connection pool) per worker process and location."""
    return Lake(url, dict(options) or None)


def lake_for(spec: tuple[str, tuple]) -> Lake:
    return _lake(*spec)


@dataclass
class DecodeResult:
    tables: Tables
    dead: list[DeadLetter]
    keys: pd.DataFrame  # oid, mjd, ra, dec of each alert: all that region assignment needs
    raw_index: pd.DataFrame  # candid -> raw archive file
    seconds: dict[str, float] = field(default_factory=dict)
    stamp_probabilities: pd.DataFrame = field(default_factory=pd.DataFrame)  # first alerts' stamp classes


@dataclass
class RegionResult:
    objects: pd.DataFrame
    magstats: pd.DataFrame
    features: pd.DataFrame  # the PostgreSQL summary: oid, feature_version, lastmjd, n_features, features
    alerts: pd.DataFrame  # ALERT_SUMMARY_COLUMNS
    paths: list[str]
    counts: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    failed: pd.DataFrame = field(default_factory=pd.DataFrame)  # alerts whose science failed: dead letters
    xmatch: pd.DataFrame = field(default_factory=pd.DataFrame)  # nearest catalogue source per (oid, catalog)
    probabilities: pd.DataFrame = field(default_factory=pd.DataFrame)  # ALeRCE's probability rows
    outliers: pd.DataFrame = field(default_factory=pd.DataFrame)  # outlier score per classified object
    neighbours: pd.DataFrame = field(default_factory=pd.DataFrame)  # latest alert-internal neighbours
    associations: pd.DataFrame = field(default_factory=pd.DataFrame)  # cross-survey ids of new objects


def decode_chunk(
    messages: list[RawMessage],
    batch_id: str,
    chunk: int,
    lake_spec: tuple[str, tuple],
    keep_stamps: bool,
    stamp_model: tuple[str, str, str | None] | None = None,
) -> DecodeResult:
    t0 = time.thread_time()
    messages = [m.loaded() for m in messages]
    tables, dead, raw = decode_batch(messages, batch_id)
    t1 = time.thread_time()
    raw_index = pd.DataFrame({"candid": pd.Series([], dtype="int64"), "raw_path": pd.Series([], dtype=str)})
    if not raw.empty:
        archive = RawArchive(lake_for(lake_spec))
        paths = archive.write(raw, f"{batch_id}-c{chunk:03d}")
        by_night = {_night_of_path(p): p for p in paths}
        raw_index = pd.DataFrame(
            {"candid": raw["candid"].to_numpy(), "raw_path": raw["night"].map(by_night).to_numpy()}
        )
    t2 = time.thread_time()
    stamp_probs = classify_stamps(tables, stamp_model, lake_spec, f"{batch_id}-c{chunk:03d}")
    t3 = time.thread_time()
    if not keep_stamps:
        tables.stamps = tables.stamps.iloc[0:0]
    keys = tables.alerts[["oid", "mjd", "ra", "dec"]] if not tables.alerts.empty else pd.DataFrame()
    seconds = {"decode": t1 - t0, "archive": t2 - t1}
    if stamp_model is not None:
        seconds["stamp"] = t3 - t2
    return DecodeResult(tables, dead, keys, raw_index, seconds, stamp_probs)


def decode_summary(result: DecodeResult) -> tuple:
    """The small part of a decode result the driver gathers: keys, dead letters, raw index, stamp
    probabilities (their lake paths in ``attrs["paths"]``), timings."""
    return result.keys, result.dead, result.raw_index, result.stamp_probabilities, result.seconds


@lru_cache(maxsize=2)
def _stamp_classifier(root: str, name: str, version: str | None):
    from alert_broker.classifiers.stamp import load_stamp_classifier

    return load_stamp_classifier(root, name, version)


def warm_up_stamps(stamp_model: tuple[str, str, str | None]) -> float:
    """Import TensorFlow and load the stamp CNN in this worker process before the first batch."""
    t0 = time.perf_counter()
    _stamp_classifier(*stamp_model)
    return time.perf_counter() - t0


def classify_stamps(
    tables: Tables, stamp_model: tuple[str, str, str | None] | None, lake_spec: tuple[str, tuple], part: str
) -> pd.DataFrame:
    """Stamp-classifier probability rows for the alerts that are the first detection of their object (no
    earlier detection in the alert's own history), written to the lake's ``probabilities`` table here, where
    the stamps are (they never travel on). The lake paths ride along in ``attrs["paths"]``."""
    if stamp_model is None or tables.alerts.empty or tables.stamps.empty:
        return pd.DataFrame()
    from alert_broker.classifiers.stamp import classify_first_alerts

    _stamp_classifier(*stamp_model)  # the per-process model cache
    probs = classify_first_alerts(tables.alerts, tables.stamps, stamp_model, detections=tables.detections)
    if probs.empty:
        return pd.DataFrame()
    night = tables.alerts.groupby("oid")["night"].max()
    lake_rows = probs.assign(alert_night=probs["oid"].map(night).astype("int32"))
    paths = lake_for(lake_spec).write_table(
        "probabilities", _with_batch(lake_rows, part.rsplit("-c", 1)[0]), part
    )
    probs = probs.reset_index(drop=True)
    probs.attrs["paths"] = paths
    return probs


def _night_of_path(path: str) -> int:
    for part in str(path).split("/"):
        if part.startswith("night="):
            return int(part.split("=", 1)[1])
    return -1


def regions_of_batch(summaries: list[tuple], n_regions: int, order: int) -> pd.Series:
    """oid -> region for the whole batch, from the decode summaries (runs on a worker: the driver does not wait
    between decoding and the science)."""
    keys = [k for k, *_ in summaries if not k.empty]
    if not keys:
        return pd.Series(dtype="int64", name="region")
    return assign_regions(pd.concat(keys, ignore_index=True), n_regions, order)


def split_by_region(result: DecodeResult, oid_region: pd.Series, n_regions: int) -> list[Tables]:
    """Cut one chunk's tables into per-region pieces (by each row's ``oid``)."""
    pieces = [Tables() for _ in range(n_regions)]
    for name, df in result.tables.items():
        if df.empty or "oid" not in df.columns:
            continue
        region = df["oid"].map(oid_region)
        for r, part in df.groupby(region.to_numpy(), sort=False):
            setattr(pieces[int(r)], name, part)
    return pieces


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and not f.empty]
    if not frames:
        return pd.DataFrame()
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def merge_pieces(pieces: list[Tables]) -> Tables:
    """One region's tables from its pieces; a detection seen in two chunks of the batch is kept once."""
    merged = Tables(**{name: _concat([getattr(p, name) for p in pieces]) for name, _ in Tables().items()})
    if not merged.detections.empty:
        det = merged.detections
        if "has_stamp" in det.columns and det.duplicated(["oid", "candid"]).any():
            # the alert's own detection (it has the PS1 neighbour, stamps) wins over a history copy of it
            det = det.sort_values("has_stamp", kind="stable")
        merged.detections = det.drop_duplicates(["oid", "candid"], keep="last").sort_index()
    if not merged.non_detections.empty:
        merged.non_detections = merged.non_detections.drop_duplicates(["oid", "fid", "mjd"], keep="last")
    if not merged.forced_photometry.empty and "pid" in merged.forced_photometry:
        merged.forced_photometry = merged.forced_photometry.drop_duplicates(["oid", "pid"], keep="last")
    return merged


def science(tables: Tables, with_features: bool, seconds: dict[str, float] | None = None) -> tuple:
    """Correction, magstats, object statistics and features of one region's tables (pure): (detections,
    magstats, objects, features). The time of each step is added to ``seconds`` when given."""
    seconds = {} if seconds is None else seconds
    t0 = time.thread_time()
    detections = correct(tables.detections) if not tables.detections.empty else tables.detections
    t1 = time.thread_time()
    seconds["correct"] = seconds.get("correct", 0.0) + t1 - t0
    ms = magstats(detections, tables.non_detections) if not detections.empty else pd.DataFrame()
    objs = object_stats(detections, ms) if not detections.empty else pd.DataFrame()
    t2 = time.thread_time()
    seconds["magstats"] = seconds.get("magstats", 0.0) + t2 - t1
    feats = pd.DataFrame()
    if with_features and not detections.empty:
        feats = compute_features(detections, tables.non_detections, objs)
        if not feats.empty:
            feats = feats.join(objs.set_index("oid")[["lastmjd", "night"]], on="oid")
    seconds["features"] = seconds.get("features", 0.0) + time.thread_time() - t2
    return detections, ms, objs, feats


def _only(tables: Tables, oids: set, keep: bool) -> Tables:
    """The rows of ``tables`` whose oid is (keep=True) or is not (keep=False) in ``oids``."""
    out = Tables()
    for name, df in tables.items():
        if not df.empty and "oid" in df.columns:
            df = df[df["oid"].isin(oids) == keep]
        setattr(out, name, df)
    return out


def _isolate_failures(tables: Tables, with_features: bool) -> tuple[Tables, pd.DataFrame]:
    """After the science failed on a region: find, object by object, which objects make it fail. Returns the
    tables without them and one row per failed alert (candid, oid, provenance, reason). Slow, but only on the
    failure path, so one poisoned object never stops a batch (or, replayed, the whole stream)."""
    bad: dict[str, str] = {}
    for oid in tables.alerts["oid"].unique():
        try:
            science(_only(tables, {oid}, True), with_features, {})
        except Exception as exc:  # noqa: BLE001 - any failure of the science on this object
            bad[oid] = f"{type(exc).__name__}: {exc}"[:500]
    failed = tables.alerts[tables.alerts["oid"].isin(bad)]
    cols = [c for c in ("candid", "oid", "source", "partition", "offset") if c in failed.columns]
    failed = failed[cols].assign(
        reason=failed["oid"].map(lambda o: f"processing failed for object {o}: {bad[o]}"),
        error="ScienceError",
    )
    return _only(tables, set(bad), False), failed


def process_region(
    pieces: list[Tables],
    batch_id: str,
    region: int,
    lake_spec: tuple[str, tuple],
    with_features: bool = True,
    xmatch: tuple = (),
    catalog_root: str = "",
    lc_model: tuple[str, str, str | None] | None = None,
    history: tuple[int, float] | None = None,
    after: object = None,
) -> RegionResult:
    """The science of one sky region of a batch, and its lake files.

    ``history`` = (HEALPix order, cache MB) merges the stored light curves of the region's objects first (and
    stores the new rows after); ``after`` is only a dependency: the previous batch's region tasks, so a batch
    always sees the history its predecessors wrote."""
    del after
    seconds: dict[str, float] = {}
    t0 = time.thread_time()
    batch = merge_pieces(pieces)
    merge = None
    if history is not None:
        from alert_broker.pipeline.history import merge_history, store_for

        store = store_for(lake_spec, history)
        merge = merge_history(batch, store)
        tables = merge.tables
    else:
        tables = batch
    seconds["history"] = time.thread_time() - t0
    failed = pd.DataFrame()
    try:
        detections, ms, objs, feats = science(tables, with_features, seconds)
    except Exception:  # noqa: BLE001 - isolate the objects that fail, go on with the others
        tables, failed = _isolate_failures(tables, with_features)
        batch = _only(batch, set(failed["oid"]), False)
        detections, ms, objs, feats = science(tables, with_features, seconds)
    t2 = time.thread_time()
    matches = cross_match(objs, xmatch, catalog_root)
    neighbours = alert_neighbours(batch.alerts) if not batch.alerts.empty else pd.DataFrame()
    if not feats.empty and any(name == "allwise" for name, *_ in xmatch):
        # ALeRCE's catalogue colours (W1-W2, g-W2, ...) join the light-curve features
        colours = catalog_colours(matches, ms, "allwise", objects=objs)
        feats = feats.join(colours, on="oid")
    seconds["xmatch"] = time.thread_time() - t2
    t2 = time.thread_time()
    probs, outliers = classify(feats, lc_model)
    seconds["classify"] = time.thread_time() - t2
    t2 = time.thread_time()

    if merge is not None and not detections.empty and not batch.detections.empty:
        # the lake's detections table files what this batch brought; the stored history is already there
        detections = detections[detections["candid"].isin(batch.detections["candid"])]
    detections, non_detections, forced = (
        _with_alert_night(df, tables.alerts)
        for df in (detections, batch.non_detections, batch.forced_photometry)
    )
    lake = lake_for(lake_spec)
    part = f"{batch_id}-r{region:03d}"
    paths: list[str] = []
    if merge is not None:
        from alert_broker.pipeline.history import write_history

        t3 = time.thread_time()
        failed_oids = failed["oid"].unique() if not failed.empty else ()
        paths += write_history(store, merge, part, failed_oids)
        seconds["history"] += time.thread_time() - t3
    for name, df in (
        ("alerts", tables.alerts),
        ("detections", detections),
        ("non_detections", non_detections),
        ("forced_photometry", forced),
        ("objects", objs),
        ("magstats", ms),
        ("features", _with_alert_night(feats, tables.alerts)),
        ("xmatch", matches),
        ("neighbours", neighbours),
        ("probabilities", _with_alert_night(probs, tables.alerts)),
        ("outliers", _with_alert_night(outliers, tables.alerts)),
    ):
        if not df.empty:
            paths.extend(lake.write_table(name, _with_batch(df, batch_id), part))
    seconds["lake"] = time.thread_time() - t2
    alert_summary = (
        tables.alerts[[c for c in ALERT_SUMMARY_COLUMNS if c in tables.alerts.columns]]
        if not tables.alerts.empty
        else pd.DataFrame(columns=ALERT_SUMMARY_COLUMNS)
    )
    counts = {
        "alerts": len(tables.alerts),
        "detections": len(detections),
        "non_detections": len(batch.non_detections),
        "forced_photometry": len(batch.forced_photometry),
        "objects": len(objs),
        "magstats": len(ms),
    }
    counts["features"] = len(feats)
    counts["xmatch"] = len(matches)
    counts["classified"] = len(outliers)
    if merge is not None:
        counts["history_rows_read"] = sum(merge.stored_rows.values())
        counts["history_rows_written"] = sum(len(df) for df in merge.new_rows.values())
    associations = pd.DataFrame()
    if merge is not None and not merge.associations.empty:
        associations = merge.associations
        if not failed.empty:
            associations = associations[~associations["oid"].isin(failed["oid"])]
    result = RegionResult(
        objs,
        ms,
        feature_summary(feats),
        alert_summary,
        paths,
        counts,
        seconds,
        failed,
        matches,
        probs,
        outliers,
        latest_neighbours(neighbours) if not neighbours.empty else pd.DataFrame(),
        associations,
    )
    return result


def region_done(result: RegionResult) -> int:
    """A tiny stand-in for a finished region task (the next batch waits on these, not on the results)."""
    return len(result.paths)


@lru_cache(maxsize=4)
def _model(root: str, name: str, version: str | None):
    """A registry model, loaded once per worker process (not once per task)."""
    from alert_broker.classifiers import load

    return load(name, version, root=root)


def warm_up_lc(lc_model: tuple[str, str, str | None]) -> float:
    """Load the light-curve classifier in this worker process before the first batch (seconds of imports and
    unpickling that would otherwise fall on the first batch's latency)."""
    t0 = time.perf_counter()
    _model(*lc_model)
    return time.perf_counter() - t0


def classify(feats: pd.DataFrame, lc_model: tuple[str, str, str | None] | None) -> tuple:
    """Class probabilities (ALeRCE's long probability rows) and outlier scores for objects with features."""
    if feats.empty or not lc_model:
        return pd.DataFrame(), pd.DataFrame()
    model = _model(*lc_model)
    x = feats.drop(columns=[c for c in ("lastmjd", "night", "FEATURE_VERSION") if c in feats.columns])
    if hasattr(model, "classify"):  # the top level evaluated once for both
        return model.classify(x)
    return model.probabilities_long(x), model.outlier_scores(x)


@lru_cache(maxsize=32)
def _catalog(root: str, name: str) -> Catalog:
    """One catalogue handle per worker process (its pixel cache is shared per process)."""
    return Catalog(root, name)


def cross_match(objs: pd.DataFrame, specs: tuple, root: str) -> pd.DataFrame:
    """The ``xmatch`` rows of a region's objects against every configured catalogue (nearest within radius)."""
    if objs.empty or not specs:
        return pd.DataFrame()
    frames = [crossmatch(objs, _catalog(root, name), radius, list(cols)) for name, radius, cols in specs]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    return out.merge(objs[["oid", "night"]], on="oid", how="left")


def feature_summary(feats: pd.DataFrame) -> pd.DataFrame:
    """One PostgreSQL row per object: its feature vector as JSON (NaN as null), keyed by feature version."""
    cols = ["oid", "feature_version", "lastmjd", "n_features", "features", "night"]
    if feats.empty:
        return pd.DataFrame(columns=cols)
    names = [c for c in feats.columns if c not in ("oid", "FEATURE_VERSION", "lastmjd", "night", "batch_id")]
    values = feats[names].astype("float64")
    finite = values.astype(object).where(np.isfinite(values.to_numpy()), None)
    records = finite.to_dict(orient="records")
    return pd.DataFrame(
        {
            "oid": feats["oid"].to_numpy(),
            "feature_version": FEATURE_VERSION,
            "lastmjd": feats["lastmjd"].to_numpy(),
            "n_features": np.isfinite(values.to_numpy()).sum(axis=1),
            "features": records,
            "night": feats["night"].to_numpy(),
        },
        columns=cols,
    )


def _with_alert_night(df: pd.DataFrame, alerts: pd.DataFrame) -> pd.DataFrame:
    """Tag history rows with the night of the latest alert of their object in this batch (the lake partition:
    a batch's history then lands in one file per alert night instead of one per historical night)."""
    if df.empty or alerts.empty:
        return df
    latest = alerts.groupby("oid")["night"].max()
    return df.assign(alert_night=df["oid"].map(latest).astype("int32"))


def _with_batch(df: pd.DataFrame, batch_id: str) -> pd.DataFrame:
    if "batch_id" in df.columns:
        return df
    return df.assign(batch_id=batch_id)


def warm_up() -> float:
    """Run the science once on a tiny synthetic light curve in this worker process, so the first real batch
    does not pay for lazy imports and first-call set-up. Returns the seconds it took."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alert_broker.features.correction import REQUIRED_COLUMNS
    from alert_broker.features.magstats import REQUIRED_DETECTIONS as MS_REQUIRED
    from alert_broker.features.objects import REQUIRED_DETECTIONS as OBJ_REQUIRED

    t0 = time.perf_counter()
    n = 8
    cols = {c: np.full(n, 1.0) for c in set(REQUIRED_COLUMNS) | set(MS_REQUIRED) | set(OBJ_REQUIRED)}
    cols.update(
        oid=np.array(["warm-up"] * n, dtype=object),
        candid=np.arange(1, n + 1, dtype=np.int64),
        fid=np.array([1, 2] * (n // 2), dtype=np.int16),
        mjd=59000.0 + np.arange(n, dtype=np.float64),
        magpsf=np.full(n, 18.0),
        sigmapsf=np.full(n, 0.05),
        isdiffpos=np.ones(n, dtype=np.int8),
        distnr=np.full(n, 0.5),
        magnr=np.full(n, 17.0),
        sigmagnr=np.full(n, 0.02),
        night=np.full(n, 20200101, dtype=np.int32),
    )
    det = pd.DataFrame(cols)
    nondet = pd.DataFrame(
        {"oid": ["warm-up"], "fid": np.array([1], dtype=np.int16), "mjd": [58990.0], "diffmaglim": [20.0]}
    )
    corrected = correct(det)
    ms = magstats(corrected, nondet)
    object_stats(corrected, ms)
    pq.write_table(pa.Table.from_pandas(corrected), io.BytesIO())
    from alert_broker.features.lightcurve import warm_up as warm_up_features

    warm_up_features()  # numba kernels: compiled (or loaded from the on-disk cache) once per process
    return time.perf_counter() - t0
