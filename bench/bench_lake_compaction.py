"""``make bench``, lake compaction: what ``broker lake compact`` does to a lake of many small batches, as ratios
measured in one run on this machine.

Simulated ZTF nights (``broker simulate``, no stamps) are run one after the other with small batches, as a
stream cuts them; the lake is copied, the copy compacted, and the same reads are timed on both (best of
``--repeats``, interleaved): ``Lake.read_table`` of the busiest tables, ``dask.dataframe.read_parquet`` of the
whole ``detections`` table, and the integrity scan's read of the ``alerts`` files. Then the last night is run
again over the compacted copy, as a re-processing would: each compacted file is split once as its first batch
retires (``compaction.split_for_retirement``); the rows the splits wrote are counted and set beside what
rewriting each file without each retired batch would have written (from the files' own per-batch row counts).

    python -m bench.bench_lake_compaction [--objects 8000] [--nights 3] [--batch-size 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import dask.dataframe as dd
import pyarrow.parquet as pq

from alert_broker.pipeline.archive import archive_source
from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import run
from alert_broker.storage import NATURAL_KEYS, EmbeddedPostgres, Lake, SummaryStore, compaction, manifest

TABLES = ("alerts", "detections", "non_detections", "objects", "magstats", "features")


def _files(lake: Lake) -> tuple[int, int]:
    paths = [p for t in TABLES for p in lake.list_files(t)]
    return len(paths), sum(lake.fs.size(p) for p in paths)


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=8000)
    ap.add_argument("--nights", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="broker-bench-compaction-"))
    try:
        sim = tmp / "sim"
        subprocess.run(
            [str(Path(sys.executable).parent / "broker"), "simulate", "--objects", str(args.objects),
             "--nights", str(args.nights), "--no-stamps", "--out", str(sim)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        with EmbeddedPostgres(str(tmp / "pg")) as pg:
            alerts = 0
            for night in sorted(sim.glob("night=*")):
                settings = load_settings(
                    env={},
                    overrides=dict(
                        source=str(night), out=str(tmp / "out"), pg_dsn=pg.dsn, batch_size=args.batch_size,
                        n_workers=2, threads_per_worker=1, dashboard_address=":0", progress=False,
                        publish_lake=False, lc_model="none", stamp_model="none", batch_timeout_s=1,
                    ),
                )  # fmt: skip
                alerts += run(settings).alerts
            lake = Lake(settings.lake)
            copy = tmp / "compacted-lake"
            shutil.copytree(settings.lake, copy)
            # the copy's manifest: the same database, its paths rewritten to the copy
            store = SummaryStore(pg.dsn)
            store.conn.execute(
                "UPDATE batch_manifest SET files = replace(files::text, %s, %s)::jsonb",
                (settings.lake, str(copy)),
            )
            small = Lake(str(copy))
            files_before, bytes_before = _files(small)
            report = compaction.compact(store, small)
            files_after, bytes_after = _files(small)
            store.close()
            print(f"{alerts} alerts in {args.nights} nights, batches of {args.batch_size}")
            print(
                f"files of {', '.join(TABLES)}: {files_before} -> {files_after} "
                f"({files_before / max(files_after, 1):.1f}x fewer); bytes {bytes_before / 1e6:.1f} MB -> "
                f"{bytes_after / 1e6:.1f} MB ({bytes_before / max(bytes_after, 1):.2f}x smaller)"
            )
            print(
                f"compaction: {report.files_merged} files -> {report.files_written} in {report.seconds:.2f} s "
                f"({report.files_merged / max(report.seconds, 1e-9):.0f} files/s, "
                f"{report.rows / max(report.seconds, 1e-9):.0f} rows/s)"
            )
            print(f"reads (best of {args.repeats}, seconds): per-batch files / compacted / ratio")
            reads = {
                f"Lake.read_table({t})": (lambda lk, t=t: lk.read_table(t))
                for t in ("alerts", "detections", "objects")
            }
            reads["dask read_parquet(detections) rows"] = lambda lk: len(
                dd.read_parquet(lk.table_url("detections"))
            )
            for name, fn in reads.items():
                before = _best(lambda fn=fn: fn(lake), args.repeats)
                after = _best(lambda fn=fn: fn(small), args.repeats)
                assert (
                    len(fn(lake)) == len(fn(small)) if not name.startswith("dask") else fn(lake) == fn(small)
                )
                print(f"  {name:<40} {before:7.3f} {after:7.3f} {before / after:6.1f}x")
            _rerun_last_night(sorted(sim.glob("night=*"))[-1], settings, small)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _rewrite_cost(lake: Lake, retiring: list[str]) -> tuple[int, int, int]:
    """(compacted files holding rows of the ``retiring`` batches, their rows, the rows that rewriting each file
    without each of those batches in turn would write), the batches retiring in the given order."""
    rank = {b: k for k, b in enumerate(retiring)}
    files = rows = rewrite = 0
    for t in NATURAL_KEYS:
        for p in lake.list_files(t) if t not in compaction.EXCLUDED_TABLES else []:
            if not compaction.is_compacted(p):
                continue
            counts = Counter(pq.read_table(p, columns=["batch_id"]).column("batch_id").to_pylist())
            mine = sorted((b for b in counts if b in rank), key=rank.__getitem__)
            if not mine:
                continue
            left = sum(counts.values())
            files, rows = files + 1, rows + left
            for b in mine:
                left -= counts[b]
                rewrite += left
    return files, rows, rewrite


def _rerun_last_night(night_dir: Path, settings, compacted: Lake) -> None:
    """The night again over the compacted lake: its batches retire in turn, each compacted file split once."""
    with SummaryStore(settings.pg_dsn) as store:
        retiring = manifest.batches(store, archive_source(night_dir)).sort_values("first_offset")
    files, rows, rewrite = _rewrite_cost(compacted, retiring["batch_id"].tolist())
    split_rows = [0]
    real = Lake.write_whole

    def counting(self, table, fs_path, **options):
        if compaction.SPLIT_MARK in os.path.basename(fs_path):
            split_rows[0] += table.num_rows
        return real(self, table, fs_path, **options)

    rerun = replace(settings, source=str(night_dir), lake_url=compacted.root)
    Lake.write_whole = counting  # the driver's supersede splits in this process
    try:
        t = time.perf_counter()
        alerts = run(rerun).alerts
        seconds = time.perf_counter() - t
    finally:
        Lake.write_whole = real
    print(
        f"re-run of {night_dir.name} over the compacted lake ({alerts} alerts, {len(retiring)} batches retired, "
        f"{seconds:.1f} s): {files} compacted files ({rows} rows) held their rows, {split_rows[0]} rows written "
        f"by splitting each once; rewriting a file without each retired batch in turn would have written "
        f"{rewrite} ({rewrite / max(split_rows[0], 1):.1f}x more)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
