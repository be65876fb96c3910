"""Per-batch and per-run reports: what an operator reads after a night (and what is stored in PostgreSQL)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


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


@dataclass
class RunReport:
    run_id: str
    source: str
    lake: str
    night: str = ""
    status: str = "running"
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    batches: list[BatchReport] = field(default_factory=list)
    startup_seconds: float = 0.0
    processing_started: float | None = None  # perf_counter at the first batch's submission
    processing_ended: float | None = None  # perf_counter at the last batch's commit
    objects: set[str] = field(default_factory=set, repr=False)
    history_compaction: dict = field(default_factory=dict)  # files before/after, seconds
    notes: dict[str, str] = field(default_factory=dict)  # reported once per run (e.g. a filter's first error)

    def add(self, rep: BatchReport) -> None:
        self.objects |= rep.object_ids
        rep.object_ids = set()  # keep the per-batch reports small
        self.batches.append(rep)

    @property
    def messages(self) -> int:
        return sum(b.messages for b in self.batches)

    @property
    def alerts(self) -> int:
        return sum(b.alerts for b in self.batches)

    @property
    def dead_letters(self) -> int:
        return sum(b.dead_letters for b in self.batches)

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
            processing = sum(b.wall for b in self.batches)
        counts: dict[str, int] = {}
        steps: dict[str, float] = {}
        worker: dict[str, float] = {}
        for b in self.batches:
            for k, v in b.counts.items():
                counts[k] = counts.get(k, 0) + v
            for k, v in b.seconds.items():
                steps[k] = steps.get(k, 0.0) + v
            for k, v in b.worker_seconds.items():
                worker[k] = worker.get(k, 0.0) + v
        lat = np.array([b.wall for b in self.batches]) if self.batches else np.zeros(1)
        return {
            "run_id": self.run_id,
            "status": self.status,
            "source": self.source,
            "night": self.night,
            "lake": self.lake,
            "batches": len(self.batches),
            "messages_read": self.messages,
            "alerts_written": self.alerts,
            "dead_letters": self.dead_letters,
            "objects": len(self.objects),
            "counts": counts,
            "wall_seconds": round(wall, 3),
            "startup_seconds": round(self.startup_seconds, 3),
            "processing_seconds": round(processing, 3),
            "alerts_per_second": round(self.alerts / processing, 1) if processing else 0.0,
            "batch_seconds_p50": round(float(np.percentile(lat, 50)), 3),
            "batch_seconds_p99": round(float(np.percentile(lat, 99)), 3),
            "step_seconds": {k: round(v, 3) for k, v in steps.items()},
            "worker_seconds": {k: round(v, 3) for k, v in worker.items()},
            "history_compaction": self.history_compaction,
            "notes": dict(self.notes),
        }

    def render(self) -> str:
        s = self.summary()
        lines = [
            f"Night summary — run {s['run_id']} ({s['status']})",
            f"  source            {s['source']}" + (f"  night {s['night']}" if s["night"] else ""),
            f"  lake              {s['lake']}",
            f"  messages read     {s['messages_read']}",
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
        lines += [
            f"  batches           {s['batches']}  (p50 {s['batch_seconds_p50']} s, p99 {s['batch_seconds_p99']} s)",
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
            "batches": [{k: v for k, v in asdict(b).items() if k != "object_ids"} for b in self.batches],
        }
        path.write_text(json.dumps(payload, indent=2, default=str))
        (folder / f"run-{self.run_id}.md").write_text("```\n" + self.render() + "\n```\n")
        return path
