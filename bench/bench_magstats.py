"""Per-call cost of ``correct``, ``magstats`` and ``object_stats`` at micro-batch sizes, on real ZTF alerts.

    python -m bench.bench_magstats [--repeats 15] [--against REV]

The broker calls these once per sky-region task per micro-batch, on frames of a few thousand detections, so
the figure that matters is milliseconds per call on such frames. Frames: the detections of the first 125 and
500 alerts of ``ztf/fink_sample_1166`` (decoded with ``pipeline.decode``), 5000 alerts made of that sample
repeated with the copies' ``oid`` renamed (so they are distinct objects), and a synthetic 100k-row frame for
rows/s. ``--against REV`` also times ``features/{correction,magstats,objects,grouping}.py`` as they are at git
revision ``REV`` (read with ``git show``, imported under another name) in the same run, and checks that both
give the same frames. Medians of ``--repeats`` calls; the machine is shared and noisy, so only figures from one
run compare.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from alert_broker.features.synthetic import synthetic_detections
from alert_broker.pipeline.config import SHARED_ZTF
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import RawMessage

MODULES = ("grouping", "correction", "magstats", "objects")


def real_frames(sizes: list[int]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Raw (uncorrected) detections and non-detections of the first ``n`` alerts, for each ``n``."""
    files = sorted(glob.glob(str(SHARED_ZTF / "*.avro")))
    if not files:
        sys.exit(f"no alerts under {SHARED_ZTF}")
    payloads = [Path(f).read_bytes() for f in files]
    frames = {}
    for n in sizes:
        dets, nds = [], []
        for copy, start in enumerate(range(0, n, len(payloads))):
            chunk = payloads[: min(len(payloads), n - start)]
            msgs = [RawMessage("bench", 0, i, p) for i, p in enumerate(chunk)]
            tables, _, _ = decode_batch(msgs, f"bench{copy}")
            suffix = f"_{copy}" if copy else ""
            dets.append(tables.detections.assign(oid=tables.detections["oid"] + suffix))
            nds.append(tables.non_detections.assign(oid=tables.non_detections["oid"] + suffix))
        frames[f"{n} alerts"] = (
            pd.concat(dets, ignore_index=True),
            pd.concat(nds, ignore_index=True),
        )
    return frames


def load_revision(rev: str) -> dict[str, ModuleType]:
    """The features modules of git revision ``rev`` as a separate package ``features_at_rev``."""
    pkg = Path(tempfile.mkdtemp(prefix="bench_magstats_")) / "features_at_rev"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in MODULES:
        shown = subprocess.run(
            ["git", "show", f"{rev}:features/{name}.py"], capture_output=True, text=True, check=False
        )
        if shown.returncode == 0:
            text = shown.stdout.replace("from features.", "from features_at_rev.")
            (pkg / f"{name}.py").write_text(text)
    sys.path.insert(0, str(pkg.parent))
    return {n: importlib.import_module(f"features_at_rev.{n}") for n in ("correction", "magstats", "objects")}


def current() -> dict[str, ModuleType]:
    return {n: importlib.import_module(f"features.{n}") for n in ("correction", "magstats", "objects")}


def median_ms(fn, repeats: int) -> float:
    fn()  # warm caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def time_impl(mods: dict[str, ModuleType], det: pd.DataFrame, nd: pd.DataFrame, repeats: int) -> dict:
    correct, magstats, object_stats = (
        mods["correction"].correct,
        mods["magstats"].magstats,
        mods["objects"].object_stats,
    )
    corrected = correct(det)
    ms = magstats(corrected, nd)
    objs = object_stats(corrected, ms)
    return {
        "correct": median_ms(lambda: correct(det), repeats),
        "magstats": median_ms(lambda: magstats(corrected, nd), repeats),
        "object_stats": median_ms(lambda: object_stats(corrected, ms), repeats),
        "frames": (corrected, ms, objs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sizes", type=int, nargs="+", default=[125, 500, 5000])
    parser.add_argument("--synthetic-rows", type=int, default=100_000)
    parser.add_argument(
        "--against", metavar="REV", help="also time the features modules of this git revision"
    )
    args = parser.parse_args()

    impls = {"now": current()}
    if args.against:
        impls[args.against] = load_revision(args.against)
    frames = real_frames(args.sizes)
    n_syn = args.synthetic_rows
    frames[f"synthetic {n_syn:,} rows"] = synthetic_detections(n_syn, max(1, n_syn // 20))

    print(
        f"{'frame':>24} {'rows':>7} {'objects':>7} {'impl':>8} {'correct':>9} {'magstats':>9} {'objects':>9}"
    )
    for name, (det, nd) in frames.items():
        repeats = args.repeats if len(det) < 50_000 else max(3, args.repeats // 5)
        results = {label: time_impl(mods, det, nd, repeats) for label, mods in impls.items()}
        for label, r in results.items():
            print(
                f"{name:>24} {len(det):>7} {det['oid'].nunique():>7} {label:>8} {r['correct']:>7.2f}ms"
                f" {r['magstats']:>7.2f}ms {r['object_stats']:>7.2f}ms"
            )
        if len(results) == 2:
            (_, a), (_, b) = results.items()
            for x, y in zip(a["frames"], b["frames"], strict=True):
                pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-12, atol=0)
        if name.startswith("synthetic"):
            r = results["now"]
            total = (r["correct"] + r["magstats"] + r["object_stats"]) / 1e3
            print(f"{'':>24} correct + magstats + object_stats: {len(det) / total:,.0f} rows/s")
    if len(impls) == 2:
        print(f"outputs of 'now' and {args.against!r} are equal (rtol 1e-12) on every frame")


if __name__ == "__main__":
    main()
