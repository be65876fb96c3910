"""``make bench``, lake compaction: what ``broker lake compact`` does to a lake of many small batches, as ratios
measured in one run on this machine.

Simulated ZTF nights (``broker simulate``, no stamps) are run one after the other with small batches, as a
stream cuts them; the lake is copied, the copy compacted, and the same reads are timed on both (best of
``--repeats``, interleaved): ``Lake.read_table`` of the busiest tables, ``dask.dataframe.read_parquet`` of the
whole ``detections`` table, and the integrity scan's read of the ``alerts`` files.

    python -m bench.bench_lake_compaction [--objects 8000] [--nights 3] [--batch-size 100]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask.dataframe as dd

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import run
from alert_broker.storage import EmbeddedPostgres, Lake, SummaryStore, compaction

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
            assert len(fn(lake)) == len(fn(small)) if not name.startswith("dask") else fn(lake) == fn(small)
            print(f"  {name:<40} {before:7.3f} {after:7.3f} {before / after:6.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
