"""The driver: pull micro-batches, fan the work out on Dask, write every sink, then commit.

Per batch (architecture.md, "Data flow of one micro-batch"):
1. the batch manifest removes lake files of earlier, superseded batches that overlap these offsets;
2. workers decode slices of raw packets and archive the raw packets;
3. the driver assigns every object to one sky region (HEALPix, from its earliest alert);
4. workers run the science per region and write the lake files;
5. the driver bulk-upserts the PostgreSQL summaries and records the batch in the manifest;
6. only then are the source offsets committed (and the manifest entry marked committed).
A crash anywhere before 6 replays the batch; the manifest and upserts make the replay harmless.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import operator
import os
import re
import signal
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import psycopg
from distributed import Client, LocalCluster, as_completed
from distributed.scheduler import KilledWorker

from alert_broker.api.publish import publish
from alert_broker.classifiers import load as load_model
from alert_broker.classifiers.registry import read_metadata, versions
from alert_broker.classifiers.stamp import STAMP_CLASSES, STAMP_TAXONOMY_VERSION
from alert_broker.classifiers.taxonomy import flat_taxonomy_rows, taxonomy_rows
from alert_broker.features.lightcurve import FEATURE_VERSION, FLUX_FEATURE_VERSION
from alert_broker.models import shipped_models
from alert_broker.pipeline.archive import keys_digest
from alert_broker.pipeline.chain import RegionStage
from alert_broker.pipeline.config import Settings, redact
from alert_broker.pipeline.kafka import KafkaUnavailable, check_source, flush_client_logs, parse_kafka_url
from alert_broker.pipeline.kube import start_kube_cluster
from alert_broker.pipeline.metrics import Metrics
from alert_broker.pipeline.output import Output, StreamMessage, open_outputs
from alert_broker.pipeline.progress import Progress
from alert_broker.pipeline.report import BatchReport, RunReport
from alert_broker.pipeline.resources import BrokerWorkerPlugin, HistorySpec, LakeSpec, ModelSpec
from alert_broker.pipeline.shutdown import StopRequest
from alert_broker.pipeline.sinks import SINKS
from alert_broker.pipeline.sources import KafkaBatches, Source, archives, open_source
from alert_broker.pipeline.steps import FilterSpec, RegionConfig
from alert_broker.pipeline.tasks import (
    DecodeConfig,
    DecodeSummary,
    RegionResult,
    compact_share,
    decode_chunk,
    decode_summary,
    process_region,
    regions_of_batch,
    split_by_region,
)
from alert_broker.pipeline.worker_start import prepare_worker_start, worker_start_config
from alert_broker.storage import EmbeddedPostgres, Lake, RawArchive, SummaryStore, compaction, manifest
from alert_broker.storage.history import HISTORY_KEYS, HistoryStore
from alert_broker.surveys.messages import DeadLetter, RawMessage, dead_letters_frame

log = logging.getLogger(__name__)


def make_batch_id(messages: list[RawMessage]) -> str:
    """A name that depends only on the batch's coordinates: re-running the same batch rewrites the same files."""
    ranges = batch_ranges(messages)
    parts = []
    for source in sorted(ranges):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.split(":", 1)[-1])[:40]
        spans = "_".join(f"p{p}o{a}-{b}" for p, (a, b) in sorted(ranges[source].items()))
        parts.append(f"{slug}-{spans}")
    name = "+".join(parts)
    if len(name) > 120:
        name = name[:80] + "-" + hashlib.sha1(name.encode()).hexdigest()[:16]
    return name


def batch_ranges(messages: list[RawMessage]) -> dict[str, dict[int, tuple[int, int]]]:
    """{source: {partition: (first offset, last offset)}} of a batch."""
    out: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for m in messages:
        lo, hi = out[m.source].get(m.partition, (m.offset, m.offset))
        out[m.source][m.partition] = (min(lo, m.offset), max(hi, m.offset))
    return dict(out)


def archive_digests(messages: list[RawMessage]) -> dict[str, dict[int, str]]:
    """{source: {partition: digest of the keys in offset order}} of a batch's archive packets (``archive:*``
    sources, whose keys are the files read): the manifest keeps it so that ``--resume`` can tell the archive it
    is given still holds those files at those offsets. Only for a range of contiguous offsets with every key
    (as ``iter_archive`` cuts batches)."""
    by: dict[tuple[str, int], list[RawMessage]] = defaultdict(list)
    for m in messages:
        if m.source.startswith("archive:"):
            by[(m.source, m.partition)].append(m)
    out: dict[str, dict[int, str]] = defaultdict(dict)
    for (source, partition), ms in by.items():
        ms = sorted(ms, key=lambda m: m.offset)
        offsets = [m.offset for m in ms]
        if offsets == list(range(offsets[0], offsets[-1] + 1)) and all(m.key is not None for m in ms):
            out[source][partition] = keys_digest(str(m.key) for m in ms)
    return dict(out)


def _chunks(items: list, n: int) -> list[list]:
    n = max(1, min(n, len(items)))
    size = -(-len(items) // n)
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass
class InFlight:
    """A batch whose decode tasks are running on the cluster."""

    messages: list[RawMessage]
    batch_id: str
    ranges: dict[str, dict[int, tuple[int, int]]]
    report: BatchReport
    small_futs: list
    regions: RegionStage  # the region tasks, submitted once the previous batch's have finished
    t_start: float
    stream: list[StreamMessage] = field(default_factory=list)  # the annotated alerts, once the batch finished
    attempt: int = (
        0  # 0 the first time; a batch whose tasks failed is submitted again (settings.batch_retries)
    )


class BatchFailed(Exception):
    """A batch's tasks failed (a worker died more often than the scheduler allows, or a task raised)."""

    def __init__(self, job: InFlight, cause: BaseException) -> None:
        super().__init__(f"batch {job.batch_id} failed: {type(cause).__name__}: {cause}")
        self.job = job
        self.cause = cause


class PostgresUnavailable(RuntimeError):
    """PostgreSQL stayed unreachable past the configured limit: the run stops without committing."""


#: What libpq says when a connection is refused for good (credentials, database, role, pg_hba.conf), not for now
#: (a server starting, shutting down, full, or not answering): these are raised at once, never waited for.
PERMANENT_CONNECT_ERRORS = (
    "authentication failed",
    "no password supplied",
    "does not exist",
    "pg_hba.conf",
)


def _lasting(err: psycopg.Error) -> bool:
    """A connection refusal no retry can cure (the server answered no: wrong password, no such database)."""
    text = str(err)
    return "FATAL:" in text and any(marker in text for marker in PERMANENT_CONNECT_ERRORS)


def retry_postgres(call, what: str, limit: float):
    """``call()``, retried with backoff while PostgreSQL is unreachable (a restart, a failover) for at most
    ``limit`` seconds; then :class:`PostgresUnavailable` stops the run, nothing past its last commit committed.
    A refusal for good (a wrong password, no such database) is raised at once. ``what`` says what the call was
    doing, for the log."""
    start = time.monotonic()
    delay = 0.5
    while True:
        try:
            return call()
        except (psycopg.OperationalError, psycopg.InterfaceError) as err:
            if _lasting(err):
                raise
            waited = time.monotonic() - start
            if waited >= limit:
                raise PostgresUnavailable(
                    f"PostgreSQL unreachable for {waited:.0f} s ({what}): {redact(str(err))}; the run stops "
                    "without committing anything further: restart it once PostgreSQL is back (--pg-retry-s sets "
                    "how long to wait)"
                ) from None
            log.warning(
                "PostgreSQL unreachable (%s): %s; retrying in %.1f s (%.0f of %.0f s)",
                what, redact(str(err)).splitlines()[0], delay, waited, limit,
            )  # fmt: skip
            time.sleep(min(delay, max(0.0, limit - waited)))
            delay = min(delay * 2, 10.0)


@dataclass
class Compaction:
    """A history compaction submitted to the workers: its tasks, the delta files they fold (dropped only once
    every share is written) and the advisory lock held meanwhile."""

    futures: list
    deltas: dict[str, list[str]]
    store: HistoryStore
    lock: ExitStack
    started: float = field(default_factory=time.perf_counter)

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def finish(self, client: Client) -> dict[str, int]:
        """Wait for the shares, drop the folded deltas, release the lock (also when a share failed: then the
        deltas stay and the error propagates)."""
        try:
            out = {"deltas": sum(len(v) for v in self.deltas.values())}
            for part in client.gather(self.futures):
                for k, v in part.items():
                    out[k] = out.get(k, 0) + v
            self.store.drop_deltas(self.deltas)
            return out
        finally:
            self.lock.close()


@dataclass
class Broker:
    """A running broker: services opened once, then any number of batches."""

    settings: Settings
    client: Client
    lake: Lake
    store: SummaryStore
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6])
    _seq: int = 0
    _previous: RegionStage | None = None  # the last batch's region tasks (history order: pipeline/chain.py)
    outputs: list[Output] = field(default_factory=list)  # the annotated output stream's destinations
    metrics: Metrics | None = None  # Prometheus metrics (--metrics-port)
    in_flight: deque = field(default_factory=deque)  # the batches submitted and not yet committed
    _report_written: float = field(default_factory=time.monotonic)
    notes: dict[str, str] = field(default_factory=dict)  # things to report once (a filter's first error)
    _compaction: Compaction | None = None  # a periodic history compaction running on the workers

    @property
    def models(self) -> RunModels:
        return self._models

    @property
    def region_config(self) -> RegionConfig:
        s = self.settings
        return RegionConfig(
            lake=lake_spec(s),
            with_features=s.features,
            xmatch=s.xmatch_specs,
            catalog_root=s.catalogs,
            lc_models=self.models.lc,
            feature_version=self.models.feature_version,
            history=HistorySpec(s.history_order, s.history_cache_mb) if s.history else None,
            annotate=bool(self.outputs),
            watchlists=s.watchlist_names,
            watchlist_root=s.watchlists_dir,
            filters=FilterSpec(s.filter_paths, s.filter_expressions)
            if (s.filter_paths or s.filter_expressions)
            else None,
        )

    @property
    def decode_config(self) -> DecodeConfig:
        return DecodeConfig(
            lake=lake_spec(self.settings), stamp_models=self.models.stamps, surveys=self.settings.surveys
        )

    def __post_init__(self) -> None:
        self._models = RunModels.of(self.settings)

    def write_taxonomy(self) -> list[str]:
        """The ``taxonomy`` rows of the classifiers this run uses (what their probability rows mean)."""
        used = []
        for lc in self.models.lc:
            self.store.upsert("taxonomy", taxonomy_rows(load_model(lc.name, lc.version, root=lc.root)))
            used.append(f"{lc.name} {lc.version}")
        for stamp in self.models.stamps:
            rows = flat_taxonomy_rows(stamp.name, stamp.version, STAMP_CLASSES, STAMP_TAXONOMY_VERSION)
            self.store.upsert("taxonomy", rows)
            used.append(f"{stamp.name} {stamp.version}")
        return used

    def n_threads(self) -> int:
        info = self.client.scheduler_info()
        return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    # ------------------------------------------------------------------------------------------
    def process_batch(self, messages: list[RawMessage]) -> BatchReport:
        """Everything but the offset commit. Raises if any sink failed (then nothing may be committed)."""
        return self.finish(self.submit(messages))

    def submit(self, messages: list[RawMessage], attempt: int = 0) -> InFlight:
        """Start a batch: retire superseded files, record the batch as started, submit the batch's graph.

        Returns at once, so the driver can start the next batches while this one runs; earlier batches have
        the higher priority, so they still complete (and commit) in order."""
        t_start = time.perf_counter()
        batch_id = make_batch_id(messages)
        ranges = batch_ranges(messages)
        rep = BatchReport(batch_id=batch_id, messages=len(messages))
        for source, parts in ranges.items():
            superseded = self.with_postgres(
                lambda s=source, p=parts: manifest.supersede(self.store, self.lake, s, p, batch_id),
                "manifest",
            )
            rep.superseded_files += len(superseded)
        digests = archive_digests(messages)
        self.with_postgres(
            lambda: manifest.begin_batch(self.store, batch_id, ranges, digests=digests), "manifest"
        )
        rep.seconds["manifest"] = time.perf_counter() - t_start

        client = self.client
        self._seq += 1
        prio = -self._seq  # earlier batches first, so they finish (and commit) in order
        # The chunks travel inside their decode tasks (not scattered): if a worker dies, the scheduler still holds
        # every task's inputs and recomputes what was lost on the survivors (scattered data would die with it).
        chunks = _chunks(messages, max(1, int(self.n_threads() * self.settings.chunks_per_thread)))

        # The whole batch is one graph: decode -> regions (a task, from the decoded positions) -> split ->
        # one task per region. The driver does not sit between the stages, so workers always have work.
        def submit(fn, *args):
            return client.submit(fn, *args, pure=False, priority=prio)

        decode_config, region_config = self.decode_config, self.region_config
        dec_futs = [submit(decode_chunk, chunk, batch_id, i, decode_config) for i, chunk in enumerate(chunks)]
        small_futs = [submit(decode_summary, f) for f in dec_futs]
        n_regions = max(1, int(self.n_threads() * self.settings.regions_per_thread))
        region_map = submit(regions_of_batch, small_futs, n_regions, self.settings.healpix_order)
        split_futs = [submit(split_by_region, f, region_map, n_regions) for f in dec_futs]
        pieces = [[submit(operator.getitem, sf, r) for sf in split_futs] for r in range(n_regions)]
        regions = RegionStage(
            lambda: [submit(process_region, pieces[r], batch_id, r, region_config) for r in range(n_regions)]
        )
        if region_config.history is not None:
            # the region tasks read the history the previous batch's write: they start once those have finished
            previous, self._previous = self._previous, regions
            if previous is not None:
                previous.then(regions)
            else:
                regions.start()
        else:
            regions.start()
        rep.regions = n_regions
        return InFlight(messages, batch_id, ranges, rep, small_futs, regions, t_start, attempt=attempt)

    def observe(self, rep: BatchReport, latencies: np.ndarray, source: Source, report: RunReport) -> None:
        """After a commit: the metrics, and the rolling run report every ``report_every_s``."""
        if self.metrics is not None:
            self.metrics.observe_batch(rep, latencies)
            self.metrics.in_flight.set(len(self.in_flight))
            lag = getattr(source, "lag", None)
            if lag is not None:
                try:
                    self.metrics.consumer_lag.set(lag())
                except Exception as err:  # noqa: BLE001 - a metric must never stop the night
                    log.debug("consumer lag unavailable: %s", err)
            self.metrics.workers.set(len(self.client.scheduler_info().get("workers", {})))
        every = self.settings.report_every_s
        if every > 0 and time.monotonic() - self._report_written >= every:
            self._report_written = time.monotonic()
            report.write(self.settings.reports_dir)  # status "running": what an operator reads mid-night

    def finish(self, job: InFlight) -> BatchReport:
        """Wait for a batch's tasks, then write PostgreSQL (every sink of the registry) and the manifest."""
        client, rep, batch_id = self.client, job.report, job.batch_id
        try:
            t = time.perf_counter()
            decoded: list[DecodeSummary] = client.gather(job.small_futs)
            rep.seconds["decode"] = time.perf_counter() - t
            t = time.perf_counter()
            regions: list[RegionResult] = client.gather(job.regions.wait())
            rep.seconds["science+lake"] = time.perf_counter() - t
        except Exception as err:  # noqa: BLE001 - a dead worker (KilledWorker), a cancelled or a failed task
            raise BatchFailed(job, err) from err
        job.regions.futures = []

        paths: list[str] = []
        for r in regions:
            job.stream.extend(r.stream)
            for key, note in r.notes.items():
                self.notes.setdefault(key, note)
        for part in [*decoded, *regions]:
            paths.extend(part.paths)
            for k, v in part.counts.items():
                rep.counts[k] = rep.counts.get(k, 0) + v
            for k, v in part.seconds.items():
                rep.worker_seconds[k] = rep.worker_seconds.get(k, 0.0) + v

        t = time.perf_counter()
        dead = [d for s in decoded for d in s.dead]
        failed = [r.failed for r in regions if not r.failed.empty]
        if failed:
            dead = dead + self._science_dead_letters(pd.concat(failed, ignore_index=True))
        paths.extend(self._write_dead_letters(dead, batch_id))
        rep.dead_letters = len(dead)
        for sink in SINKS:
            if sink.postgres is None:
                continue
            parts = decoded if sink.stage == "decode" else regions
            frames = [p.rows[sink.name] for p in parts if sink.name in p.rows]
            if frames:
                rows = pd.concat(frames, ignore_index=True)
                if sink.postgres == "alert":
                    rows = _with_produced_at(rows, job.messages)
                self.with_postgres(lambda s=sink, r=rows: self.store.upsert(s.postgres, r), sink.postgres)
                if sink.name == "objects":
                    rep.object_ids = set(rows["oid"])
        rep.seconds["postgres"] = time.perf_counter() - t

        t = time.perf_counter()
        self.with_postgres(
            lambda: manifest.record_batch(self.store, batch_id, job.ranges, sorted(set(paths))), "manifest"
        )
        rep.seconds["manifest"] += time.perf_counter() - t
        rep.alerts = rep.counts.get("alerts", 0)
        rep.wall = time.perf_counter() - job.t_start
        return rep

    def with_postgres(self, call, what: str):
        """``call()``, retried while PostgreSQL is unreachable (``retry_postgres``, ``settings.pg_retry_s``)."""
        return retry_postgres(call, f"writing {what}", self.settings.pg_retry_s)

    def _write_dead_letters(self, dead: list[DeadLetter], batch_id: str) -> list[str]:
        if not dead:
            return []
        dl = dead_letters_frame(dead, batch_id)
        paths = self.lake.write_table("dead_letters", dl, batch_id)
        self.with_postgres(
            lambda: self.store.upsert("dead_letter", dl.drop(columns=["payload"])), "dead letters"
        )
        return paths

    def give_up(self, job: InFlight, cause: BaseException) -> BatchReport:
        """A poison batch (its tasks failed on every attempt): its messages become dead letters, so the night
        goes on and nothing is lost; the batch is recorded and may be committed like any other."""
        reason = (
            f"poison batch: processing failed on {job.attempt + 1} attempts (last: {type(cause).__name__}: "
            f"{str(cause)[:300]}); the packet may kill or break a worker: keep this dead letter and report it"
        )
        dead = [
            DeadLetter(m.source, m.partition, m.offset, reason, "PoisonBatch", m.loaded().payload, m.key)
            for m in job.messages
        ]
        for fut in job.small_futs:
            fut.cancel()
        job.regions.cancel()
        rep = job.report
        paths = self._write_dead_letters(dead, job.batch_id)
        rep.dead_letters = len(dead)
        rep.counts["poison_batches"] = 1
        self.with_postgres(
            lambda: manifest.record_batch(self.store, job.batch_id, job.ranges, sorted(set(paths))),
            "manifest",
        )
        rep.wall = time.perf_counter() - job.t_start
        return rep

    def reset_chain(self) -> None:
        """Forget the history order (after cancelling the batches in flight): the next batch starts at once."""
        self._previous = None

    def _science_dead_letters(self, failed: pd.DataFrame) -> list[DeadLetter]:
        """Dead letters for alerts whose science failed, with their raw packets from the archive."""
        archive = RawArchive(self.lake)
        payloads: dict[int, bytes] = {}
        where = failed["raw_path"] if "raw_path" in failed.columns else pd.Series("", index=failed.index)
        for path, group in failed.groupby(where.fillna(""), sort=False):
            payloads.update(archive.fetch_many(group["candid"].tolist(), path=path or None))
        return [
            DeadLetter(
                source=str(row.source),
                partition=int(row.partition),
                offset=int(row.offset),
                reason=str(row.reason),
                error=str(row.error),
                payload=payloads.get(int(row.candid), b""),
                key=str(row.candid),
            )
            for row in failed.itertuples(index=False)
        ]

    def start_compaction(self, priority: int = 0, tiered: bool = False) -> Compaction | None:
        """Submit the folding of the history deltas into their pixel folders (one Dask task per share of the
        pixels) and return at once; None when there is nothing to fold, no history, or another driver sharing
        the lake holds the compaction lock (its compaction, or the next, folds our deltas too). ``tiered``
        (the periodic ones) rewrites only a pixel's newest, smallest files (storage/history.py)."""
        history = self.region_config.history
        if history is None:
            return None
        lock = ExitStack()
        if not lock.enter_context(self.store.exclusive("history-compaction")):
            lock.close()
            log.info("another driver is compacting the history store: skipped here")
            return None
        store = HistoryStore(self.lake, order=history.order)
        deltas = {t: store.delta_files(t) for t in HISTORY_KEYS}
        if not any(deltas.values()):
            lock.close()
            return None
        shares = self.n_threads()
        spec = lake_spec(self.settings)
        futs = [
            self.client.submit(
                compact_share, spec, history, k, shares, deltas, tiered, pure=False, priority=priority
            )
            for k in range(shares)
        ]
        return Compaction(futs, deltas, store, lock)

    def compact_history(self) -> dict[str, int]:
        """Fold the history deltas into their pixel folders and wait for it (the end of a run)."""
        job = self.start_compaction()
        return job.finish(self.client) if job is not None else {}

    def compact_in_background(self, report: RunReport) -> None:
        """Between batches: finish a periodic compaction whose tasks are done, and start one every
        ``compact_every`` batches. The driver never waits for it: batches go on while the workers fold."""
        job = self._compaction
        if job is not None and job.done():
            self._compaction = None
            try:
                done = job.finish(self.client)
            except Exception as err:  # the deltas stay (nothing was dropped): the next compaction folds them
                log.warning("history compaction failed, its deltas are kept: %s", err)
                return
            report.counts["history_compactions"] = report.counts.get("history_compactions", 0) + 1
            # stored rows read and written again: what a compaction costs, and what tiers keep from growing
            report.counts["history_rows_rewritten"] = report.counts.get(
                "history_rows_rewritten", 0
            ) + done.get("rows_rewritten", 0)
            report.worker_steps["compaction"] = (
                report.worker_steps.get("compaction", 0.0) + done.pop("cpu_ms", 0) / 1e3
            )
            log.info("history compaction during the run: %s in %.1f s", done, job.seconds())
        every = self.settings.compact_every
        if self._compaction is None and every and report.n_batches % every == 0:
            # the priority of the latest batch: after the batches before it, before the ones after it
            self._compaction = self.start_compaction(priority=-self._seq, tiered=True)

    def finish_compaction(self) -> None:
        """Wait for a periodic compaction still running (the end of a run, before the final one)."""
        job, self._compaction = self._compaction, None
        if job is not None:
            try:
                job.finish(self.client)
            except Exception as err:
                log.warning("history compaction failed, its deltas are kept: %s", err)

    def publish(self, job: InFlight) -> None:
        """Hand the batch's annotated alerts to every output; returns once they are durable there. Runs after the
        lake and PostgreSQL have the batch and before its offsets are committed: a crash can only repeat a
        batch's messages (same keys), never lose them."""
        if not self.outputs or not job.stream:
            return
        t = time.perf_counter()
        for output in self.outputs:
            counts = output.publish(job.batch_id, job.stream)
            for stream, n in counts.items():
                key = f"published_{stream}"
                job.report.counts[key] = job.report.counts.get(key, 0) + n
        job.report.seconds["output"] = time.perf_counter() - t
        job.stream = []

    def commit(self, source: Source, messages: list[RawMessage], batch_id: str) -> None:
        source.commit(messages)
        self.with_postgres(lambda: manifest.mark_committed(self.store, batch_id), "manifest")


@dataclass
class Services:
    """The embedded defaults (or configured servers) a run needs, closed in reverse order."""

    settings: Settings
    stack: ExitStack = field(default_factory=ExitStack)
    client: Client | None = None
    store: SummaryStore | None = None
    lake: Lake | None = None
    dsn: str = ""
    outputs: list[Output] = field(default_factory=list)
    #: called with the summary store once PostgreSQL is ready, before the cluster starts: a check that can
    #: refuse the run (``--resume``) refuses it before any worker starts
    before_cluster: Callable[[SummaryStore], None] | None = None

    def __enter__(self) -> Services:
        try:
            return self._start()
        except BaseException:
            # a failure (or a second Ctrl-C) part-way through the start: stop what did start (the embedded
            # PostgreSQL, the cluster), as ``__exit__`` would have, instead of leaving it running
            self.stack.close()
            raise

    def _start(self) -> Services:
        s = self.settings
        models = RunModels.of(s)  # a model that cannot be found stops the run here, before anything starts
        worker_env: dict[str, str] = {}
        if not s.scheduler and s.cluster == "local":
            # held while the cluster runs: a nanny restarting a dead worker (or --adapt adding one) reads it too
            self.stack.enter_context(
                dask.config.set(
                    {
                        "distributed.scheduler.allowed-failures": s.task_allowed_failures,
                        **worker_start_config(s.worker_start),
                    }
                )
            )
            worker_env = prepare_worker_start(s.worker_start)  # a fork server imports while PostgreSQL starts
        self.dsn = s.pg_dsn
        if not self.dsn:
            pg = self.stack.enter_context(EmbeddedPostgres(s.pg_data_dir))
            self.dsn = pg.dsn
        self.store = SummaryStore(self.dsn)
        # a PostgreSQL restarting as the night starts is waited for as during it; past --pg-retry-s the run stops
        # (PostgresUnavailable) before its cluster starts
        retry_postgres(self.store.ensure_schema, "creating the schema", s.pg_retry_s)
        if self.before_cluster is not None:
            self.before_cluster(self.store)
        self.lake = Lake(s.lake, s.storage_options or None)
        # a lake compaction that died between its manifest update and its file moves is finished first, so the
        # manifest and the files agree before any batch reads or retires them
        finished = compaction.recover(self.store, self.lake)
        if finished:
            log.info("finished %d lake compaction(s) an earlier process left part-way", finished)
        self.outputs = open_outputs(s.outputs, "")
        for output in self.outputs:
            self.stack.callback(output.close)
        bounds = s.adapt_bounds
        if s.scheduler:
            self.client = self.stack.enter_context(Client(s.scheduler))
        elif s.cluster == "kubernetes":
            cluster = self.stack.enter_context(
                start_kube_cluster(
                    name=f"broker-{uuid.uuid4().hex[:6]}",
                    image=s.image,
                    namespace=s.namespace or None,
                    n_workers=s.n_workers,
                    adapt=bounds,
                )
            )
            self.client = self.stack.enter_context(Client(cluster))
        else:
            cluster = LocalCluster(
                n_workers=bounds[0] if bounds else s.n_workers,
                threads_per_worker=s.threads_per_worker,
                dashboard_address=s.dashboard_address,
                processes=True,
                env=worker_env or None,
            )
            self.stack.callback(close_local_cluster, cluster)
            if bounds:
                # the scheduler's adaptive target (its task backlog), as the Dask operator's DaskAutoscaler
                cluster.adapt(minimum=bounds[0], maximum=bounds[1], interval="1s", wait_count=5)
                log.info("adaptive cluster: %d to %d workers", *bounds)
            self.client = self.stack.enter_context(Client(cluster))
        # every worker (now, or joining later) warms the science up and loads the models before any batch
        plugin = BrokerWorkerPlugin(
            lc_models=models.lc if s.features else (),
            stamp_models=models.stamps,
            log_level=s.log_level,
            log_format=s.log_format,
            ignore_sigint=not s.scheduler and s.cluster == "local",
        )
        self.client.register_plugin(plugin)
        return self

    def __exit__(self, *exc) -> None:
        self.stack.close()


#: How long a LocalCluster may take to close. distributed waits without limit by default, and a nanny restarting a
#: worker that died just as the cluster closes can keep it waiting for good (seen once, 7 Dec, in the
#: poison-batch fault test, whose workers die on purpose: the night was done, its close hung until the test's
#: 600 s timeout).
CLUSTER_CLOSE_S = 60.0


def close_local_cluster(cluster, timeout: float = CLUSTER_CLOSE_S) -> None:
    """Close a LocalCluster, giving up after ``timeout`` seconds with a warning rather than hanging the driver: the
    run's results are committed by then, PostgreSQL still stops after it and the report is still written, and
    the worker processes (daemonic children) end with the driver's process."""
    try:
        cluster.close(timeout=timeout)
    except Exception as err:  # noqa: BLE001 - a TimeoutError from distributed's sync(), or a comm error
        log.warning(
            "the local Dask cluster did not close within %.0f s (%s); its worker processes end with this one",
            timeout,
            type(err).__name__,
        )


def _check_kafka(settings: Settings, sources: bool = True) -> None:
    """Every Kafka cluster the run reads from (``sources``) or writes its output stream to answers, else
    :class:`KafkaUnavailable`, before anything starts. A source topic the cluster does not have yet is only a
    warning: a continuous run waits for it, a night stops at its idle stop (output topics are created)."""
    for src in settings.sources if sources else ():
        if src.startswith("kafka://"):
            url = parse_kafka_url(src)
            missing = check_source(url.bootstrap, url.topics, settings.kafka_connect_s, settings.kafka_config)
            for topic in missing:
                log.warning(
                    "Kafka at %s has no topic %r (yet): nothing to read until it is created",
                    url.bootstrap,
                    topic,
                )
    for out in settings.outputs:
        if out.startswith("kafka://"):
            try:
                check_source(
                    parse_kafka_url(out).bootstrap, (), settings.kafka_connect_s, settings.kafka_config
                )
            except KafkaUnavailable as err:
                raise KafkaUnavailable(f"output stream {out}: {err}") from None


def run(settings: Settings, source: Source | None = None, stop: StopRequest | None = None) -> RunReport:
    """Process a source to its end (an archive, or a topic until idle) and return the run's report.
    ``source`` replaces the one the settings name (e.g. the integrity re-scan's batches to repair).

    SIGTERM or SIGINT (``stop``, made here when not given) ends the run early and cleanly: no new batch is read,
    the batches in flight are finished and committed, the services stop, and the report says ``stopped``
    (pipeline/shutdown.py); a second signal stops at once (``KeyboardInterrupt``, status ``interrupted``)."""
    with stop if stop is not None else StopRequest() as stop:
        return _run(settings, source, stop)


def _run(settings: Settings, source: Source | None, stop: StopRequest) -> RunReport:
    t0 = time.perf_counter()
    _check_kafka(settings, sources=source is None)
    Lake(settings.lake, settings.storage_options or None).check()  # LakeUnavailable before anything starts
    resumed: dict[str, Any] = {}

    def resume_first(store: SummaryStore) -> None:
        """``--resume``: the archives' committed offsets checked and skipped before the cluster starts, so an
        archive that cannot be resumed stops the run before any worker does."""
        opened = source if source is not None else open_source(settings)
        try:
            resumed["skipped"] = _resume(opened, store)
        except BaseException:
            opened.close()
            raise
        resumed["source"] = opened

    with Services(settings, before_cluster=resume_first if settings.resume else None) as svc:
        assert svc.client is not None and svc.store is not None and svc.lake is not None
        log.info("Dask dashboard: %s", svc.client.dashboard_link)
        broker = Broker(settings, svc.client, svc.lake, svc.store, outputs=svc.outputs)
        for output in svc.outputs:
            log.info("annotated output stream: %s", output.url)
        used = broker.write_taxonomy()
        log.info("classifiers: %s", ", ".join(used) if used else "none (switched off)")
        source = resumed.get("source") or (source if source is not None else open_source(settings))
        report = RunReport(run_id=broker.run_id, source=source.name, lake=settings.lake, night=settings.night)
        if settings.resume:
            report.resumed_skipped = resumed["skipped"]
        report.startup_seconds = time.perf_counter() - t0
        svc.store.start_run(broker.run_id, source.name, settings.public_dict())
        if settings.metrics_port:
            broker.metrics = Metrics()
            broker.metrics.serve(settings.metrics_port)
            log.info("Prometheus metrics: http://0.0.0.0:%d/metrics", settings.metrics_port)
        status = "failed"
        try:
            # a tarball's total costs a pass over it: only a progress display needs one
            total = source.total() if settings.progress else None
            with Progress(total=total, enabled=settings.progress) as bar:
                pending: deque[InFlight] = deque()
                broker.in_flight = pending

                def drain() -> None:
                    """Complete and commit every batch in flight."""
                    while pending:
                        _complete_or_retry(broker, source, pending, report, bar)

                def drain_for_rebalance() -> None:
                    """A Kafka rebalance: our partitions move, so what we read from them is finished first."""
                    if pending:
                        log.info(
                            "rebalance: finishing %d batches in flight before the partitions move",
                            len(pending),
                        )
                    drain()

                if isinstance(source, KafkaBatches):
                    # several drivers in one consumer group (docs/operations.md)
                    source.on_revoke(drain_for_rebalance)
                    source.yield_idle = True  # empty batches while the topic is quiet
                for messages in source.batches():
                    if stop.requested:  # these messages are not committed: the next run reads them
                        break
                    if messages:
                        if report.processing_started is None:
                            report.processing_started = time.perf_counter()
                            report.driver_cpu_started = _process_cpu()
                        # decode the next batches while the oldest one finishes; commits stay in order
                        pending.append(broker.submit(messages))
                        if len(pending) > settings.pipeline_depth:
                            _complete_or_retry(broker, source, pending, report, bar)
                    # a quiet stream: commit what has finished rather than hold it until the next burst
                    while pending and not messages and _finished(pending[0]):
                        _complete_or_retry(broker, source, pending, report, bar)
                if stop.requested and pending:
                    log.info("stopping: finishing %d batches in flight", len(pending))
                drain()
            broker.finish_compaction()
            if stop.requested:
                # the end-of-run compaction and publishing can take minutes, more than a pod's grace period: the
                # next run (or `broker history compact`, `broker lake publish`) does them
                name = signal.Signals(stop.signum).name if stop.signum else "a stop request"
                report.notes["stopped"] = (
                    f"{name}: stopped before the source's end; every batch read was committed or left for "
                    "the next run (a Kafka source resumes from its committed offsets; an archive with --resume, "
                    "else from its start)"
                )
                status = "stopped"
            else:
                _end_of_night(broker, svc.dsn, settings, report)
                status = "ok"
        except KeyboardInterrupt:  # a second stop signal (or Ctrl-C outside a StopRequest): stopped at once
            status = "interrupted"
            raise
        finally:
            source.close()
            flush_client_logs()  # the count of a Kafka outage's last repeated lines
            report.notes.update(broker.notes)
            report.finish(status)
            report.write(settings.reports_dir)
            try:
                summary = report.summary()
                counted = ("messages_read", "alerts_written", "dead_letters", "objects", "batches")
                svc.store.finish_run(broker.run_id, status, summary, {k: summary[k] for k in counted})
            except psycopg.Error as err:  # PostgreSQL down: the report on disk still tells what happened
                log.error("could not record the run in PostgreSQL: %s", redact(str(err)).splitlines()[0])
    return report


def _resume(source: Source, store: SummaryStore) -> int:
    """``--resume``: each archive skips what earlier runs of it committed; returns the packets skipped. Kafka
    needs nothing: its consumer group resumes from the committed offsets anyway."""
    skipped = 0
    for archive in archives(source):
        n = archive.resume(
            manifest.committed_ranges(store, archive.name).get(0, []),
            manifest.committed_digests(store, archive.name),
        )
        log.info("resuming %s: %d packets committed by an earlier run are skipped", archive.name, n)
        skipped += n
    return skipped


def dask_mapper(client: Client) -> compaction.Mapper:
    """A lake compaction's merges as tasks on the Dask workers (each reads and writes its files itself; only a
    small summary comes back), so a night's compaction scales with the cluster like the night did."""

    def run(fn: Callable, items: list) -> Any:
        futures = client.map(fn, items, pure=False)
        for fut in as_completed(futures):
            yield fut.result()
            fut.release()

    return run


def _end_of_night(broker: Broker, dsn: str, settings: Settings, report: RunReport) -> None:
    """What a run does once its source is done: fold the history store, publish the analysis-ready tables."""
    if settings.compact_history:
        t = time.perf_counter()
        done = broker.compact_history()
        if done:
            report.history_compaction = {**done, "seconds": round(time.perf_counter() - t, 3)}
    if settings.compact_lake and (report.alerts or report.resumed_skipped):
        done = compaction.compact(broker.store, broker.lake, mapper=dask_mapper(broker.client))
        report.lake_compaction = done.as_dict()
        log.info("%s", done.render())
    # a resumed run with nothing left still publishes: the stopped run it resumes did not
    if settings.publish_lake and (report.alerts or report.resumed_skipped):
        # the analysis-ready tables (current objects, latest probabilities, deduplicated light curves)
        published = publish(
            dsn, settings.lake, settings.storage_options, history_order=settings.history_order
        )
        log.info("%s", published.render().splitlines()[0])  # its own time in it


def _complete_or_retry(broker: Broker, source: Source, pending: deque, report: RunReport, bar) -> None:
    """Complete the oldest batch in flight. If its tasks failed, the batches behind it (which depend on it for
    the history order) are cancelled, it is submitted again and they after it; a batch that fails
    ``batch_retries + 1`` times becomes dead letters (a poison batch) and the night goes on."""
    job = pending.popleft()
    while True:
        try:
            _complete(broker, source, job, report, bar)
            return
        except BatchFailed as failure:
            later = list(pending)
            pending.clear()
            for other in later:
                for fut in other.small_futs:
                    fut.cancel()
                other.regions.cancel()
            broker.reset_chain()
            if _out_of_space(failure.cause):
                raise failure.cause from failure  # retrying cannot help: stop, commit nothing, say why
            if job.attempt < broker.settings.batch_retries:
                log.warning(
                    "batch %s failed (attempt %d: %s); submitting it again",
                    job.batch_id, job.attempt + 1, failure.cause,
                )  # fmt: skip
                job = broker.submit(job.messages, attempt=job.attempt + 1)
                pending.extend(broker.submit(o.messages, attempt=o.attempt) for o in later)
                continue
            if not isinstance(failure.cause, KilledWorker):
                # not a worker dying on the batch (a poison packet) but an error every try met (storage full or
                # unreachable, a bug): stop the night without committing; a re-run resumes from here
                raise failure.cause from failure
            log.error(
                "batch %s failed %d times: its messages become dead letters", job.batch_id, job.attempt + 1
            )
            rep = broker.give_up(job, failure.cause)
            broker.commit(source, job.messages, rep.batch_id)
            report.add(rep)
            bar.update(len(job.messages), report)
            pending.extend(broker.submit(o.messages, attempt=o.attempt) for o in later)
            return


def _with_produced_at(alerts: pd.DataFrame, messages: list[RawMessage]) -> pd.DataFrame:
    """``alerts`` with ``produced_at`` (UTC) from their messages' Kafka timestamps, matched by (partition,
    offset); unchanged when no message has one (an archive)."""
    stamps = {(m.partition, m.offset): m.timestamp for m in messages if m.timestamp is not None}
    if not stamps or "offset" not in alerts.columns or "partition" not in alerts.columns:
        return alerts
    keys = zip(alerts["partition"].to_numpy(), alerts["offset"].to_numpy(), strict=True)
    seconds = np.array([stamps.get((int(p), int(o)), np.nan) for p, o in keys], dtype=np.float64)
    return alerts.assign(produced_at=pd.to_datetime(seconds, unit="s", utc=True))


def alert_latencies(messages: list[RawMessage], now: float | None = None) -> np.ndarray:
    """Seconds from each message's production (Kafka timestamp) to ``now`` (default: the wall clock)."""
    now = time.time() if now is None else now
    return np.array([now - m.timestamp for m in messages if m.timestamp is not None], dtype=np.float64)


def _process_cpu() -> float:
    """CPU seconds of this process so far: the driver and, with a LocalCluster, the scheduler (it runs in the
    driver's process). Their sum per alert is the serial part that bounds one driver (docs/operations.md)."""
    t = os.times()
    return t.user + t.system


def _out_of_space(err: BaseException) -> bool:
    """A full disk or quota, or a read-only filesystem: nothing a retry fixes."""
    codes = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    return (isinstance(err, OSError) and err.errno in codes) or "No space left on device" in str(err)


def _complete(broker: Broker, source: Source, job: InFlight, report: RunReport, bar) -> None:
    """Finish a batch, publish its annotated alerts, then (and only then) commit its offsets."""
    rep = broker.finish(job)
    broker.publish(job)
    t = time.perf_counter()
    broker.commit(source, job.messages, rep.batch_id)
    rep.seconds["commit"] = time.perf_counter() - t
    rep.wall += rep.seconds["commit"]
    latencies = alert_latencies(job.messages)
    report.add(rep, latencies)
    report.processing_ended = time.perf_counter()
    report.driver_cpu_ended = _process_cpu()
    bar.update(len(job.messages), report)
    broker.observe(rep, latencies, source, report)
    if broker.settings.compact_history:
        # every history read scans the deltas: fold them into their pixels before they grow with the night
        broker.compact_in_background(report)
    log.debug(
        "batch %s: %d alerts, %d dead letters, %.2f s",
        rep.batch_id, rep.alerts, rep.dead_letters, rep.wall,
        extra={"batch_id": rep.batch_id, "alerts": rep.alerts, "dead_letters": rep.dead_letters},
    )  # fmt: skip


def _finished(job: InFlight) -> bool:
    """Every task of the batch is done (finished or failed): completing it will not wait."""
    return all(f.done() for f in job.small_futs) and job.regions.done()


def lake_spec(settings: Settings) -> LakeSpec:
    return LakeSpec(settings.lake, tuple(sorted(settings.storage_options.items())))


def models_root(settings: Settings) -> Path:
    """The model registry: ``--models`` when set, else the models installed with the package."""
    return Path(settings.models).resolve() if settings.models else shipped_models()


#: The light-curve classifiers ``--lc-model auto`` runs: one per feature set (ZTF's magnitude features, the
#: difference-flux features of LSST).
DEFAULT_LC_MODELS = ("lc_hierarchical", "lc_hierarchical_lsst")


@dataclass(frozen=True)
class RunModels:
    """The classifiers of a run, resolved once (name and version fixed) from the settings."""

    lc: tuple[ModelSpec, ...]
    #: one stamp classifier per survey (``--stamp-model``)
    stamps: tuple[ModelSpec, ...]
    #: The magnitude feature definition the run computes: the one its ZTF light-curve classifier reads.
    feature_version: str = FEATURE_VERSION

    @classmethod
    def of(cls, settings: Settings) -> RunModels:
        lc = lc_models(settings)
        return cls(
            lc=lc,
            stamps=stamp_models(settings),
            feature_version=magnitude_feature_version(lc),
        )


def named_models(
    spec: str, defaults: tuple[str, ...], root: str | Path, flag: str, *, auto_present_only: bool = False
) -> tuple[ModelSpec, ...]:
    """The models a setting names: comma-separated ``name[:version]`` (a bare version-less name: the latest),
    ``auto`` (each of ``defaults``; with ``auto_present_only`` those the registry has, the first one's error when
    it has none) or ``none``."""
    spec = (spec or "").strip()
    if spec.lower() == "auto":
        names = list(defaults)
        if auto_present_only:
            names = [n for n in defaults if versions(n, root=str(Path(root).resolve()))] or names[:1]
        found = [resolve_model("auto", n, root, flag) for n in names]
    else:
        found = [resolve_model(s, defaults[0], root, flag) for s in spec.split(",")]
    return tuple(m for m in found if m is not None)


def lc_models(settings: Settings) -> tuple[ModelSpec, ...]:
    """The light-curve models ``--lc-model`` names (comma-separated ``name[:version]``, ``auto``, ``none``)."""
    return named_models(settings.lc_model, DEFAULT_LC_MODELS, models_root(settings), "--lc-model")


#: The stamp classifiers ``--stamp-model auto`` runs, those the registry has: one per survey's cutouts.
DEFAULT_STAMP_MODELS = ("stamp_classifier", "stamp_classifier_lsst")


def stamp_models(settings: Settings) -> tuple[ModelSpec, ...]:
    """The stamp models ``--stamp-model`` names (comma-separated ``name[:version]``, ``auto``, ``none``): at most
    one per survey, since each classifies its survey's first alerts. ``auto``: each of
    :data:`DEFAULT_STAMP_MODELS` the registry has (an error naming what to do when it has none)."""
    found = named_models(
        settings.stamp_model,
        DEFAULT_STAMP_MODELS,
        models_root(settings),
        "--stamp-model",
        auto_present_only=True,
    )
    surveys: dict[str, str] = {}
    for m in found:
        survey = read_metadata(m.name, m.version, root=m.root).get("survey", "ztf")
        if survey in surveys:
            raise ValueError(
                f"--stamp-model {settings.stamp_model}: {surveys[survey]} and {m.name} {m.version} both classify {survey} "
                "alerts; name one stamp model per survey"
            )
        surveys[survey] = f"{m.name} {m.version}"
    return found


def magnitude_feature_version(models: tuple[ModelSpec, ...]) -> str:
    """The magnitude feature version the light-curve models read (their metadata name it; LSST's flux-feature
    models are left out): the current FEATURE_VERSION when none reads magnitude features. Two models that read
    different versions cannot share one features step: refused with a clear message."""
    wanted = {
        v: f"{m.name} {m.version}"
        for m in models
        if (v := read_metadata(m.name, m.version, root=m.root).get("feature_version", FEATURE_VERSION))
        != FLUX_FEATURE_VERSION
    }
    if len(wanted) > 1:
        raise ValueError(
            "the light-curve models read different feature versions ("
            + ", ".join(f"{who}: {v}" for v, who in wanted.items())
            + "); run them in separate runs"
        )
    return next(iter(wanted), FEATURE_VERSION)


def resolve_model(spec: str, default_name: str, root: str | Path, flag: str = "model") -> ModelSpec | None:
    """The registry model a setting names: ``name[:version]``, ``auto`` (``default_name``'s latest version) or
    ``none``/empty. The version is fixed here, once, so every worker runs the same model and the taxonomy rows
    name it. A model that is not there is an error that says what to do, never a silent "no classifier"."""
    spec = (spec or "").strip()
    if spec.lower() in ("", "none", "off"):
        return None
    root = str(Path(root).resolve())
    auto = spec.lower() == "auto"
    name, _, version = (default_name if auto else spec).partition(":")
    known = versions(name, root=root)
    if not known:
        raise ValueError(
            f"{flag} {spec}: no model {name!r} in the registry at {root}. Install the package with its models "
            f"(they ship in alert_broker/models), point --models at a registry that has it (`make models` "
            f"trains them), or pass {flag} none to run without it"
        )
    if version and version not in known:
        raise ValueError(
            f"{flag} {spec}: model {name!r} has no version {version!r} at {root}; known: {known}"
        )
    return ModelSpec(root, name, version or known[-1])
