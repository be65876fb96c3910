"""Re-scoring stored objects (``broker reclassify``) on the embedded PostgreSQL: objects per second, and how much
of the time the model itself takes.

    python -m bench.bench_reclassify [--objects 100000] [--model lc_hierarchical] [--stamp-alerts 6000]

The ``feature`` table is filled with ``--objects`` vectors: the feature rows of a small simulated training set
(seed 1001, held out from the shipped models' training), repeated under new object ids and written as the pipeline
writes them (``feature_summary``). Then ``reclassify`` re-scores them all with the shipped model (a first version:
nothing to compare with) on one connection, again with the next chunk read ahead on a second connection (the
default), and with another version of it (the comparison with the first one included).
``model only`` is ``classify`` alone over the same vectors in the same chunks, already in memory: the ceiling of
what re-scoring could reach; the rest is reading the JSON vectors, the comparison and the upserts. Wall-clock
seconds in one run, comparable only within it (the machine is shared and noisy).

The stamp part (``--stamp-alerts``, 0 to skip): the real ZTF packets of ``../shared/data`` repeated under new
object ids and candids (re-encoded with their own schema) fill a raw archive, each object's alert and a previous
stamp score are put in PostgreSQL, and ``reclassify_stamps`` re-scores them all in the driver's process and on a
LocalCluster of two single-thread workers (reading, decoding and the CNN on the workers).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd

from alert_broker.classifiers import load
from alert_broker.classifiers.registry import versions
from alert_broker.classifiers.training import build_training_set
from alert_broker.models import shipped_models
from alert_broker.pipeline.config import SHARED_ZTF
from alert_broker.pipeline.driver import close_local_cluster
from alert_broker.pipeline.reclassify import CHUNK, feature_frame, reclassify, reclassify_stamps
from alert_broker.pipeline.resources import ModelSpec, resources
from alert_broker.pipeline.sinks import feature_summary
from alert_broker.storage import EmbeddedPostgres, Lake, RawArchive, SummaryStore

#: Night the repeated packets are archived under (one raw-archive partition).
STAMP_NIGHT = 20230225


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


def _oid(i: int) -> str:
    """A ZTF-shaped object id (ZTF + 2 digits + 7 letters) for repeat ``i``."""
    letters = []
    for _ in range(7):
        i, r = divmod(i, 26)
        letters.append(chr(ord("a") + r))
    return "ZTF26" + "".join(reversed(letters))


def _fill_stamps(store: SummaryStore, lake: Lake, n: int, source: Path = SHARED_ZTF) -> None:
    """``n`` first alerts in the raw archive and PostgreSQL: the real packets under new ids, one object each."""
    real = []
    for path in sorted(source.glob("*.avro")):
        with path.open("rb") as fh:
            reader = fastavro.reader(fh)
            real.append((reader.writer_schema, next(reader)))
    raw, alerts = [], []
    for i in range(n):
        schema, record = real[i % len(real)]
        candid = 3_000_000_000_000_000_000 + i
        record = dict(
            record, objectId=_oid(i), candid=candid, candidate=dict(record["candidate"], candid=candid)
        )
        buf = io.BytesIO()
        fastavro.writer(buf, schema, [record])
        raw.append((candid, record["objectId"], STAMP_NIGHT, buf.getvalue()))
        alerts.append((candid, record["objectId"], "ztf", record["candidate"]["jd"] - 2400000.5, STAMP_NIGHT))
    raw_df = pd.DataFrame(raw, columns=["candid", "oid", "night", "payload"])
    alert_df = pd.DataFrame(alerts, columns=["candid", "oid", "survey", "mjd", "night"])
    for i in range(0, n, 2000):
        (path,) = RawArchive(lake).write(raw_df.iloc[i : i + 2000], f"bench-{i:08d}")
        store.upsert("alert", alert_df.iloc[i : i + 2000].assign(raw_path=path))
    store.upsert(
        "probability",
        pd.DataFrame(
            {"oid": alert_df["oid"], "classifier_name": "stamp_classifier", "classifier_version": "0.0.1",
             "class_name": "SN", "probability": 1.0, "ranking": 1}
        ),
    )  # fmt: skip


def _load_stamp_model(spec: ModelSpec) -> None:
    resources().stamp_model(spec)


def _stamps(store: SummaryStore, lake: Lake, n: int, root: str) -> None:
    from distributed import Client, LocalCluster  # lazy: a cluster only for this part of the bench

    latest = versions("stamp_classifier", root=root)[-1]
    spec = ModelSpec(root, "stamp_classifier", latest)
    t = time.perf_counter()
    _fill_stamps(store, lake, n)
    print(f"{n} first alerts archived in {time.perf_counter() - t:.1f} s")
    here = reclassify_stamps(store, lake, spec)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    try:
        with Client(cluster) as client:
            t = time.perf_counter()
            client.run(
                _load_stamp_model, spec
            )  # each worker's model load (once per process), outside the timing
            load = time.perf_counter() - t
            spread = reclassify_stamps(store, lake, spec, client=client)
    finally:
        close_local_cluster(cluster)
    print(f"re-scoring {n} first alerts with stamp_classifier {latest}, alerts per wall second:")
    print(f"  in the driver's process                {n / here.seconds:>10,.0f}  ({here.seconds:.1f} s)")
    print(f"  on 2 workers (1 thread each)           {n / spread.seconds:>10,.0f}  ({spread.seconds:.1f} s)")
    print(
        f"  ratio workers / driver: {here.seconds / spread.seconds:.2f} (the workers' model load, {load:.1f} s, apart)"
    )
    assert here.objects == spread.objects == n, (here.objects, spread.objects)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--model", default="lc_hierarchical")
    ap.add_argument(
        "--stamp-alerts", type=int, default=6000, help="first alerts re-scored by the CNN (0: skip)"
    )
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

        def fresh() -> None:  # each timing inserts its rows, none updates the previous run's
            for table in ("probability", "outlier_score"):
                store.conn.execute(
                    f"DELETE FROM {table} WHERE classifier_name LIKE %s AND classifier_version = %s",
                    (f"{args.model}%", latest),
                )

        one_connection = reclassify(store, spec, read_ahead=0)
        fresh()
        first = reclassify(store, spec)
        fresh()
        again = reclassify(store, spec, read_ahead=0)
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
    plain = (one_connection.seconds + again.seconds) / 2
    print(
        f"  {args.model} {latest}, one connection          {n / plain:>10,.0f}"
        f"  ({one_connection.seconds:.1f} s, {again.seconds:.1f} s: before and after the next line)"
    )
    print(
        f"  {args.model} {latest}, next chunk read ahead   {n / first.seconds:>10,.0f}  ({first.seconds:.1f} s;"
        f" ratio {plain / first.seconds:.2f})"
    )
    print(
        f"  {args.model} {other} (compared with {latest})    {n / second.seconds:>10,.0f}  ({second.seconds:.1f} s,"
        f" {second.changed} objects change class)"
    )
    print(f"  model only (classify, in memory)       {n / alone:>10,.0f}  ({alone:.1f} s)")
    print(f"  model share of a re-scoring: {alone / first.seconds:.2f}")
    if args.stamp_alerts > 0 and SHARED_ZTF.is_dir():
        with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(f"{tmp}/pg") as pg:
            store = SummaryStore(pg.dsn)
            store.ensure_schema()
            try:
                _stamps(store, Lake(f"{tmp}/lake"), args.stamp_alerts, root)
            finally:
                store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
