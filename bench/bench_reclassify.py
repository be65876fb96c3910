"""Re-scoring stored objects (``broker reclassify``) on the embedded PostgreSQL: objects per second, and how much
of the time the model itself takes.

    python -m bench.bench_reclassify [--objects 100000] [--model lc_hierarchical]

The ``feature`` table is filled with ``--objects`` vectors: the feature rows of a small simulated training set
(seed 1001, held out from the shipped models' training), repeated under new object ids and written as the pipeline
writes them (``feature_summary``). Then ``reclassify`` re-scores them all with the shipped model (a first version:
nothing to compare with), and again with another version of it (the comparison with the first one included).
``model only`` is ``classify`` alone over the same vectors in the same chunks, already in memory: the ceiling of
what re-scoring could reach; the rest is reading the JSON vectors, the comparison and the upserts. Wall-clock
seconds in one run, comparable only within it (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd

from alert_broker.classifiers import load
from alert_broker.classifiers.registry import versions
from alert_broker.classifiers.training import build_training_set
from alert_broker.models import shipped_models
from alert_broker.pipeline.reclassify import CHUNK, feature_frame, reclassify
from alert_broker.pipeline.resources import ModelSpec
from alert_broker.pipeline.sinks import feature_summary
from alert_broker.storage import EmbeddedPostgres, SummaryStore


def _fill(store: SummaryStore, n: int, feature_version: str) -> None:
    feats, _ = build_training_set(n_objects=3000, nights=20, seed=1001, feature_version=feature_version)
    base = feats.reset_index()
    reps = int(np.ceil(n / len(base)))
    rows = pd.concat([base] * reps, ignore_index=True).iloc[:n]
    rows["oid"] = [f"ZTFbench{i:08d}" for i in range(n)]
    rows["FEATURE_VERSION"] = feature_version
    rows["lastmjd"], rows["night"] = 60000.0, 20230225
    for i in range(0, n, CHUNK):
        store.upsert("feature", feature_summary(rows.iloc[i : i + CHUNK]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--model", default="lc_hierarchical")
    args = ap.parse_args(argv)
    root = str(shipped_models())
    known = versions(args.model, root=root)
    latest, other = known[-1], known[-2]
    spec = ModelSpec(root, args.model, latest)
    model = load(args.model, latest, root=root)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(f"{tmp}/pg") as pg:
        store = SummaryStore(pg.dsn)
        store.ensure_schema()
        t = time.perf_counter()
        _fill(store, args.objects, model.metadata["feature_version"])
        print(f"{args.objects} stored vectors written in {time.perf_counter() - t:.1f} s")

        first = reclassify(store, spec)
        second = reclassify(store, ModelSpec(root, args.model, other))

        frames = []
        after = ""
        while True:  # the same chunks, read once, outside the timing
            rows = store.fetch_df(
                "SELECT oid, features FROM feature WHERE oid > %s ORDER BY oid LIMIT %s", (after, CHUNK)
            )
            if rows.empty:
                break
            frames.append(feature_frame(rows))
            after = str(rows["oid"].iloc[-1])
        t = time.perf_counter()
        for x in frames:
            model.classify(x)
        alone = time.perf_counter() - t
        store.close()
    n = args.objects
    print(f"re-scoring {n} stored objects (chunks of {CHUNK}), objects per wall second:")
    print(
        f"  {args.model} {latest} (first version)           {n / first.seconds:>10,.0f}  ({first.seconds:.1f} s)"
    )
    print(
        f"  {args.model} {other} (compared with {latest})    {n / second.seconds:>10,.0f}  ({second.seconds:.1f} s,"
        f" {second.changed} objects change class)"
    )
    print(f"  model only (classify, in memory)       {n / alone:>10,.0f}  ({alone:.1f} s)")
    print(f"  model share of a re-scoring: {alone / first.seconds:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
