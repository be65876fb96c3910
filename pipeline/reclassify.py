"""Re-score the objects already in the database with a light-curve model (``broker reclassify``).

Why: a new model version (better classes on real data) should reach the objects seen on earlier nights, not only
the alerts that come after it, and re-running every night to get there would decode, correct and re-feature
everything again. The pipeline keeps each object's latest feature vector per feature version in PostgreSQL
(``feature``: JSON, NaN as null, what ``pipeline.sinks.feature_summary`` writes), and that vector is exactly what
the run's classifier read. So a model trained on a stored feature version re-scores from it, in chunks of objects,
in the driver's process (a forest over 20,000 vectors takes about a second), and upserts its ``probability``,
``outlier_score`` and ``taxonomy`` rows. Rows are keyed by classifier name *and version*: the earlier version's
rows stay (an object's probabilities list every version; the API's class queries, ``probabilities_latest`` and the
explorer use the latest), and re-scoring with the same version again only rewrites its own rows.

A model trained on a feature version the database does not hold (e.g. ``lc_hierarchical 1.1.0`` reads
``lc-features-1.0.0``; a new model on a new feature definition) gets its vectors computed from the light-curve
history store instead (``history_features``): every stored detection and non-detection of each object, corrected,
through the same pure steps a region task runs (correction, magnitude statistics, features, the WISE colours from
the stored AllWISE matches), a group of history pixels at a time, each group a Dask task. Those vectors are
stored too (``feature``, under their version), so the next re-scoring on that version reads them.
``--from-history`` takes that path even when the version is stored. Without a history store (``--no-history``)
an unstored version is an error naming the versions held, never a silent nothing.

The stamp classifier (``--stamps``, ``reclassify_stamps``) reads cutouts, not features: each object it scored
gets its earliest stored alert read back from the raw archive, decoded again and scored by the new version, a few
hundred alerts per Dask task (reading, decoding and the CNN are the cost; the driver pages the database and
writes).

Where it runs: with ``--n-workers`` above one (or a ``--scheduler``) the history pixel groups and the stamp pages
are tasks on Dask workers; with ``--n-workers 1``, or for a list of ``--oid``, everything runs in the driver's
process. Scoring stored vectors always runs in the driver's process: reading them and writing the rows are most of
its time, and both are the database's.

The per-batch lake tables (``probabilities``, ``outlier_scores``, ``features``) are the record of what each batch
said when it ran and are not rewritten; ``probabilities_latest`` is republished (``--no-publish-lake`` skips it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from distributed import Client, LocalCluster, as_completed

from alert_broker.api.publish import PLAIN_TABLES, publish
from alert_broker.classifiers import load as load_model
from alert_broker.classifiers.registry import read_metadata, version_key
from alert_broker.classifiers.stamp import (
    STAMP_CLASSES,
    STAMP_TAXONOMY_VERSION,
    StampClassifier,
)
from alert_broker.classifiers.taxonomy import flat_taxonomy_rows, taxonomy_rows
from alert_broker.features.healpix import order29_ranges, with_neighbours
from alert_broker.features.lightcurve import FEATURE_VERSION, FLUX_FEATURE_VERSION
from alert_broker.features.science import (
    RegionState,
    colours_step,
    correct_step,
    features_step,
    flux_features_step,
    magstats_step,
)
from alert_broker.features.tables import Tables
from alert_broker.pipeline.config import Settings, redact
from alert_broker.pipeline.driver import close_local_cluster
from alert_broker.pipeline.resources import LakeSpec, ModelSpec, resources
from alert_broker.pipeline.sinks import feature_summary
from alert_broker.storage import Lake, RawArchive, SummaryStore
from alert_broker.storage.history import HistoryStore
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import RawMessage

log = logging.getLogger(__name__)

#: ``pipeline_run.source`` of a re-scoring (its ``summary`` holds the reports, ``counts`` objects and changes).
RUN_SOURCE = "reclassify"
#: Objects read, scored and written at a time: ~170 features as JSON are ~6 kB an object.
CHUNK = 20_000
#: Chunks of stored vectors read ahead (on a second connection) while one is scored and written.
READ_AHEAD = 1
#: First alerts read back from the raw archive at a time (a ZTF packet with its cutouts is ~60 kB).
STAMP_CHUNK = 2_000
#: First alerts one Dask task reads back, decodes and scores when the stamp re-scoring runs on workers.
STAMP_TASK = 500
#: Up to this many first alerts the stamp re-scoring runs in the driver's process (no workers started for it).
STAMPS_IN_PROCESS = 3_000
#: History pixels read at a time when the vectors are computed from the light curves (order 4: 3,072 pixels).
PIXELS_PER_READ = 64


class NoStoredFeatures(ValueError):
    """The model reads a feature version the database holds no vector of."""


@dataclass
class ReclassifyReport:
    """What one model's re-scoring did: the objects, their most probable classes, and the changes against the
    classifier's previous version (what a person deciding whether to adopt the new version looks at first)."""

    classifier: str
    version: str
    feature_version: str
    # "stored": the database's vectors; "history": computed from the light curves; "raw archive": the stamps
    source: str = "stored"
    objects: int = 0
    top_classes: Counter = field(default_factory=Counter)  # objects per most probable class
    previous_version: str | None = None  # the latest other version of this classifier stored before
    compared: int = 0  # objects that version had scored too
    changed: int = 0  # ... whose most probable class is now another
    transitions: Counter = field(default_factory=Counter)  # (old class, new class) -> objects
    seconds: float = 0.0
    written: bool = True

    def summary(self) -> dict[str, Any]:
        return {
            "classifier": self.classifier,
            "version": self.version,
            "feature_version": self.feature_version,
            "source": self.source,
            "objects": self.objects,
            "top_classes": dict(self.top_classes.most_common()),
            "previous_version": self.previous_version,
            "compared": self.compared,
            "changed": self.changed,
            "transitions": {f"{a} -> {b}": n for (a, b), n in self.transitions.most_common()},
            "seconds": round(self.seconds, 3),
            "written": self.written,
        }

    def render(self) -> str:
        what = "re-scored" if self.written else "would re-score (dry run, nothing written)"
        origin = {
            "stored": f"their stored {self.feature_version} vectors",
            "history": f"{self.feature_version} vectors computed from the history store's light curves",
            "raw archive": "their first alert's cutouts, read back from the raw archive",
        }[self.source]
        lines = [
            f"{self.classifier} {self.version}: {what} {self.objects} objects from {origin} in {self.seconds:.1f} s"
        ]
        if self.top_classes:
            lines.append(
                "  most probable class  " + ", ".join(f"{c} {n}" for c, n in self.top_classes.most_common())
            )
        if self.previous_version is not None:
            share = f" ({100 * self.changed / self.compared:.1f} %)" if self.compared else ""
            lines.append(
                f"  against {self.previous_version}: {self.changed} of {self.compared} objects change their most "
                f"probable class{share}"
            )
            for (a, b), n in self.transitions.most_common(8):
                lines.append(f"    {a:>15} -> {b:<15} {n}")
        return "\n".join(lines)


def feature_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The stored ``feature`` rows (``oid``, ``features`` as {name: value or None}) as the wide float frame a
    model reads: one row per object, ``oid`` first, a stored null as NaN. Names absent from a vector are NaN."""
    if rows.empty:
        return pd.DataFrame({"oid": pd.Series([], dtype="string")})
    wide = pd.DataFrame.from_records(list(rows["features"]), index=range(len(rows)))
    wide = wide.apply(pd.to_numeric, errors="coerce").astype("float64")
    wide.insert(0, "oid", rows["oid"].astype("string").to_numpy())
    return wide


def stored_feature_versions(store: SummaryStore) -> dict[str, int]:
    """Feature version -> objects with a stored vector of it."""
    df = store.fetch_df("SELECT feature_version, count(*) AS n FROM feature GROUP BY 1 ORDER BY 1")
    return {str(v): int(n) for v, n in zip(df["feature_version"], df["n"], strict=True)}


def _previous_version(store: SummaryStore, name: str, version: str) -> str | None:
    df = store.fetch_df(
        "SELECT DISTINCT classifier_version FROM probability WHERE classifier_name = %s AND classifier_version <> %s",
        (name, version),
    )
    known = sorted(df["classifier_version"].astype(str), key=version_key)
    return known[-1] if known else None


def _top_class(prob: pd.DataFrame, name: str) -> pd.Series:
    """oid -> most probable class of classifier ``name`` in long probability rows."""
    first = prob[(prob["classifier_name"] == name) & (prob["ranking"] == 1)]
    return pd.Series(first["class_name"].astype(str).to_numpy(), index=first["oid"].astype(str).to_numpy())


def _oid_pages(store: SummaryStore, query: str, params: dict[str, Any], chunk: int, oids: list[str] | None):
    """Rows of ``query`` in oid order, ``chunk`` at a time (keyset paging: no server-side cursor held across the
    writes, and each page is an index range scan). ``query`` names ``%(after)s`` (the last oid of the previous
    page), ``%(oids)s`` (a list of objects, or NULL for all) and ``%(chunk)s``; its first column is the oid."""
    after = ""
    while True:
        rows = store.fetch_df(query, {**params, "after": after, "oids": oids, "chunk": chunk})
        if rows.empty:
            return
        yield rows
        if len(rows) < chunk:
            return
        after = str(rows.iloc[-1, 0])


def _chunks(store: SummaryStore, feature_version: str, chunk: int, oids: list[str] | None):
    """The stored vectors of ``feature_version`` in oid order, ``chunk`` objects at a time."""
    return _oid_pages(
        store,
        "SELECT oid, features FROM feature WHERE feature_version = %(version)s AND oid > %(after)s"
        " AND (%(oids)s::text[] IS NULL OR oid = ANY(%(oids)s::text[])) ORDER BY oid LIMIT %(chunk)s",
        {"version": feature_version},
        chunk,
        oids,
    )


def history_features(
    history: HistoryStore,
    feature_version: str,
    pixels: list[int],
    oids: list[str] | None = None,
    allwise: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The feature vectors of ``feature_version`` of the objects stored in ``pixels`` (or only ``oids``),
    computed from every stored row of their light curves by the steps a region task runs: correction, magnitude
    and object statistics, the features (the difference-flux ones for ``FLUX_FEATURE_VERSION``), and the WISE
    colours when ``allwise`` (the AllWISE ``xmatch`` rows, with ``properties``) is given. Columns as the
    pipeline's: ``oid``, the features, ``FEATURE_VERSION``, ``lastmjd``, ``night``."""
    det = history.read("detections", pixels, oids)
    if det.empty:
        return pd.DataFrame()
    ids = sorted(det["oid"].astype(str).unique())
    tables = Tables(
        detections=det,
        non_detections=history.read("non_detections", pixels, ids),
        forced_photometry=history.read("forced_photometry", pixels, ids),
    )
    state = magstats_step(correct_step(RegionState.start(tables)))
    if feature_version == FLUX_FEATURE_VERSION:
        return flux_features_step(state).flux_features
    state = features_step(state, feature_version)
    if allwise is not None and not allwise.empty and not state.features.empty:
        state = colours_step(replace(state, xmatch=allwise[allwise["oid"].isin(ids)]))
    return state.features


def pixel_group_rows(
    lake: LakeSpec, order: int, feature_version: str, pixels: list[int], allwise: pd.DataFrame | None
) -> pd.DataFrame:
    """One Dask task of a distributed re-scoring: the ``feature`` rows (``feature_summary``) of the objects
    stored in ``pixels``, computed on the worker from the history store it reads itself."""
    history = HistoryStore(Lake(lake.url, dict(lake.options) or None), order=order)
    feats = history_features(history, feature_version, pixels, None, allwise)
    return feature_summary(feats) if not feats.empty else pd.DataFrame()


def _history_chunks(
    store: SummaryStore,
    history: HistoryStore,
    feature_version: str,
    oids: list[str] | None,
    client: Client | None = None,
):
    """The vectors computed from the history store, ``PIXELS_PER_READ`` pixels at a time (all at once for a
    list of objects), as ``feature`` rows ready to store (``feature_summary``). Each group gets the AllWISE
    matches of its own part of the sky only (``_allwise``). With a Dask ``client`` the pixel groups are computed
    on its workers (as they finish, in any order; at most two per worker thread in flight, so the driver holds a
    bounded share of the matches); the driver only reads the matches, stores and scores."""
    pixels = history.pixels("detections")
    if oids:
        feats = history_features(history, feature_version, pixels, oids, _allwise(store, oids=oids))
        if not feats.empty:
            yield feature_summary(feats)
        return
    groups = [pixels[i : i + PIXELS_PER_READ] for i in range(0, len(pixels), PIXELS_PER_READ)]
    if client is None:
        for group in groups:
            allwise = _allwise(store, pixels=group, order=history.order)
            feats = history_features(history, feature_version, group, None, allwise)
            if not feats.empty:
                yield feature_summary(feats)
        return
    lake = LakeSpec(history.lake.url, tuple(sorted(history.lake.storage_options.items())))
    window = 2 * max(1, sum(client.nthreads().values()))
    running = as_completed()

    def finished():
        fut = next(running)
        rows = fut.result()
        fut.release()
        return rows

    for group in groups:
        allwise = _allwise(store, pixels=group, order=history.order)
        running.add(
            client.submit(pixel_group_rows, lake, history.order, feature_version, group, allwise, pure=False)
        )
        while running.count() >= window:
            rows = finished()
            if not rows.empty:
                yield rows
    while running.count():
        rows = finished()
        if not rows.empty:
            yield rows


def _allwise(
    store: SummaryStore, *, oids: list[str] | None = None, pixels: list[int] | None = None, order: int = 0
) -> pd.DataFrame:
    """The stored AllWISE matches (the colour features' inputs) of ``oids``, or of the objects whose mean position
    lies in the history ``pixels`` (of ``order``) or a pixel touching them: an object's home pixel is where it
    was first seen, and its mean position can sit across a border; the steps keep the matches of the objects
    they compute. Empty when the runs had no AllWISE catalogue."""
    if oids is not None:
        return store.fetch_df(
            "SELECT oid, catalog, properties FROM xmatch WHERE catalog = 'allwise' AND oid = ANY(%s)", (oids,)
        )
    lows, highs = order29_ranges(with_neighbours(np.asarray(pixels, dtype=np.int64), order), order)
    if not lows:
        return pd.DataFrame(columns=["oid", "catalog", "properties"])
    params: dict[str, Any] = {}
    ranges = []
    for i, (lo, hi) in enumerate(zip(lows, highs, strict=True)):
        # one BETWEEN per range, as the API's cone search: bitmap scans of the hpx29 index
        params[f"lo{i}"], params[f"hi{i}"] = lo, hi
        ranges.append(f"o.hpx29 BETWEEN %(lo{i})s AND %(hi{i})s")
    return store.fetch_df(
        "SELECT x.oid, x.catalog, x.properties FROM xmatch x JOIN object o ON o.oid = x.oid"
        f" WHERE x.catalog = 'allwise' AND ({' OR '.join(ranges)})",
        params,
    )


def reclassify(
    store: SummaryStore,
    spec: ModelSpec,
    *,
    history: HistoryStore | None = None,
    from_history: bool = False,
    client: Client | None = None,
    chunk: int = CHUNK,
    oids: list[str] | None = None,
    dry_run: bool = False,
    read_ahead: int = READ_AHEAD,
) -> ReclassifyReport:
    """Re-score every object with a stored vector of the model's feature version (or only ``oids``) and upsert
    the model's probability, outlier-score and taxonomy rows (not with ``dry_run``). When the database holds no
    vector of that version, or ``from_history``, the vectors are computed from ``history`` (on the workers of
    ``client`` when given) and stored as well.
    The report compares the most probable class with the latest other version of the same classifier.
    ``read_ahead``: stored chunks read ahead on a second connection (0: none, one connection)."""
    t0 = time.perf_counter()
    feature_version = read_metadata(spec.name, spec.version, root=spec.root).get(
        "feature_version", FEATURE_VERSION
    )
    stored = stored_feature_versions(store)
    use_history = from_history or feature_version not in stored
    if use_history and history is None:
        held = ", ".join(f"{v} ({n} objects)" for v, n in stored.items()) or "none"
        raise NoStoredFeatures(
            f"{spec.name} {spec.version} reads {feature_version} features, and the database holds no vector of "
            f"that version (it holds: {held}) and there is no history store to compute them from. Re-score "
            f"with a model trained on a stored version, or run the nights again with --lc-model "
            f"{spec.name}:{spec.version} (the run computes the features its models read)"
        )
    model = load_model(spec.name, spec.version, root=spec.root)
    report = ReclassifyReport(
        spec.name, spec.version, feature_version, "history" if use_history else "stored", written=not dry_run
    )
    report.previous_version = _previous_version(store, spec.name, spec.version)
    if not dry_run:
        store.upsert("taxonomy", taxonomy_rows(model))
    reader: SummaryStore | None = None
    if use_history and history is not None:
        pages = _history_chunks(store, history, feature_version, oids, client)
    elif read_ahead > 0:
        # the next chunk is read on a connection of its own while this one is scored and written
        reader = SummaryStore(store.dsn)
        pages = _read_ahead(_chunks(reader, feature_version, chunk, oids), read_ahead)
    else:
        pages = _chunks(store, feature_version, chunk, oids)
    try:
        for rows in pages:
            _score_chunk(store, report, model, rows, write_vectors=use_history, dry_run=dry_run)
    finally:
        if reader is not None:
            pages.close()
            reader.close()
    report.seconds = time.perf_counter() - t0
    return report


def _read_ahead(pages, depth: int = 1):
    """``pages`` read ``depth`` ahead in a thread: reading the next chunk of vectors (PostgreSQL's JSON and the
    transfer) overlaps scoring and writing this one. Closing the generator stops the thread after its current
    read."""
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def run() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        box.put(page, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            box.put(err)

    thread = threading.Thread(target=run, name="reclassify-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                box.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.2)


def _score_chunk(
    store: SummaryStore,
    report: ReclassifyReport,
    model,
    rows: pd.DataFrame,
    *,
    write_vectors: bool,
    dry_run: bool,
) -> None:
    """Score one chunk of ``feature`` rows and record it (``_record``); vectors computed from the history store
    (``write_vectors``) are stored first."""
    if write_vectors and not dry_run:
        store.upsert("feature", rows)  # the next re-scoring on this version reads them
    x = feature_frame(rows)
    if hasattr(model, "classify"):  # the hierarchical models: the top level evaluated once for both
        prob, outliers = model.classify(x)
    else:
        prob, outliers = model.probabilities_long(x), model.outlier_scores(x)
    _record(store, report, prob, outliers, dry_run)


def _record(
    store: SummaryStore,
    report: ReclassifyReport,
    prob: pd.DataFrame,
    outliers: pd.DataFrame | None,
    dry_run: bool,
) -> None:
    """Count one chunk's most probable classes and their changes against the previous version into ``report``,
    and (unless ``dry_run``) upsert its probability (and outlier-score) rows."""
    new = _top_class(prob, report.classifier)
    report.objects += len(new)
    report.top_classes.update(new.to_numpy())
    if report.previous_version is not None:
        old = store.fetch_df(
            "SELECT oid, class_name FROM probability WHERE classifier_name = %s AND classifier_version = %s"
            " AND ranking = 1 AND oid = ANY(%s)",
            (report.classifier, report.previous_version, list(new.index)),
        )
        old_top = pd.Series(old["class_name"].astype(str).to_numpy(), index=old["oid"].astype(str).to_numpy())
        both = old_top.index.intersection(new.index)
        a, b = old_top.loc[both].to_numpy(), new.loc[both].to_numpy()
        moved = a != b
        report.compared += len(both)
        report.changed += int(np.count_nonzero(moved))
        report.transitions.update(zip(a[moved], b[moved], strict=True))
    if not dry_run:
        store.upsert("probability", prob)
        if outliers is not None:
            store.upsert("outlier_score", outliers)
    log.info("%s %s: %d objects scored", report.classifier, report.version, report.objects)


def _score_packets(archive: RawArchive, clf: StampClassifier, refs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The probability rows of ``clf`` on the packets ``refs`` names (``candid``, ``raw_path``), read back from
    ``archive`` and decoded again, and how many of them the archive did not have."""
    packets: dict[int, bytes] = {}
    for path, group in refs.groupby(refs["raw_path"].fillna(""), sort=False):
        packets.update(archive.fetch_many(group["candid"].astype("int64"), path=path or None))
    lost = len(refs) - len(packets)
    messages = [RawMessage("reclassify", 0, i, packets[c]) for i, c in enumerate(sorted(packets))]
    tables, _, _ = decode_batch(messages, "reclassify")
    if tables.alerts.empty or tables.stamps.empty:
        return pd.DataFrame(), lost
    # no first-alert test again: the night judged these alerts first in their batch's context (a packet's own
    # history alone can say otherwise, e.g. when a later packet's history corrected its times); only the survey
    # the CNN was trained on
    mine = tables.alerts["survey"].astype(str).to_numpy() == clf.survey
    if not mine.any():
        return pd.DataFrame(), lost
    return clf.probabilities_long(tables.alerts[mine], tables.stamps).reset_index(drop=True), lost


def first_alert_rows(lake: LakeSpec, spec: ModelSpec, refs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One Dask task of a distributed stamp re-scoring: ``_score_packets`` on the worker, with the worker's own
    lake handle and its cached stamp model (loaded once per worker process)."""
    res = resources()
    return _score_packets(RawArchive(res.lake(lake)), res.stamp_model(spec), refs)


def _first_alerts(store: SummaryStore, name: str, chunk: int, oids: list[str] | None):
    """Each object some stamp classifier ``name`` scored, with its earliest stored alert (the one its
    first-alert classification read): ``oid``, ``candid``, ``raw_path``, ``chunk`` objects at a time."""
    return _oid_pages(
        store,
        "SELECT DISTINCT ON (a.oid) a.oid, a.candid, a.raw_path, a.night FROM alert a"
        " WHERE a.oid IN (SELECT oid FROM probability WHERE classifier_name = %(name)s) AND a.oid > %(after)s"
        " AND (%(oids)s::text[] IS NULL OR a.oid = ANY(%(oids)s::text[]))"
        " ORDER BY a.oid, a.mjd, a.candid LIMIT %(chunk)s",
        {"name": name},
        chunk,
        oids,
    )


def reclassify_stamps(
    store: SummaryStore,
    lake: Lake,
    spec: ModelSpec,
    *,
    client: Client | None = None,
    chunk: int = STAMP_CHUNK,
    task: int | None = None,
    oids: list[str] | None = None,
    dry_run: bool = False,
) -> ReclassifyReport:
    """The stamp classifier ``spec`` on the earliest stored alert of every object some stamp classifier scored
    (the pipeline classifies an object's first alert only, the earliest of its batch: those are the objects whose
    first alert the broker received, and that alert), each packet read back from the raw archive and decoded
    again; probability and taxonomy rows upserted as for the light-curve models. With a Dask ``client`` each
    ``task`` (default ``STAMP_TASK``) alerts are read, decoded and scored on a worker (at most two tasks per
    worker thread in flight, so the driver holds a bounded number of results); the driver pages the database and
    writes."""
    t0 = time.perf_counter()
    report = ReclassifyReport(spec.name, spec.version, "cutouts", "raw archive", written=not dry_run)
    report.previous_version = _previous_version(store, spec.name, spec.version)
    if not dry_run:
        store.upsert(
            "taxonomy", flat_taxonomy_rows(spec.name, spec.version, STAMP_CLASSES, STAMP_TAXONOMY_VERSION)
        )
    task = task or STAMP_TASK
    lost = 0

    def record(prob: pd.DataFrame, missing: int) -> None:
        nonlocal lost
        lost += missing
        if not prob.empty:
            _record(store, report, prob, None, dry_run)

    pages = _first_alerts(store, spec.name, chunk, oids)
    if client is None:
        clf = StampClassifier.load(spec.name, spec.version, root=spec.root)
        archive = RawArchive(lake)
        for firsts in pages:
            record(*_score_packets(archive, clf, firsts))
    else:
        where = LakeSpec(lake.url, tuple(sorted(lake.storage_options.items())))
        window = 2 * max(1, sum(client.nthreads().values()))
        running = as_completed()
        for firsts in pages:
            for i in range(0, len(firsts), task):
                refs = firsts.iloc[i : i + task][["candid", "raw_path"]]
                running.add(client.submit(first_alert_rows, where, spec, refs, pure=False))
                while running.count() >= window:
                    fut = next(running)
                    record(*fut.result())
                    fut.release()
        for fut in running:
            record(*fut.result())
            fut.release()
    if lost:
        log.warning("%d first alerts are not in the raw archive: their objects keep their rows", lost)
    report.seconds = time.perf_counter() - t0
    return report


def reclassify_models(
    settings: Settings,
    dsn: str,
    specs: tuple[ModelSpec, ...],
    *,
    oids: list[str] | None = None,
    dry_run: bool = False,
    from_history: bool = False,
    stamps: tuple[ModelSpec, ...] = (),
) -> list[ReclassifyReport]:
    """``broker reclassify``: each light-curve model in turn (under ``--lc-model auto``, one whose feature version
    is not stored is skipped unless ``from_history``), then each of the ``stamps`` models (one per survey), then
    ``probabilities_latest`` republished when anything was written and the settings publish the lake."""
    store = SummaryStore(dsn)
    history = (
        HistoryStore(Lake(settings.lake, settings.storage_options or None), order=settings.history_order)
        if settings.history
        else None
    )
    reports: list[ReclassifyReport] = []
    stack = ExitStack()
    run_id = None
    if not dry_run:  # a re-scoring is a run of the broker: the night page lists it beside the nights
        run_id = store.start_run(
            time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6],
            RUN_SOURCE,
            {
                "lc_models": [f"{s.name}:{s.version}" for s in specs],
                "stamp_model": ",".join(f"{m.name}:{m.version}" for m in stamps) or None,
                "from_history": from_history,
                "oids": len(oids) if oids else None,
            },
        )
    status = "failed"
    try:
        auto = (settings.lc_model or "").strip().lower() == "auto"
        stored = stored_feature_versions(store)
        todo = []
        for spec in specs:
            version = read_metadata(spec.name, spec.version, root=spec.root).get(
                "feature_version", FEATURE_VERSION
            )
            if auto and version not in stored and not from_history:
                # auto names one model per feature set; a database of one survey holds the vectors of one of them
                log.info(
                    "%s %s: no stored %s vector, skipped (name it to compute them)",
                    spec.name,
                    spec.version,
                    version,
                )
                continue
            todo.append((spec, from_history or version not in stored))
        client = None
        computed = history is not None and any(c for _, c in todo)
        if not oids and (computed or any(_worth_a_cluster(store, m.name) for m in stamps)):
            client = _cluster(settings, stack)
        for spec, _ in todo:
            try:
                reports.append(
                    reclassify(
                        store,
                        spec,
                        history=history,
                        from_history=from_history,
                        client=client,
                        oids=oids,
                        dry_run=dry_run,
                    )
                )
            except NoStoredFeatures:
                if not auto:
                    raise
                log.info("%s %s: no stored vector of the features it reads, skipped", spec.name, spec.version)
        lake = Lake(settings.lake, settings.storage_options or None)
        for stamp in stamps:
            reports.append(reclassify_stamps(store, lake, stamp, client=client, oids=oids, dry_run=dry_run))
        if not dry_run and settings.publish_lake and any(r.objects for r in reports):
            published = publish(
                dsn,
                settings.lake,
                settings.storage_options,
                history_order=settings.history_order,
                tables=PLAIN_TABLES,
            )
            log.info("%s", published.render().splitlines()[0])
        status = "ok"
    finally:
        stack.close()
        if run_id is not None:
            try:
                store.finish_run(
                    run_id,
                    status,
                    {"reclassify": [r.summary() for r in reports]},
                    counts={
                        "objects": sum(r.objects for r in reports),
                        "changed": sum(r.changed for r in reports),
                    },
                )
            except psycopg.Error as err:  # the database went away: the report on disk still tells
                log.error(
                    "could not record the re-scoring in PostgreSQL: %s", redact(str(err)).splitlines()[0]
                )
        store.close()
    return reports


def _worth_a_cluster(store: SummaryStore, stamp_name: str) -> bool:
    """Whether the stamp re-scoring has enough first alerts to spread (more than ``STAMPS_IN_PROCESS``): below
    that, starting workers costs more than it saves (seconds; in ``bench_reclassify`` 1,500 alerts scored faster
    in the driver, 6,000 1.0-1.2x faster on two workers)."""
    row = store.fetch_df(
        "SELECT count(*) AS n FROM (SELECT DISTINCT oid FROM probability WHERE classifier_name = %s) AS s",
        (stamp_name,),
    )
    return int(row["n"].iloc[0]) > STAMPS_IN_PROCESS


def _cluster(settings: Settings, stack: ExitStack) -> Client | None:
    """A Dask client for the re-scoring's heavy part (vectors from the history store, first alerts' stamps): the
    ``--scheduler`` given, else a LocalCluster of ``--n-workers`` processes when that is more than one (else
    None: in this process)."""
    if settings.scheduler:
        return stack.enter_context(Client(settings.scheduler))
    if settings.n_workers <= 1:
        return None
    cluster = LocalCluster(
        n_workers=settings.n_workers,
        threads_per_worker=settings.threads_per_worker,
        dashboard_address=settings.dashboard_address,
        processes=True,
    )
    stack.callback(close_local_cluster, cluster)
    client = stack.enter_context(Client(cluster))
    log.info(
        "re-scoring on %d workers (dashboard %s)",
        settings.n_workers,
        client.dashboard_link,
    )
    return client
