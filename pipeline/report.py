"""Per-batch and per-run reports: what an operator reads after a night (and what is stored in PostgreSQL)."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class BatchReport:
    batch_id: str
    messages: int
    alerts: int = 0
    dead_letters: int = 0
    regions: int = 0
    superseded_files: int = 0  # lake files of earlier, overlapping batches removed first
    wall: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # driver wall time per step
    worker_seconds: dict[str, float] = field(default_factory=dict)  # summed over worker tasks
    object_ids: set[str] = field(default_factory=set, repr=False)


#: Batch reports kept whole (the most recent ones): a run that goes on for days keeps aggregates, not every batch.
KEEP_BATCHES = 200
#: Distinct object ids counted exactly up to this many; beyond, a HyperLogLog estimate (about 1% error).
EXACT_OBJECTS = 200_000


class LatencyHistogram:
    """Counts of seconds in fixed log-spaced bins (1 ms to ~3 h): bounded memory, percentiles to ~2.5%."""

    EDGES = np.concatenate([[0.0], np.logspace(-3, 4, 351)])

    def __init__(self) -> None:
        self.counts = np.zeros(len(self.EDGES), dtype=np.int64)
        self.n = 0
        self.max = 0.0

    def add(self, values) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            return
        idx = np.clip(np.searchsorted(self.EDGES, v, side="right") - 1, 0, len(self.EDGES) - 1)
        np.add.at(self.counts, idx, 1)
        self.n += int(v.size)
        self.max = max(self.max, float(v.max()))

    def quantile(self, q: float) -> float:
        if self.n == 0:
            return 0.0
        target = q * self.n
        i = int(np.searchsorted(np.cumsum(self.counts), target, side="left"))
        i = min(i, len(self.EDGES) - 2)
        low, high = self.EDGES[i], self.EDGES[i + 1]
        mid = np.sqrt(low * high) if low > 0 else high / 2  # the bin's geometric middle
        return float(min(mid, self.max))


class DistinctCounter:
    """Distinct strings: exact up to ``EXACT_OBJECTS``, then a HyperLogLog (2**14 registers)."""

    P = 14

    def __init__(self) -> None:
        self.exact: set[str] | None = set()
        self.registers = np.zeros(2**self.P, dtype=np.uint8)

    def update(self, values) -> None:
        values = list(values)
        if not values:
            return
        h = pd.util.hash_array(np.asarray(values, dtype=object)).astype(np.uint64)
        index = (h >> np.uint64(64 - self.P)).astype(np.int64)
        rest = (h << np.uint64(self.P)) | np.uint64(1 << (self.P - 1))
        rank = np.zeros(len(h), dtype=np.uint8)
        bits = rest.copy()
        for r in range(1, 64 - self.P + 2):  # leading zeros + 1, vectorised
            top = (bits >> np.uint64(63)) == 1
            rank = np.where((rank == 0) & top, r, rank)
            bits = bits << np.uint64(1)
        np.maximum.at(self.registers, index, rank.astype(np.uint8))
        if self.exact is not None:
            self.exact.update(values)
            if len(self.exact) > EXACT_OBJECTS:
                self.exact = None

    def __len__(self) -> int:
        if self.exact is not None:
            return len(self.exact)
        m = len(self.registers)
        estimate = (
            0.7213 / (1 + 1.079 / m) * m * m / np.sum(np.power(2.0, -self.registers.astype(np.float64)))
        )
        zeros = int(np.sum(self.registers == 0))
        if estimate <= 2.5 * m and zeros:
            estimate = m * np.log(m / zeros)
        return int(round(estimate))


@dataclass
class RunReport:
    run_id: str
    source: str
    lake: str
    night: str = ""
    status: str = "running"
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    batches: deque = field(default_factory=lambda: deque(maxlen=KEEP_BATCHES))  # the most recent ones
    startup_seconds: float = 0.0
    processing_started: float | None = None  # perf_counter at the first batch's submission
    processing_ended: float | None = None  # perf_counter at the last batch's commit
    driver_cpu_started: float | None = (
        None  # CPU seconds of the driver process (and a LocalCluster's scheduler)
    )
    driver_cpu_ended: float | None = None
    history_compaction: dict = field(default_factory=dict)  # files before/after, seconds
    lake_compaction: dict = field(default_factory=dict)  # --compact-lake: folders, files, seconds
    notes: dict[str, str] = field(default_factory=dict)  # reported once per run (e.g. a filter's first error)
    # bounded aggregates over every batch
    n_batches: int = 0
    total_messages: int = 0
    total_alerts: int = 0
    total_dead_letters: int = 0
    total_wall: float = 0.0
    resumed_skipped: int = 0  # packets an earlier run had committed, skipped by ``--resume``
    counts: dict[str, int] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    worker_steps: dict[str, float] = field(default_factory=dict)
    batch_latency: LatencyHistogram = field(default_factory=LatencyHistogram, repr=False)
    alert_latency: LatencyHistogram = field(default_factory=LatencyHistogram, repr=False)
    objects: DistinctCounter = field(default_factory=DistinctCounter, repr=False)

    def add(self, rep: BatchReport, alert_latencies=None) -> None:
        self.objects.update(rep.object_ids)
        rep.object_ids = set()  # keep the per-batch reports small
        self.batches.append(rep)
        self.n_batches += 1
        self.total_messages += rep.messages
        self.total_alerts += rep.alerts
        self.total_dead_letters += rep.dead_letters
        self.total_wall += rep.wall
        for k, v in rep.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        for k, v in rep.seconds.items():
            self.steps[k] = self.steps.get(k, 0.0) + v
        for k, v in rep.worker_seconds.items():
            self.worker_steps[k] = self.worker_steps.get(k, 0.0) + v
        self.batch_latency.add([rep.wall])
        if alert_latencies is not None:
            self.alert_latency.add(alert_latencies)

    @property
    def messages(self) -> int:
        return self.total_messages

    @property
    def alerts(self) -> int:
        return self.total_alerts

    @property
    def dead_letters(self) -> int:
        return self.total_dead_letters

    def finish(self, status: str) -> None:
        self.status = status
        self.finished_at = time.time()

    def summary(self) -> dict:
        wall = (self.finished_at or time.time()) - self.started_at
        # Batches overlap (the next one decodes while the previous finishes): throughput is alerts over the
        # elapsed time from the first submission to the last commit, not over the sum of batch latencies.
        if self.processing_started is not None and self.processing_ended is not None:
            processing = self.processing_ended - self.processing_started
        else:
            processing = self.total_wall
        out = {
            "run_id": self.run_id,
            "status": self.status,
            "source": self.source,
            "night": self.night,
            "lake": self.lake,
            "batches": self.n_batches,
            "messages_read": self.messages,
            "resumed_skipped": self.resumed_skipped,
            "alerts_written": self.alerts,
            "dead_letters": self.dead_letters,
            "objects": len(self.objects),
            "counts": dict(self.counts),
            "wall_seconds": round(wall, 3),
            "startup_seconds": round(self.startup_seconds, 3),
            "processing_seconds": round(processing, 3),
            "alerts_per_second": round(self.alerts / processing, 1) if processing else 0.0,
            "batch_seconds_p50": round(self.batch_latency.quantile(0.5), 3),
            "batch_seconds_p99": round(self.batch_latency.quantile(0.99), 3),
            "step_seconds": {k: round(v, 3) for k, v in self.steps.items()},
            "worker_seconds": {k: round(v, 3) for k, v in self.worker_steps.items()},
            "history_compaction": self.history_compaction,
            "lake_compaction": self.lake_compaction,
            "notes": dict(self.notes),
        }
        if self.driver_cpu_started is not None and self.driver_cpu_ended is not None and self.alerts:
            cpu = self.driver_cpu_ended - self.driver_cpu_started
            per_alert = cpu / self.alerts
            out["driver_cpu_seconds"] = round(cpu, 3)
            out["driver_cpu_ms_per_alert"] = round(1000 * per_alert, 4)
            # Amdahl: the alerts/s one driver (and its scheduler) could sustain on one core of its own
            out["driver_ceiling_alerts_per_second"] = round(1 / per_alert, 1) if per_alert > 0 else None
        if self.alert_latency.n:
            out["alert_latency_seconds"] = {
                "p50": round(self.alert_latency.quantile(0.5), 3),
                "p99": round(self.alert_latency.quantile(0.99), 3),
                "max": round(self.alert_latency.max, 3),
                "n": self.alert_latency.n,
            }
        return out

    def render(self) -> str:
        s = self.summary()
        lines = [
            f"Night summary — run {s['run_id']} ({s['status']})",
            f"  source            {s['source']}" + (f"  night {s['night']}" if s["night"] else ""),
            f"  lake              {s['lake']}",
            f"  messages read     {s['messages_read']}"
            + (
                f" (resumed: {s['resumed_skipped']} committed earlier, skipped)"
                if s["resumed_skipped"]
                else ""
            ),
            f"  alerts written    {s['alerts_written']}",
            f"  dead letters      {s['dead_letters']}",
        ]
        lines.append(f"  objects           {s['objects']} distinct")
        for k in (
            "detections",
            "non_detections",
            "forced_photometry",
            "magstats",
            "features",
            "flux_features",
            "xmatch",
        ):
            if k in s["counts"]:
                lines.append(f"  {k:<17} {s['counts'][k]} rows written")
        if "history_rows_read" in s["counts"]:
            lines.append(
                f"  history           {s['counts']['history_rows_read']} stored rows merged, "
                f"{s['counts'].get('history_rows_written', 0)} new rows stored"
            )
        skipped = {
            k[len("stamp_skipped_") :]: v for k, v in s["counts"].items() if k.startswith("stamp_skipped_")
        }
        if skipped:
            lines.append(
                "  stamp classifier  skipped "
                + ", ".join(f"{n} {survey.upper()} first alerts" for survey, n in sorted(skipped.items()))
                + " (no stamp model trained on their cutouts)"
            )
        published = {k[len("published_") :]: v for k, v in s["counts"].items() if k.startswith("published_")}
        if published:
            lines.append(
                "  output stream     "
                + ", ".join(f"{stream} {n}" for stream, n in sorted(published.items()))
                + " messages"
            )
        filters = sorted({k.split(":", 2)[1] for k in s["counts"] if k.startswith("filter:")})
        for name in filters:
            hits = s["counts"].get(f"filter:{name}:matches", 0)
            errors = s["counts"].get(f"filter:{name}:errors", 0)
            lines.append(f"  filter {name:<10} {hits} matches" + (f", {errors} errors" if errors else ""))
        for key, note in sorted(s.get("notes", {}).items()):
            lines.append(f"  note              {key}: {note}")
        hc = s.get("history_compaction") or {}
        if hc.get("deltas"):
            lines.append(
                f"  compaction        {hc['deltas']} history deltas folded into {hc.get('pixels', 0)} pixel "
                f"files in {hc.get('seconds', 0)} s"
            )
        lc = s.get("lake_compaction") or {}
        if lc.get("folders"):
            lines.append(
                f"  lake compaction   {lc['files_merged']} batch files folded into {lc['files_written']} "
                f"in {lc.get('seconds', 0)} s"
            )
        lines += [
            f"  batches           {s['batches']}  (p50 {s['batch_seconds_p50']} s, p99 {s['batch_seconds_p99']} s)",
            *(
                [
                    f"  alert latency     p50 {s['alert_latency_seconds']['p50']} s, p99 "
                    f"{s['alert_latency_seconds']['p99']} s, max {s['alert_latency_seconds']['max']} s "
                    "(Kafka timestamp to commit)"
                ]
                if "alert_latency_seconds" in s
                else []
            ),
            *(
                [
                    f"  driver CPU        {s['driver_cpu_ms_per_alert']} ms/alert (driver + scheduler): one driver "
                    f"tops out near {s['driver_ceiling_alerts_per_second']} alerts/s"
                ]
                if s.get("driver_ceiling_alerts_per_second")
                else []
            ),
            f"  throughput        {s['alerts_per_second']} alerts/s over {s['processing_seconds']} s of "
            f"processing (start-up {s['startup_seconds']} s)",
            "  time per step (driver wall, s): "
            + ", ".join(f"{k} {v}" for k, v in s["step_seconds"].items()),
            "  time per step (worker CPU, s):  "
            + ", ".join(f"{k} {v}" for k, v in s["worker_seconds"].items()),
        ]
        return "\n".join(lines)

    def write(self, folder: Path) -> Path:
        """Write ``run-<id>.json`` (summary and every batch) and ``run-<id>.md`` (the printed summary)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"run-{self.run_id}.json"
        payload = {
            "summary": self.summary(),
            "recent_batches": [
                {k: v for k, v in asdict(b).items() if k != "object_ids"} for b in self.batches
            ],
        }
        path.write_text(json.dumps(payload, indent=2, default=str))
        (folder / f"run-{self.run_id}.md").write_text("```\n" + self.render() + "\n```\n")
        return path
