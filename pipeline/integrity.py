"""The integrity re-scan: re-read the input, compare its alerts with the lake and PostgreSQL, repair the gaps.

``broker integrity --source SOURCE [--night N] [--repair]`` (docs/integrity.md). ALeRCE re-scans its input
every night and reprocesses what is missing; this is that check for this broker.

``scan(settings)`` re-reads every source of the settings from its beginning (a Kafka topic from the earliest
retained offset of each partition to its end, with a throwaway consumer that never commits; a night archive
file by file), decodes each message exactly as the pipeline does (``surveys.decode_batch``) and compares:

- each decoded alert (key (``survey``, ``candid``)) with the lake's ``alerts`` table (every live file, read
  raw, so an alert held by two files is seen twice) and PostgreSQL's ``alert`` table;
- each message that does not decode with the dead letters (PostgreSQL ``dead_letter`` and the lake's
  ``dead_letters``, by (source, partition, offset)); an alert whose science failed is accounted for by its
  dead letter (key = its candid) instead of an alert row.

``repair(settings, report)`` reprocesses the messages of the missing alerts through ``driver.run`` (the same
sinks, the same idempotence) and re-scans. It never re-runs an arbitrary subset of offsets, because of how the
batch manifest retires files (``storage.manifest.superseded_files``): a batch supersedes every recorded batch
of the same source whose offsets overlap its own on a shared partition, and deletes their files. So the repair:

1. re-runs each recorded batch that holds a missing alert *whole*, with exactly its original messages: the
   same offsets give the same batch id, hence the same file names, rewritten; PostgreSQL upserts and the
   history store (which only stores rows it lacks) make the rest harmless;
2. also re-runs, whole and in their original grouping, any other recorded batch that step 1 supersedes (their
   files are deleted by the manifest before the re-run batch writes): without them the repair would lose
   alerts. Recorded batches never overlap each other (each retired those it overlapped), so today this finds
   none; until 7 Dec the manifest retired every *later* batch of a partition, and this step re-ran them all;
3. puts missing offsets that no recorded batch covers (never processed) into new batches that stay inside the
   gaps between recorded batches, so they supersede nothing;
4. runs them in an order where no re-run batch supersedes one re-run before it (per partition, by offset);
5. refuses (and reports) what it cannot redo exactly: a batch whose offsets the topic no longer retains whole,
   or a source whose offsets no longer hold the alerts the lake recorded for them (a changed archive).
The repair source's ``commit`` does nothing: the repair is not a consumer of the live topic, so no consumer
group's offsets move.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import json
import logging
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from alert_broker.pipeline.archive import archive_source, iter_archive
from alert_broker.pipeline.config import SHARED_ZTF, Settings
from alert_broker.pipeline.driver import make_batch_id, run
from alert_broker.pipeline.kafka import CONSUMER_DEFAULTS, parse_kafka_url
from alert_broker.pipeline.kafka import client as kafka_client
from alert_broker.pipeline.simulate_night import simulated_night
from alert_broker.pipeline.sources import resolve_archive
from alert_broker.storage import EmbeddedPostgres, Lake, SummaryStore, manifest
from alert_broker.surveys import decode_batch, registry_for
from alert_broker.surveys.messages import RawMessage

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (source, partition): a RawMessage's source and partition
Coord = tuple[str, int, int]  # (source, partition, offset)

#: Messages decoded at a time while scanning (memory only; the result does not depend on it).
SCAN_CHUNK = 500
#: PostgreSQL look-ups by candid are sent in slices of this many ids.
PG_SLICE = 50_000
_ALERT_COLS = ["survey", "candid", "oid", "night", "source", "partition", "offset"]
_COORD_COLS = ["source", "partition", "offset"]
_NIGHT_RE = re.compile(r"(?:^|/)night=(\d+)/")


# ---------------------------------------------------------------------------------------------- readers
class Reader(Protocol):
    """One source as the re-scan reads it: everything from the beginning, or chosen offsets again."""

    label: str  # what the user named (a folder, a kafka:// URL)
    names: tuple[str, ...]  # the RawMessage.source values it yields (``archive:<name>``, or topic names)

    def scan(self) -> Iterator[list[RawMessage]]: ...
    def fetch(self, wanted: list[dict[Key, list[int]]]) -> Iterator[list[RawMessage]]: ...
    def close(self) -> None: ...


class ArchiveReader:
    """A night archive (folder or .tar.gz): offsets are file indices in the archive's fixed order."""

    def __init__(self, path: Path, shared_disk: bool = True) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        self.names = (archive_source(self.path),)
        self.shared_disk = shared_disk  # the workers read the files themselves (a LocalCluster)

    def scan(self) -> Iterator[list[RawMessage]]:
        return iter_archive(self.path, SCAN_CHUNK, lazy=self.path.is_dir())

    def fetch(self, wanted: list[dict[Key, list[int]]]) -> Iterator[list[RawMessage]]:
        """The messages of each wanted batch, in the given order, from one forward pass over the archive."""
        owner: dict[int, int] = {}
        sizes = []
        for i, batch in enumerate(wanted):
            n = 0
            for (_source, _partition), offsets in batch.items():
                for o in offsets:
                    owner[int(o)] = i
                    n += 1
            sizes.append(n)
        got: dict[int, list[RawMessage]] = defaultdict(list)
        nxt = 0
        messages = (m for batch in self.scan() for m in batch)  # a folder's: paths, not bytes, until used
        for m in messages:
            i = owner.get(m.offset)
            if i is None:
                continue
            got[i].append(m if self.shared_disk else m.loaded())
            while nxt < len(wanted) and len(got[nxt]) == sizes[nxt]:
                yield got.pop(nxt)
                nxt += 1
        if nxt < len(wanted):
            raise RuntimeError(
                f"{self.label}: the archive no longer holds every offset the repair needs "
                f"(batch {nxt + 1} of {len(wanted)} is incomplete); was it changed since the scan?"
            )

    def close(self) -> None:
        pass


class KafkaReader:
    """Kafka topics read with a consumer of its own: every partition is assigned from its earliest retained
    offset and read to its end (the partition-EOF event, i.e. the high watermark when the read gets there).
    The group id is a throwaway one and nothing is ever committed, so no consumer group moves."""

    def __init__(self, url: str, idle_s: float = 30.0, config: dict | None = None) -> None:
        parsed = parse_kafka_url(url)
        self.label = url
        self.bootstrap = parsed.bootstrap
        self.names = parsed.topics
        self.idle_s = idle_s
        self.config = dict(config or {})  # the run's Kafka client settings (security)

    def _consumer(self) -> Consumer:
        conf = {
            **CONSUMER_DEFAULTS,
            "bootstrap.servers": self.bootstrap,
            "group.id": f"alert-broker-integrity-{uuid.uuid4().hex[:12]}",  # never joined, never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            **self.config,
        }
        return kafka_client(Consumer, conf)

    def _partitions(self, consumer: Consumer) -> list[Key]:
        out = []
        for topic in self.names:
            meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
            if meta is None or meta.error is not None:
                raise RuntimeError(
                    f"{self.label}: topic {topic!r} cannot be read ({getattr(meta, 'error', None)})"
                )
            out += [(topic, p) for p in sorted(meta.partitions)]
        return out

    @staticmethod
    def _message(m) -> RawMessage:
        key = m.key()
        return RawMessage(
            source=m.topic(),
            partition=m.partition(),
            offset=m.offset(),
            payload=m.value() or b"",
            key=key.decode("utf-8", "replace") if key else None,
        )

    def _read(self, consumer: Consumer, start: dict[Key, int], until: dict[Key, int] | None):
        """Messages from ``start`` (offset or OFFSET_BEGINNING per partition) to each partition's end, or to
        ``until`` (last offset wanted). Yields lists of messages."""
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
        open_ = set(start)
        last_seen = time.monotonic()
        try:
            while open_:
                msgs = consumer.consume(SCAN_CHUNK, timeout=1.0)
                out = []
                for m in msgs:
                    err = m.error()
                    k = (m.topic(), m.partition())
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            open_.discard(k)
                            continue
                        raise KafkaException(err)
                    if k not in open_:
                        continue
                    out.append(self._message(m))
                    if until is not None and m.offset() >= until[k]:
                        open_.discard(k)
                if msgs:
                    last_seen = time.monotonic()
                elif time.monotonic() - last_seen > self.idle_s:
                    log.warning(
                        "%s: nothing came from partitions %s for %.0f s; stopping the read there",
                        self.label, sorted(open_), self.idle_s,
                    )  # fmt: skip
                    break
                if out:
                    yield out
        finally:
            consumer.unassign()

    def scan(self) -> Iterator[list[RawMessage]]:
        consumer = self._consumer()
        try:
            parts = self._partitions(consumer)
            yield from self._read(consumer, {k: OFFSET_BEGINNING for k in parts}, None)
        finally:
            consumer.close()

    def fetch(self, wanted: list[dict[Key, list[int]]]) -> Iterator[list[RawMessage]]:
        consumer = self._consumer()
        try:
            for batch in wanted:
                want = {k: set(int(o) for o in v) for k, v in batch.items() if len(v)}
                start = {k: min(v) for k, v in want.items()}
                until = {k: max(v) for k, v in want.items()}
                got = [
                    m
                    for chunk in self._read(consumer, start, until)
                    for m in chunk
                    if m.offset in want[(m.source, m.partition)]
                ]
                if len(got) != sum(len(v) for v in want.values()):
                    raise RuntimeError(
                        f"{self.label}: the topic no longer holds every offset of a batch to re-run "
                        f"({sum(len(v) for v in want.values()) - len(got)} missing of {start} .. {until}); "
                        "retention may have deleted them since the scan"
                    )
                yield sorted(got, key=lambda m: (m.source, m.partition, m.offset))
        finally:
            consumer.close()

    def close(self) -> None:
        pass


def open_readers(settings: Settings) -> list[Reader]:
    """A reader per source of the settings (the same resolution as ``sources.open_source``)."""
    readers: list[Reader] = []
    shared_disk = not settings.scheduler  # as sources.open_source: a LocalCluster's workers read the files
    for src in settings.sources:
        if src.startswith("kafka://"):
            readers.append(
                KafkaReader(src, idle_s=max(30.0, settings.kafka_idle_stop_s), config=settings.kafka_config)
            )
        elif src == "sim" or (not src and not SHARED_ZTF.exists()):
            readers += [ArchiveReader(p, shared_disk) for p in simulated_night(settings)]
        else:
            readers.append(ArchiveReader(resolve_archive(src, settings.night), shared_disk))
    names = [n for r in readers for n in r.names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two sources share the name {', '.join(twice)}: their offsets cannot be told apart")
    return readers


# ---------------------------------------------------------------------------------------------- the report
@dataclass
class NightCheck:
    """The counts of one observing night (``night`` None: messages that did not decode, so have no night)."""

    night: int | None
    in_source: int = 0  # alerts decoded from the source (undated row: messages that did not decode)
    in_lake: int = 0
    in_postgres: int = 0
    missing_lake: int = 0
    missing_postgres: int = 0
    duplicated_lake: int = 0  # alerts held by more than one live lake file
    dead_lettered: int = 0  # accounted for by a dead letter (undated: undecodable; dated: science failed)
    not_dead_lettered: int = 0  # undecodable messages without their dead letter (PostgreSQL or lake)
    lake_only: int = 0  # lake alerts of these sources that the source no longer holds (e.g. retention)
    dead_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return self.missing_lake + self.missing_postgres + self.not_dead_lettered


@dataclass
class IntegrityReport:
    """What a scan found. The frames list every alert or message behind the counts (and go to the JSON)."""

    sources: list[str]
    names: list[str]
    lake: str
    night: int | None
    scanned_at: str
    seconds: float
    messages: int
    nights: list[NightCheck]
    missing: (
        pd.DataFrame
    )  # survey, candid, oid, night, source, partition, offset, missing_lake, missing_postgres
    not_dead_lettered: pd.DataFrame  # source, partition, offset, key, reason, in_postgres, in_lake
    duplicates: pd.DataFrame  # survey, candid, night, files
    offsets: pd.DataFrame  # source, partition, first, last, messages: what the scan read
    changed_sources: dict[str, int]  # source -> lake alerts whose offset now holds another alert
    duplicated_in_source: int = 0
    scanned: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # every message's coordinates

    @property
    def missing_alerts(self) -> int:
        """Alerts missing from the lake or from PostgreSQL (each counted once)."""
        return len(self.missing)

    @property
    def missing_total(self) -> int:
        """What the exit status counts: missing alerts and undecodable messages without their dead letter."""
        return len(self.missing) + len(self.not_dead_lettered)

    @property
    def clean(self) -> bool:
        return self.missing_total == 0 and self.duplicates.empty and not self.changed_sources

    def totals(self) -> NightCheck:
        t = NightCheck(night=None)
        reasons: Counter = Counter()
        for n in self.nights:
            for f in ("in_source", "in_lake", "in_postgres", "missing_lake", "missing_postgres"):
                setattr(t, f, getattr(t, f) + getattr(n, f))
            for f in ("duplicated_lake", "dead_lettered", "not_dead_lettered", "lake_only"):
                setattr(t, f, getattr(t, f) + getattr(n, f))
            reasons.update(n.dead_reasons)
        t.dead_reasons = dict(reasons.most_common())
        return t

    def to_dict(self) -> dict[str, Any]:
        return {
            "scanned_at": self.scanned_at,
            "seconds": round(self.seconds, 3),
            "sources": self.sources,
            "source_names": self.names,
            "lake": self.lake,
            "night": self.night,
            "messages": self.messages,
            "clean": self.clean,
            "missing_total": self.missing_total,
            "duplicated_in_source": self.duplicated_in_source,
            "changed_sources": self.changed_sources,
            "offsets": _records(self.offsets),
            "nights": [asdict(n) for n in self.nights],
            "totals": asdict(self.totals()),
            "missing": _records(self.missing),
            "not_dead_lettered": _records(self.not_dead_lettered),
            "duplicates": _records(self.duplicates),
        }

    def render(self) -> str:
        lines = [
            f"Integrity re-scan — {self.scanned_at} ({self.seconds:.1f} s)",
            f"  sources           {', '.join(self.sources)}",
            f"  lake              {self.lake}",
            f"  messages read     {self.messages}"
            + (f"  (night {self.night} only)" if self.night is not None else ""),
        ]
        for row in self.offsets.itertuples(index=False):
            lines.append(
                f"    {row.source} partition {row.partition}: offsets {row.first}-{row.last} "
                f"({row.messages} messages)"
            )
        head = (
            f"  {'night':<10}{'source':>8}{'lake':>8}{'pg':>8}{'miss lk':>9}{'miss pg':>9}"
            f"{'dup lk':>8}{'dead':>7}{'no DL':>7}{'lk only':>9}"
        )
        lines += ["", head]
        rows = [*self.nights, self.totals()]
        for i, n in enumerate(rows):
            label = "total" if i == len(rows) - 1 else ("undated" if n.night is None else str(n.night))
            lines.append(
                f"  {label:<10}{n.in_source:>8}{n.in_lake:>8}{n.in_postgres:>8}{n.missing_lake:>9}"
                f"{n.missing_postgres:>9}{n.duplicated_lake:>8}{n.dead_lettered:>7}{n.not_dead_lettered:>7}"
                f"{n.lake_only:>9}"
            )
        lines += [
            "  (source: alerts decoded; miss lk / miss pg: missing from the lake / PostgreSQL; dup lk: in more",
            "   than one lake file; dead: accounted for by a dead letter; no DL: undecodable without its dead",
            "   letter; lk only: in the lake, no longer in the source; undated: messages that did not decode)",
        ]
        reasons = self.totals().dead_reasons
        if reasons:
            lines += ["", "  dead letters by reason"]
            lines += [f"    {c:>6}  {_short(r)}" for r, c in reasons.items()]
        if not self.missing.empty:
            lines += ["", f"  missing alerts ({len(self.missing)}):"]
            for r in self.missing.head(20).itertuples(index=False):
                pairs = (("the lake", r.missing_lake), ("PostgreSQL", r.missing_postgres))
                where = " nor ".join(w for w, gone in pairs if gone)
                lines.append(
                    f"    {r.survey} {r.candid} {r.oid} night {r.night}  {r.source} p{r.partition} "
                    f"o{r.offset}: not in {where}"
                )
            if len(self.missing) > 20:
                lines.append(f"    ... {len(self.missing) - 20} more (all in the JSON report)")
        if not self.not_dead_lettered.empty:
            lines += [
                "",
                f"  undecodable messages without their dead letter ({len(self.not_dead_lettered)}):",
            ]
            for r in self.not_dead_lettered.head(20).itertuples(index=False):
                lines.append(f"    {r.source} p{r.partition} o{r.offset} ({r.key}): {_short(r.reason)}")
        if not self.duplicates.empty:
            lines += ["", f"  alerts in more than one live lake file ({len(self.duplicates)}):"]
            for r in self.duplicates.head(20).itertuples(index=False):
                lines.append(f"    {r.survey} {r.candid}: {', '.join(r.files)}")
        if self.changed_sources:
            lines += ["", "  sources whose offsets no longer hold the alerts the lake recorded for them:"]
            lines += [f"    {s}: {n} alerts" for s, n in self.changed_sources.items()]
        if self.duplicated_in_source:
            lines.append(f"  the source itself holds {self.duplicated_in_source} alerts more than once")
        lines += ["", "  result            " + ("clean" if self.clean else f"{self.missing_total} missing")]
        return "\n".join(lines)


@dataclass
class PlannedBatch:
    """One batch the repair runs: a recorded batch again (same offsets, so the same id and files) or a new one
    of offsets no recorded batch covers."""

    batch_id: str
    spans: dict[Key, tuple[int, int]]
    offsets: dict[Key, list[int]]  # the messages to read again
    why: str  # "missing" (holds missing alerts) | "superseded" (an earlier re-run retires it) | "new"
    targets: int = 0  # missing alerts / dead letters it restores

    @property
    def messages(self) -> int:
        return sum(len(v) for v in self.offsets.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "why": self.why,
            "targets": self.targets,
            "messages": self.messages,
            "ranges": {f"{s}/{p}": list(r) for (s, p), r in sorted(self.spans.items())},
        }


@dataclass
class RepairResult:
    """What ``repair`` did, and the scan after it."""

    planned: list[PlannedBatch]
    unrepairable: list[dict[str, Any]]
    run_id: str | None
    status: str
    messages: int
    alerts: int
    dead_letters: int
    seconds: float
    after: IntegrityReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "run_id": self.run_id,
            "batches": [b.to_dict() for b in self.planned],
            "messages": self.messages,
            "alerts": self.alerts,
            "dead_letters": self.dead_letters,
            "seconds": round(self.seconds, 3),
            "unrepairable": self.unrepairable,
        }

    def render(self) -> str:
        why = Counter(b.why for b in self.planned)
        lines = [
            f"Integrity repair — {self.status}",
            f"  batches re-run    {len(self.planned)} ({why.get('missing', 0)} holding missing alerts, "
            f"{why.get('superseded', 0)} later ones their re-run supersedes, {why.get('new', 0)} new)",
            f"  messages          {self.messages} reprocessed, {self.alerts} alerts written, "
            f"{self.dead_letters} dead letters",
        ]
        if self.run_id:
            lines.append(f"  pipeline run      {self.run_id}")
        for b in self.planned[:20]:
            lines.append(f"    {b.batch_id}: {b.why}, {b.messages} messages, {b.targets} missing")
        if len(self.planned) > 20:
            lines.append(f"    ... {len(self.planned) - 20} more batches (all in the JSON report)")
        for u in self.unrepairable[:20]:
            lines.append(f"  not repaired: {u['source']} p{u['partition']} o{u['offset']}: {u['reason']}")
        lines.append("")
        lines.append("After the repair:")
        lines.append(self.after.render())
        return "\n".join(lines)


def write_report(folder: str | Path, report: IntegrityReport, result: RepairResult | None = None) -> Path:
    """``integrity-<time>.json`` in ``folder``: the scan, and with a repair the repair and the scan after it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = folder / f"integrity-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"integrity-{stamp}-{n}.json"
    payload: dict[str, Any] = {"scan": report.to_dict()}
    if result is not None:
        payload["repair"] = result.to_dict()
        payload["after"] = result.after.to_dict()
    final = result.after if result is not None else report
    payload["missing_after"] = final.missing_total
    path.write_text(json.dumps(payload, indent=2, default=_json_default))
    return path


#: ``pipeline_run.source`` of an integrity check (its ``counts`` say what was missing before and after).
RUN_SOURCE = "integrity"


@contextlib.contextmanager
def recorded_check(settings: Settings, repair: bool) -> Iterator[dict[str, Any]]:
    """Record an integrity check (scan, and repair when asked) as a ``pipeline_run`` row of source
    ``integrity``, so a scheduled check leaves its verdict in PostgreSQL, where the explorer's night page lists
    it, even when nothing was missing and the report file was on a pod's disk. The caller puts the scan under
    ``"report"`` and the repair under ``"result"`` of the yielded dict; an exception records ``failed``."""
    done: dict[str, Any] = {}
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    config = {**settings.public_dict(), "repair": repair}  # secrets masked, as a night's run records them
    with SummaryStore(settings.pg_dsn) as store:
        store.ensure_schema()
        store.start_run(run_id, RUN_SOURCE, config)
        try:
            yield done
        except BaseException:
            store.finish_run(run_id, "failed", {"error": "the check stopped before its verdict"})
            raise
        status, counts, summary = check_outcome(done["report"], done.get("result"))
        store.finish_run(run_id, status, summary, counts)


def check_outcome(
    report: IntegrityReport, result: RepairResult | None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The ``pipeline_run`` status, counts and summary of a check: ``missing`` while anything is missing (what
    the exit status counts), else ``anomalies`` when alerts sit in more than one lake file or a source's offsets
    now hold other alerts (nothing lost, something to read), else ``repaired`` when a repair brought back what
    was missing, else ``clean``. The summary keeps the per-night counts, not the lists of alerts (those are in
    the JSON report)."""
    final = result.after if result is not None else report
    if final.missing_total:
        status = "missing"
    elif not final.clean:
        status = "anomalies"
    else:
        status = "repaired" if report.missing_total else "clean"
    counts: dict[str, Any] = {
        "messages": report.messages,
        "missing": report.missing_total,
        "missing_after": final.missing_total,
        "duplicated": len(final.duplicates),
        "changed_sources": sum(final.changed_sources.values()),
    }
    summary: dict[str, Any] = {
        "scan": {
            k: v
            for k, v in report.to_dict().items()
            if k not in ("missing", "not_dead_lettered", "duplicates")
        }
    }
    if result is not None:
        counts["repaired_messages"] = result.messages
        summary["repair"] = {k: v for k, v in result.to_dict().items() if k != "batches"}
        summary["repair"]["batches"] = len(result.planned)
        summary["after"] = asdict(result.after.totals())
    return status, counts, json.loads(json.dumps(summary, default=_json_default))


def _json_default(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return str(v)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    if df.empty:
        return []
    return [
        {k: (None if _isna(v) else v) for k, v in rec.items()}
        for rec in df.astype(object).to_dict(orient="records")
    ]


def _isna(v: Any) -> bool:
    return not isinstance(v, list | tuple | dict | set) and bool(pd.isna(v))


def _short(reason: str, width: int = 110) -> str:
    reason = " ".join(str(reason).split())
    return reason if len(reason) <= width else reason[: width - 3] + "..."


# ---------------------------------------------------------------------------------------------- services
@contextlib.contextmanager
def with_database(settings: Settings) -> Iterator[Settings]:
    """The settings with a PostgreSQL DSN: the configured one, or the embedded server of OUT (started here)."""
    if settings.pg_dsn:
        yield settings
        return
    with EmbeddedPostgres(settings.pg_data_dir) as pg:
        yield replace(settings, pg_dsn=pg.dsn)


# ---------------------------------------------------------------------------------------------- scanning
def _night_of(night: int | str | None) -> int | None:
    if night is None or str(night).strip() == "":
        return None
    return int(night)


def _read_source(
    readers: list[Reader], settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every message of every reader, decoded: (alerts, undecodable messages, coordinates of all messages)."""
    registry = registry_for(settings.surveys)
    alerts, dead, coords = [], [], []
    for reader in readers:
        for i, chunk in enumerate(reader.scan()):
            chunk = [m.loaded() for m in chunk]
            coords.append(
                pd.DataFrame(
                    {
                        "source": [m.source for m in chunk],
                        "partition": np.array([m.partition for m in chunk], dtype=np.int64),
                        "offset": np.array([m.offset for m in chunk], dtype=np.int64),
                    }
                )
            )
            tables, letters, _raw = decode_batch(chunk, f"integrity-scan-{i}", registry)
            a = tables.alerts
            if not a.empty:
                alerts.append(a[[c for c in _ALERT_COLS if c in a.columns]].copy())
            keys = {(m.source, m.partition, m.offset): m.key for m in chunk}
            dead += [
                (d.source, d.partition, d.offset, keys.get((d.source, d.partition, d.offset)), d.reason)
                for d in letters
            ]
    a = pd.concat(alerts, ignore_index=True) if alerts else pd.DataFrame(columns=_ALERT_COLS)
    for c in ("candid", "partition", "offset"):
        a[c] = a[c].astype("int64")
    a["night"] = a["night"].astype("int64")
    u = pd.DataFrame(dead, columns=["source", "partition", "offset", "key", "reason"])
    u = u.astype({"partition": "int64", "offset": "int64"}).drop_duplicates(_COORD_COLS)
    c = pd.concat(coords, ignore_index=True) if coords else pd.DataFrame(columns=_COORD_COLS)
    return a, u, c.astype({"partition": "int64", "offset": "int64"})


def _lake_alerts(lake: Lake, nights: Iterable[int], names: set[str]) -> pd.DataFrame:
    """Every row of the lake's ``alerts`` files of these nights and sources, with the file that holds it."""
    files = lake.list_files("alerts", nights=sorted(set(nights)))
    want = ["survey", "candid", "source", "partition", "offset"]

    def read(path: str) -> pd.DataFrame | None:
        try:
            with lake.fs.open(path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                cols = [c for c in want if c in pf.schema_arrow.names]
                df = pf.read(columns=cols).to_pandas()
        except FileNotFoundError:
            return None  # deleted since listing (a batch superseded meanwhile)
        for c in want:
            if c not in df.columns:
                df[c] = pd.NA
        m = _NIGHT_RE.search(path)
        df["night"] = int(m.group(1)) if m else pd.NA
        df["file"] = path
        return df

    with ThreadPoolExecutor(max(1, min(8 if lake.local else 16, len(files) or 1))) as pool:
        parts = [p for p in pool.map(read, files) if p is not None and not p.empty]
    cols = [*want, "night", "file"]
    if not parts:
        return pd.DataFrame(columns=cols)
    df = pd.concat(parts, ignore_index=True)[cols]
    df = df[df["source"].isna() | df["source"].isin(names)]
    return df.astype({"candid": "int64"}).reset_index(drop=True)


def _pg_alert_keys(store: SummaryStore, candids: np.ndarray) -> pd.DataFrame:
    parts = []
    unique = np.unique(candids.astype(np.int64))
    for i in range(0, len(unique), PG_SLICE):
        ids = [int(x) for x in unique[i : i + PG_SLICE]]
        parts.append(store.fetch_df("SELECT survey, candid FROM alert WHERE candid = ANY(%s)", (ids,)))
    if not parts:
        return pd.DataFrame({"survey": pd.Series(dtype=object), "candid": pd.Series(dtype="int64")})
    return pd.concat(parts, ignore_index=True).astype({"candid": "int64"})


def _pg_dead_letters(store: SummaryStore, names: list[str]) -> pd.DataFrame:
    df = store.fetch_df(
        'SELECT source, "partition", "offset", key, reason FROM dead_letter WHERE source = ANY(%s)', (names,)
    )
    return df.astype({"partition": "int64", "offset": "int64"})


def _lake_dead_letters(lake: Lake, names: set[str]) -> pd.DataFrame:
    df = lake.read_table("dead_letters", columns=["source", "partition", "offset", "key", "reason"])
    if df.empty:
        return pd.DataFrame(columns=["source", "partition", "offset", "key", "reason"])
    df = df[df["source"].isin(names)]
    return df.astype({"partition": "int64", "offset": "int64"})


def _flag(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> np.ndarray:
    """For each row of ``left``: does ``right`` hold its ``on`` key?"""
    if left.empty:
        return np.zeros(0, dtype=bool)
    if right.empty:
        return np.zeros(len(left), dtype=bool)
    keys = right[on].drop_duplicates().assign(_hit=1)
    merged = left[on].merge(keys, on=on, how="left")
    return merged["_hit"].notna().to_numpy()


def scan(settings: Settings, night: int | str | None = None) -> IntegrityReport:
    """Re-read the settings' sources and compare their alerts with the lake and PostgreSQL.

    ``night`` (default: the settings' ``--night``) keeps the alerts of that observing night only; messages that
    do not decode have no night and are always checked."""
    t0 = time.perf_counter()
    scanned_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    night = _night_of(night if night is not None else settings.night)
    readers = open_readers(settings)
    names = [n for r in readers for n in r.names]
    try:
        alerts, undecodable, coords = _read_source(readers, settings)
    finally:
        for r in readers:
            r.close()
    log.info("integrity: %d messages read from %s", len(coords), ", ".join(r.label for r in readers))
    lake = Lake(settings.lake, settings.storage_options or None)
    with with_database(settings) as s, SummaryStore(s.pg_dsn) as store:
        store.ensure_schema()
        return _compare(readers, names, night, scanned_at, t0, lake, store, alerts, undecodable, coords)


def _compare(
    readers: list[Reader],
    names: list[str],
    night: int | None,
    scanned_at: str,
    t0: float,
    lake: Lake,
    store: SummaryStore,
    alerts: pd.DataFrame,
    undecodable: pd.DataFrame,
    coords: pd.DataFrame,
) -> IntegrityReport:
    key = ["survey", "candid"]
    all_alerts = alerts
    if night is not None:
        alerts = alerts[alerts["night"] == night]
    dup_src = alerts.duplicated(key)
    expected = alerts[~dup_src].reset_index(drop=True)
    nights = sorted(int(n) for n in expected["night"].unique())

    lake_rows = _lake_alerts(lake, nights, set(names))
    pg_keys = _pg_alert_keys(store, expected["candid"].to_numpy())
    pg_dead = _pg_dead_letters(store, names)
    lake_dead = _lake_dead_letters(lake, set(names))

    # an alert whose science failed is a dead letter keyed by its candid, at its message's coordinates
    science_dead = pg_dead.assign(candid=pd.to_numeric(pg_dead["key"], errors="coerce"))
    science_dead = science_dead.dropna(subset=["candid"]).astype({"candid": "int64"})
    expected["lake"] = _flag(expected, lake_rows, key)
    expected["postgres"] = _flag(expected, pg_keys, key)
    expected["dead"] = _flag(expected, science_dead, [*_COORD_COLS, "candid"])
    reason_of = science_dead.set_index([*_COORD_COLS, "candid"])["reason"] if not science_dead.empty else None
    missing_lake = ~expected["lake"] & ~expected["dead"]
    missing_pg = ~expected["postgres"] & ~expected["dead"]

    # lake files holding the same alert more than once
    if lake_rows.empty:
        dups = pd.DataFrame(columns=["survey", "candid", "night", "files"])
    else:
        n_files = lake_rows.groupby(key, dropna=False)["file"].transform("nunique")
        held = lake_rows[n_files.to_numpy() > 1]
        dups = (
            held.groupby(key, dropna=False)
            .agg(night=("night", "first"), files=("file", "unique"))
            .reset_index()[["survey", "candid", "night", "files"]]
        )
        dups["files"] = dups["files"].map(lambda f: sorted(str(x) for x in f))
    lake_only = lake_rows.drop_duplicates(key)
    lake_only = lake_only[~_flag(lake_only, expected, key)] if not lake_only.empty else lake_only

    # the lake's alerts whose offset now holds another alert: the source changed since it was processed
    changed: dict[str, int] = {}
    with_coords = lake_rows.dropna(subset=_COORD_COLS)
    if not with_coords.empty:
        with_coords = with_coords.astype({"partition": "int64", "offset": "int64"})
        read_back = with_coords[_flag(with_coords, coords, _COORD_COLS)]
        moved = read_back[~_flag(read_back, all_alerts, [*_COORD_COLS, *key])]
        changed = {str(s): int(n) for s, n in moved.groupby("source").size().items()}

    # messages that did not decode: each must have its dead letter, in PostgreSQL and in the lake
    u = undecodable.copy()
    u["postgres"] = _flag(u, pg_dead, _COORD_COLS)
    u["lake"] = _flag(u, lake_dead, _COORD_COLS)
    if not u.empty and not pg_dead.empty:
        stored = pg_dead.drop_duplicates(_COORD_COLS).set_index(_COORD_COLS)["reason"]
        idx = pd.MultiIndex.from_frame(u[_COORD_COLS])
        u["stored_reason"] = stored.reindex(idx).to_numpy()
    else:
        u["stored_reason"] = None
    not_dl = u[~(u["postgres"] & u["lake"])]

    checks = []
    for n in nights:
        sel = expected["night"] == n
        e = expected[sel]
        reasons: Counter = Counter()
        if reason_of is not None:
            for row in e[e["dead"]].itertuples(index=False):
                r = reason_of.get((row.source, row.partition, row.offset, row.candid))
                reasons[str(r.iloc[0] if isinstance(r, pd.Series) else r)] += 1
        checks.append(
            NightCheck(
                night=n,
                in_source=int(sel.sum()),
                in_lake=int(e["lake"].sum()),
                in_postgres=int(e["postgres"].sum()),
                missing_lake=int(missing_lake[sel].sum()),
                missing_postgres=int(missing_pg[sel].sum()),
                duplicated_lake=int((dups["night"] == n).sum()) if not dups.empty else 0,
                dead_lettered=int(e["dead"].sum()),
                lake_only=int((lake_only["night"] == n).sum()) if not lake_only.empty else 0,
                dead_reasons=dict(reasons.most_common()),
            )
        )
    if not u.empty:
        reasons = Counter(
            str(r if isinstance(r, str) else s) for r, s in zip(u["stored_reason"], u["reason"], strict=True)
        )
        checks.append(
            NightCheck(
                night=None,
                in_source=len(u),
                dead_lettered=int(u["postgres"].sum()),
                not_dead_lettered=len(not_dl),
                dead_reasons=dict(reasons.most_common()),
            )
        )

    gone = missing_lake | missing_pg
    missing = expected[gone].copy()
    missing["missing_lake"] = missing_lake[gone].to_numpy()
    missing["missing_postgres"] = missing_pg[gone].to_numpy()
    missing = missing[[*_ALERT_COLS, "missing_lake", "missing_postgres"]].reset_index(drop=True)
    offsets = (
        coords.groupby(["source", "partition"])["offset"]
        .agg(first="min", last="max", messages="size")
        .reset_index()
        if not coords.empty
        else pd.DataFrame(columns=["source", "partition", "first", "last", "messages"])
    )
    return IntegrityReport(
        sources=[r.label for r in readers],
        names=names,
        lake=lake.url,
        night=night,
        scanned_at=scanned_at,
        seconds=time.perf_counter() - t0,
        messages=len(coords),
        nights=checks,
        missing=missing,
        not_dead_lettered=not_dl.rename(columns={"postgres": "in_postgres", "lake": "in_lake"})[
            ["source", "partition", "offset", "key", "reason", "in_postgres", "in_lake"]
        ].reset_index(drop=True),
        duplicates=dups.reset_index(drop=True),
        offsets=offsets,
        changed_sources=changed,
        duplicated_in_source=int(dup_src.sum()),
        scanned=coords,
    )


# ---------------------------------------------------------------------------------------------- planning
@dataclass
class _Recorded:
    batch_id: str
    spans: dict[Key, tuple[int, int]]


def _recorded_batches(frame: pd.DataFrame) -> dict[str, _Recorded]:
    out: dict[str, _Recorded] = {}
    for row in frame.itertuples(index=False):
        b = out.setdefault(row.batch_id, _Recorded(row.batch_id, {}))
        b.spans[(str(row.source), int(row.partition))] = (int(row.first_offset), int(row.last_offset))
    return out


def _batch_id(offsets: dict[Key, list[int]]) -> str:
    return make_batch_id([RawMessage(s, p, int(o), b"") for (s, p), offs in offsets.items() for o in offs])


def plan_repair(
    targets: Iterable[Coord],
    recorded: pd.DataFrame,
    scanned: pd.DataFrame,
    batch_size: int,
    refused_sources: Iterable[str] = (),
) -> tuple[list[PlannedBatch], list[dict[str, Any]]]:
    """The batches that restore ``targets`` (message coordinates) without losing anything else, in a safe order.

    ``recorded``: the manifest (``manifest.batches``: batch_id, source, partition, first_offset, last_offset);
    ``scanned``: every (source, partition, offset) the source holds now. Returns (batches to run, in order;
    targets that cannot be repaired, with the reason). See the module docstring for the rules."""
    refused = set(refused_sources)
    batches = _recorded_batches(recorded)
    by_key: dict[Key, list[tuple[int, int, str]]] = defaultdict(list)
    for b in batches.values():
        for k, (a, z) in b.spans.items():
            by_key[k].append((a, z, b.batch_id))
    for spans in by_key.values():
        spans.sort()
    available: dict[Key, np.ndarray] = {
        (str(s), int(p)): np.sort(g["offset"].to_numpy(dtype=np.int64))
        for (s, p), g in (scanned.groupby(["source", "partition"]) if not scanned.empty else [])
    }

    def offsets_in(k: Key, a: int, z: int) -> list[int]:
        have = available.get(k, np.zeros(0, dtype=np.int64))
        lo, hi = np.searchsorted(have, a, "left"), np.searchsorted(have, z, "right")
        return [int(x) for x in have[lo:hi]]

    unrepairable: list[dict[str, Any]] = []
    seeds: Counter = Counter()
    seed_targets: dict[str, list[Coord]] = defaultdict(list)
    uncovered: dict[Key, list[int]] = defaultdict(list)
    for s, p, o in sorted(set((str(s), int(p), int(o)) for s, p, o in targets)):
        if s in refused:
            unrepairable.append(
                _refusal(
                    (s, p, o), "the source's offsets no longer hold the alerts the lake recorded for them"
                )
            )
            continue
        spans = by_key.get((s, p), [])
        i = bisect.bisect_right(spans, (o, float("inf"), "")) - 1
        if i >= 0 and spans[i][0] <= o <= spans[i][1]:
            seeds[spans[i][2]] += 1
            seed_targets[spans[i][2]].append((s, p, o))
        else:
            uncovered[(s, p)].append(o)

    # new batches: offsets no recorded batch covers, grouped within the gaps between recorded batches
    new: list[PlannedBatch] = []
    new_targets: dict[str, list[Coord]] = {}
    for k, offs in sorted(uncovered.items()):
        firsts = [a for a, _, _ in by_key.get(k, [])]
        groups: dict[int, list[int]] = defaultdict(list)
        for o in sorted(offs):
            groups[bisect.bisect_right(firsts, o)].append(o)
        for group in groups.values():
            for i in range(0, len(group), batch_size):
                part = group[i : i + batch_size]
                pb = PlannedBatch(_batch_id({k: part}), {k: (part[0], part[-1])}, {k: part}, "new", len(part))
                new.append(pb)
                new_targets[pb.batch_id] = [(k[0], k[1], o) for o in part]

    def superseded_by(spans: dict[Key, tuple[int, int]]) -> set[str]:
        out = set()
        for k, (a, z) in spans.items():
            out.update(bid for first, last, bid in by_key.get(k, []) if first <= z and last >= a)
        return out

    def closure(spans: dict[Key, tuple[int, int]]) -> set[str]:
        seen: set[str] = set()
        todo = list(superseded_by(spans))
        while todo:
            bid = todo.pop()
            if bid in seen:
                continue
            seen.add(bid)
            todo.extend(superseded_by(batches[bid].spans) - seen)
        return seen

    def whole(bid: str) -> dict[Key, list[int]] | None:
        """The batch's messages as the source holds them now, if they are exactly the batch's (same id)."""
        offs = {k: offsets_in(k, a, z) for k, (a, z) in batches[bid].spans.items()}
        if any(not v for v in offs.values()) or _batch_id(offs) != bid:
            return None
        return offs

    messages: dict[str, dict[Key, list[int]] | None] = {}
    chosen: set[str] = set()
    runnable_new: list[PlannedBatch] = []
    starts = [(bid, batches[bid].spans, seed_targets[bid]) for bid in seeds]
    starts += [(b.batch_id, b.spans, new_targets[b.batch_id]) for b in new]
    for bid, spans, its_targets in starts:
        group = closure(spans) | ({bid} if bid in batches else set())
        for g in group:
            if g not in messages:
                messages[g] = whole(g)
        gone = sorted(g for g in group if messages[g] is None)
        if gone:
            b = batches[gone[0]]
            why = (
                f"re-running it would retire batch {gone[0]} "
                f"({', '.join(f'{s} p{p} o{a}-{z}' for (s, p), (a, z) in sorted(b.spans.items()))}), which the "
                "source no longer holds whole (retention, or a changed archive), so it could not be rewritten"
            )
            unrepairable += [_refusal(t, why) for t in its_targets]
            continue
        chosen |= group
        if bid not in batches:
            runnable_new += [b for b in new if b.batch_id == bid]

    planned = [
        PlannedBatch(
            bid,
            dict(batches[bid].spans),
            messages[bid] or {},
            "missing" if seeds.get(bid) else "superseded",
            int(seeds.get(bid, 0)),
        )
        for bid in chosen
    ] + runnable_new
    ordered = _safe_order(planned)
    if ordered is None:
        why = "the manifest's batches overlap on a partition, so no re-run order keeps each one's files"
        unrepairable += [_refusal(t, why) for b in planned for t in seed_targets.get(b.batch_id, [])]
        unrepairable += [_refusal(t, why) for b in runnable_new for t in new_targets[b.batch_id]]
        return [], unrepairable
    return ordered, unrepairable


def _refusal(coord: Coord, reason: str) -> dict[str, Any]:
    return {"source": coord[0], "partition": coord[1], "offset": coord[2], "reason": reason}


def _safe_order(planned: list[PlannedBatch]) -> list[PlannedBatch] | None:
    """An order in which no batch supersedes one run before it: on every shared partition, each batch starts
    after the previous one ended. A topological order of "comes before on some partition"; None if the
    batches overlap (no such order)."""
    edges: dict[int, set[int]] = defaultdict(set)
    indeg = [0] * len(planned)
    per_key: dict[Key, list[tuple[int, int, int]]] = defaultdict(list)
    for i, b in enumerate(planned):
        for k, (a, z) in b.spans.items():
            per_key[k].append((a, z, i))
    for spans in per_key.values():
        spans.sort()
        for (_a0, z0, i0), (a1, _z1, i1) in zip(spans, spans[1:], strict=False):
            if z0 >= a1:
                return None
            if i1 not in edges[i0]:
                edges[i0].add(i1)
                indeg[i1] += 1
    heap = [
        (min(a for a, _ in b.spans.values()), b.batch_id, i) for i, b in enumerate(planned) if not indeg[i]
    ]
    heapq.heapify(heap)
    out = []
    while heap:
        _, _, i = heapq.heappop(heap)
        out.append(planned[i])
        for j in edges[i]:
            indeg[j] -= 1
            if not indeg[j]:
                b = planned[j]
                heapq.heappush(heap, (min(a for a, _ in b.spans.values()), b.batch_id, j))
    return out if len(out) == len(planned) else None


# ---------------------------------------------------------------------------------------------- repairing
class RepairSource:
    """The batches to re-run, as a driver Source. ``commit`` does nothing: the repair reads the topic with its
    own consumer and must not move any consumer group's offsets (the manifest still records each batch)."""

    def __init__(self, readers: list[Reader], planned: list[PlannedBatch]) -> None:
        self.readers = readers
        self.planned = planned
        self.name = "integrity-repair:" + "+".join(n for r in readers for n in r.names)

    def batches(self) -> Iterator[list[RawMessage]]:
        owner = {n: r for r in self.readers for n in r.names}
        by_reader: dict[int, list[PlannedBatch]] = defaultdict(list)
        for b in self.planned:
            reader = owner[next(iter(b.offsets))[0]]
            by_reader[id(reader)].append(b)
        for reader in self.readers:
            todo = by_reader.get(id(reader), [])
            if not todo:
                continue
            for b, messages in zip(todo, reader.fetch([b.offsets for b in todo]), strict=True):
                got = make_batch_id(messages)
                if got != b.batch_id:
                    raise RuntimeError(f"re-read batch {b.batch_id} came back as {got}: the source changed")
                yield messages

    def commit(self, messages: list[RawMessage]) -> None:
        """Nothing to acknowledge: the repair is not a consumer of the live topic."""

    def total(self) -> int | None:
        return sum(b.messages for b in self.planned)

    def close(self) -> None:
        for r in self.readers:
            r.close()


def repair(settings: Settings, report: IntegrityReport) -> RepairResult:
    """Reprocess the messages behind ``report``'s missing alerts and dead letters (module docstring: whole
    recorded batches, their superseded successors, new batches for uncovered offsets), then scan again."""
    t0 = time.perf_counter()
    frames = [f[_COORD_COLS] for f in (report.missing, report.not_dead_lettered) if not f.empty]
    targets = sorted(
        {(str(s), int(p), int(o)) for f in frames for s, p, o in f.itertuples(index=False, name=None)}
    )
    with with_database(settings) as s:
        if not targets:
            return RepairResult([], [], None, "nothing to repair", 0, 0, 0, time.perf_counter() - t0, report)
        with SummaryStore(s.pg_dsn) as store:
            recorded = pd.concat([manifest.batches(store, n) for n in report.names], ignore_index=True)
        planned, unrepairable = plan_repair(
            targets, recorded, report.scanned, s.batch_size, refused_sources=report.changed_sources
        )
        for u in unrepairable:
            log.warning("not repaired: %s p%s o%s: %s", u["source"], u["partition"], u["offset"], u["reason"])
        if not planned:
            return RepairResult(
                [], unrepairable, None, "nothing repairable", 0, 0, 0, time.perf_counter() - t0, report
            )
        log.info(
            "integrity repair: %d batches (%d messages) for %d missing",
            len(planned), sum(b.messages for b in planned), len(targets),
        )  # fmt: skip
        source = RepairSource(open_readers(s), planned)
        run_report = run(s, source=source)
        after = scan(s, report.night)
    return RepairResult(
        planned=planned,
        unrepairable=unrepairable,
        run_id=run_report.run_id,
        status=run_report.status,
        messages=sum(b.messages for b in planned),
        alerts=run_report.alerts,
        dead_letters=run_report.dead_letters,
        seconds=time.perf_counter() - t0,
        after=after,
    )
