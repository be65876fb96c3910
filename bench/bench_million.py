"""A long simulated night through the pipeline: wall time, throughput over the night and peak memory.

Simulates a ZTF night of about ``--alerts`` alerts (without cutouts: 10^6 alerts with stamps would be ~60 GB) into
a night archive, then runs ``broker run-night`` over it in a subprocess with the core pipeline (decode, raw archive,
correction, magstats, history store, cross-match, lake, PostgreSQL; ``--features`` adds the light-curve features
and classifiers), sampling the memory of the whole process tree (driver, scheduler, workers, PostgreSQL). What it
shows: that a night of LSST-era size goes through in one run with flat memory, and at what rate.

    python -m bench.bench_million [--alerts 1000000] [--workers 2] [--features] [--tar] [--keep DIR]
                                  [--compact-every N]

``--tar`` writes the night as one .tar.gz, which run-night streams in one pass: the run then fits on a disk of
~30 GB free (the tarball ~8 kB per alert; the raw archive's zstd copy of these stamp-free packets ~2 GB per 10^6,
uncompressed it was ~38 GB; the lake and PostgreSQL). Simulating it needs more for a while: the packets are
spooled to disk before they are tarred (~37 GB per 10^6 alerts; ~50 GB for the 1.37 million of a night
calibrated before the probe used the night's own pointings).

The rate over each fifth of the night and each step's cost per alert over each fifth (worker CPU by step, the
driver's wall time by phase) come from the run report, which run-night rewrites every 30 s: a rate that falls
names the step that grows.

With ``--keep DIR`` a night already simulated there is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from alert_broker.pipeline.archive import count_archive
from alert_broker.simulator.config import ZTF
from alert_broker.simulator.population import default_fields
from bench.run_bench import PeakRSS

#: Alerts per simulated object in one ZTF night, the first guess (most simulated objects never alert: measured
#: 0.34-0.35 with 800 pointings); corrected by a small calibration run with the night's own pointings.
ALERTS_PER_OBJECT_GUESS = 0.35


class ProgressSampler:
    """Reads the run report's ``alerts_written`` every few seconds while run-night runs (it rewrites the report
    every 30 s here): the rate over the night, where the night's total hides a rate that falls."""

    def __init__(self, reports: Path, interval: float = 10.0) -> None:
        self.reports, self.interval = reports, interval
        #: (processing seconds, alerts written, the report's cumulative seconds: worker CPU by step, the driver's
        #: wall by phase) at each sample
        self.costs: list[tuple[float, int, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Read the report once; a point is kept when the report moved since the last one."""
        for path in self.reports.glob("run-*.json"):
            try:
                summary = json.loads(path.read_text())["summary"]
            except (OSError, ValueError, KeyError):
                continue
            point = (float(summary.get("processing_seconds") or 0), int(summary.get("alerts_written") or 0))
            if self.costs and point == self.costs[-1][:2]:
                continue
            costs = {f"worker {k}": float(v) for k, v in (summary.get("worker_seconds") or {}).items()}
            costs |= {f"driver {k}": float(v) for k, v in (summary.get("step_seconds") or {}).items()}
            self.costs.append((*point, costs))

    @property
    def samples(self) -> list[tuple[float, int]]:
        """(processing seconds, alerts written) at each sample."""
        return [(t, n) for t, n, _ in self.costs]

    def rates(self, parts: int) -> list[float]:
        """Alerts per second over each of ``parts`` equal spans of the sampled processing time."""
        pts = sorted({(0.0, 0), *self.samples})
        end = pts[-1][0]
        if end <= 0:
            return []
        out = []
        for k in range(parts):
            lo, hi = k * end / parts, (k + 1) * end / parts
            a = max((p for p in pts if p[0] <= lo), default=pts[0])
            b = min((p for p in pts if p[0] >= hi), default=pts[-1])
            out.append(round((b[1] - a[1]) / (b[0] - a[0]), 1) if b[0] > a[0] else 0.0)
        return out

    def ms_per_alert(self, parts: int) -> list[dict[str, float]]:
        """Milliseconds per alert written of each step (worker CPU by step, driver wall by phase) over each of
        ``parts`` equal spans of the sampled processing time: which step's cost grows as the night goes on."""
        pts = sorted([(0.0, 0, {}), *self.costs], key=lambda p: p[0])
        end = pts[-1][0]
        out: list[dict[str, float]] = []
        for k in range(parts if end > 0 else 0):
            lo, hi = k * end / parts, (k + 1) * end / parts
            # (k + 1) * end / parts can round below end: the last point then closes the last span
            a = max((p for p in pts if p[0] <= lo), key=lambda p: p[0], default=pts[0])
            b = min((p for p in pts if p[0] >= hi), key=lambda p: p[0], default=pts[-1])
            n = b[1] - a[1]
            out.append(
                {s: round(1e3 * (v - a[2].get(s, 0.0)) / n, 3) for s, v in sorted(b[2].items())}
                if n > 0
                else {}
            )
        return out

    def __enter__(self) -> ProgressSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _broker() -> str:
    return str(Path(sys.executable).with_name("broker"))


def night_fields(alerts: int) -> int:
    """Pointings of a simulated ZTF night of about ``alerts`` alerts: the simulator's default for the objects that
    give them. The calibration run uses the same: alerts per object depend on how often a night revisits each
    pointing (a 2000-object run on its default 40 pointings gives 0.25, on the 800 of a big night 0.35)."""
    return default_fields(int(alerts / ALERTS_PER_OBJECT_GUESS), ZTF.objects_per_field, ZTF.max_fields)


def simulate(
    dest: Path, objects: int, seed: int, workers: int, tar: bool = False, fields: int | None = None
) -> int:
    """Simulate one ZTF night without stamps into ``dest`` (a folder of packets, or with ``tar`` one .tar.gz) on
    ``fields`` pointings (default: the simulator's); returns the number of alerts written."""
    cmd = [
        _broker(), "simulate", "--survey", "ztf", "--nights", "1", "--objects", str(objects), "--seed", str(seed),
        "--out", str(dest), "--no-stamps", "--workers", str(workers), *(["--tar"] if tar else []),
        *(["--fields", str(fields)] if fields else []),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return count_archive(night_source(dest))


def night_source(night: Path) -> Path:
    """The archive ``broker run-night`` reads: the night's folder or its tarball."""
    tarballs = sorted(night.glob("*.tar.gz"))
    if tarballs:
        return tarballs[0]
    (folder,) = [p for p in night.iterdir() if p.is_dir()] or [night]
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--features", action="store_true", help="also light-curve features and classifiers")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--tar",
        action="store_true",
        help="the night as one .tar.gz (~8 kB per alert against ~38 kB: 10^6 alerts and their outputs fit in "
        "~30 GB of disk)",
    )
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one, removed)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument(
        "--compact-every", type=int, default=None, help="run-night's --compact-every (default: its own)"
    )
    args = ap.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="broker-million-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        night = work / "night"
        kept = night.exists() and (any(night.glob("*.tar.gz")) or any(night.rglob("*.avro")))
        fields = None  # pointings of a night simulated here
        if args.keep and kept:  # a kept night: reused as it is
            alerts = count_archive(night_source(night))
        else:
            fields = night_fields(args.alerts)
            probe = simulate(work / "probe", 2000, args.seed, args.workers, fields=fields)
            per_object = probe / 2000 if probe else ALERTS_PER_OBJECT_GUESS
            shutil.rmtree(work / "probe")
            if night.exists():
                shutil.rmtree(night)
            objects = int(args.alerts / per_object)
            alerts = simulate(night, objects, args.seed, args.workers, tar=args.tar, fields=fields)
        sim_seconds = time.perf_counter() - t
        folder = night_source(night)
        size = (
            folder.stat().st_size
            if folder.is_file()
            else sum(f.stat().st_size for f in night.rglob("*.avro"))
        )
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [
            _broker(), "run-night", "--source", str(folder), "--out", str(out), "--n-workers", str(args.workers),
            "--batch-size", str(args.batch_size), "--no-progress", "--dashboard-address", ":0",
            "--stamp-model", "none", "--no-publish-lake",
        ]  # fmt: skip
        if not args.features:
            cmd += ["--lc-model", "none", "--no-features"]
        if args.compact_every is not None:
            cmd += ["--compact-every", str(args.compact_every)]
        # the run report rewritten every 30 s: alerts written over the night, read by a sampler meanwhile
        cmd += ["--report-every-s", "30"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
        with PeakRSS(interval=1.0) as mem, ProgressSampler(out / "reports") as progress:
            t = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - t
        if done.returncode != 0:
            raise SystemExit(
                f"run-night failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        (report_path,) = (out / "reports").glob("run-*.json")
        summary = json.loads(report_path.read_text())["summary"]
        figures = {
            "alerts": alerts,
            "archive_gb": round(size / 1e9, 2),
            "archive": "tar.gz" if folder.is_file() else "folder",
            "simulate_seconds": round(sim_seconds, 1),
            "pointings": fields,
            "features": args.features,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "wall_seconds": round(wall, 1),
            "alerts_per_second": summary["alerts_per_second"],
            "alerts_written": summary["alerts_written"],
            "dead_letters": summary["dead_letters"],
            "objects": summary["objects"],
            "batches": summary["batches"],
            "batch_seconds_p50": summary["batch_seconds_p50"],
            "batch_seconds_p99": summary["batch_seconds_p99"],
            "peak_rss_total_mb": round(mem.peak_total / 1e6),
            # memory of the process tree at each tenth of the run: flat means nothing grows with the night
            "rss_mb_by_tenth": [
                round(
                    max((r for s, r in mem.samples if k * wall / 10 <= s < (k + 1) * wall / 10), default=0)
                    / 1e6
                )
                for k in range(10)
            ],
            "driver_cpu_ms_per_alert": summary.get("driver_cpu_ms_per_alert"),
            "history_compaction": summary.get("history_compaction"),
            "history_compactions_during_run": summary.get("counts", {}).get("history_compactions", 0),
            "history_rows_rewritten_during_run": summary.get("counts", {}).get("history_rows_rewritten", 0),
            "history_rows_written": summary.get("counts", {}).get("history_rows_written", 0),
            # wall seconds of each periodic compaction (submitted -> seen done, the batches going on meanwhile)
            "compaction_seconds": [
                float(x)
                for x in re.findall(
                    r"history compaction during the run: .* in ([0-9.]+) s", done.stdout + done.stderr
                )
            ],
            # alerts per second over each fifth of the processing (the report's count every 30 s)
            "alerts_per_second_by_fifth": progress.rates(5),
            # each step's cost per alert over each fifth: the one that grows is what makes the rate fall
            "ms_per_alert_by_fifth": progress.ms_per_alert(5),
            "worker_seconds": summary.get("worker_seconds"),
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
