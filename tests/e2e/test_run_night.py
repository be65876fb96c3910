"""End to end: real alerts through a real Dask LocalCluster into a real lake and a real PostgreSQL.

Sources: a night archive (folder and .tar.gz) and a real Kafka-protocol broker (tansu). Sinks: local folder and
S3 over HTTP (moto server). Every candid must land exactly once, re-runs and replays must not double a row,
offsets must be committed only after the sinks.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition

from alert_broker.features.lightcurve import FEATURE_VERSIONS
from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import Broker, RunModels, run
from alert_broker.pipeline.kafka import ensure_topic, produce
from alert_broker.storage import Lake, SummaryStore

pytestmark = pytest.mark.e2e

N_GOOD = 120


@pytest.fixture(scope="module")
def night_dir(tmp_path_factory, shared_data) -> Path:
    """A small night: real alerts from two samples (one with snappy blocks), an HTML page, two corrupt files."""
    d = tmp_path_factory.mktemp("night")
    fink = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:100]
    snappy = sorted((shared_data / "ztf" / "alerce_samples_snappy").glob("*.avro"))[:20]
    for f in fink + snappy:
        shutil.copy(f, d / f.name)
    shutil.copy(shared_data / "ztf" / "object_sequences" / "ZTF17aaaedmd" / "1217406343915015013.avro", d)
    bad = sorted((shared_data / "ztf" / "bad" / "ampel_old_or_corrupt").glob("1215*.avro"))
    corrupt = []
    for f in bad:
        try:
            import fastavro

            with open(f, "rb") as fh:
                list(fastavro.reader(fh))
        except Exception:
            corrupt.append(f)
    for f in corrupt[:2]:
        shutil.copy(f, d / ("bad_" + f.name))
    return d


def _expected_candids(night: Path) -> set[int]:
    import fastavro

    out = set()
    for f in night.glob("*.avro"):
        try:
            with open(f, "rb") as fh:
                for rec in fastavro.reader(fh):
                    out.add(int(rec["candidate"]["candid"]))
        except Exception:
            pass
    return out


def _settings(tmp_path: Path, source: str, dsn: str, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    overrides = dict(
        source=source,
        out=str(tmp_path / "out"),
        pg_dsn=dsn,
        n_workers=2,
        threads_per_worker=1,
        batch_size=50,
        dashboard_address=":0",
        progress=False,
        kafka_idle_stop_s=6,
        batch_timeout_s=2,
        # the classifiers (TensorFlow in every worker of every run) only where a test looks at classes: the
        # archive night below runs the defaults; tests/e2e/test_classify_night.py checks the probabilities
        lc_model="none",
        stamp_model="none",
        publish_lake=False,  # the analysis tables: tests/e2e/test_lake_publish.py (the archive night runs them)
    )
    overrides.update(kw)
    return load_settings(env=env, overrides=overrides)


def _lake_candids(lake: Lake) -> pd.Series:
    return lake.read_table("alerts", columns=["candid"])["candid"]


def test_archive_night_exactly_once_and_rerun(tmp_path, night_dir, summary_store):
    expected = _expected_candids(night_dir)
    assert len(expected) == N_GOOD
    n_files = len(list(night_dir.glob("*.avro")))
    settings = _settings(
        tmp_path, str(night_dir), summary_store.dsn, lc_model="auto", stamp_model="auto", publish_lake=True
    )  # the make run-night defaults

    report = run(settings)
    assert report.status == "ok"
    assert report.messages == n_files
    assert report.alerts == N_GOOD
    assert report.dead_letters == n_files - N_GOOD

    lake = Lake(settings.lake)
    candids = _lake_candids(lake)
    assert candids.dtype == "int64"
    assert set(candids) == expected and candids.is_unique
    pg = summary_store.fetch_df("SELECT candid FROM alert")["candid"]
    assert set(pg) == expected and pg.is_unique

    # every unusable file is in the dead letters, with its bytes and a reason a person can act on
    dead = lake.read_table("dead_letters")
    assert len(dead) == n_files - N_GOOD
    assert all(isinstance(r, str) and len(r) > 10 for r in dead["reason"])
    html = dead[dead["key"].str.contains("1217406343915015013")]
    assert len(html) == 1 and "HTML" in html["reason"].iloc[0]
    assert html["payload"].iloc[0] == (night_dir / "1217406343915015013.avro").read_bytes()

    objects = summary_store.fetch_df("SELECT oid, ndet, firstmjd, lastmjd FROM object")
    alerts = lake.read_table("alerts", columns=["oid"])
    assert set(objects["oid"]) == set(alerts["oid"])
    assert (objects["ndet"] >= 1).all() and (objects["lastmjd"] >= objects["firstmjd"]).all()
    magstats = summary_store.fetch_df("SELECT oid, fid FROM magstats")
    assert not magstats.duplicated().any() and set(magstats["oid"]) <= set(objects["oid"])

    # light-curve features for the objects with >= 6 detections in g or r, in the lake and in PostgreSQL
    feats = lake.read_table("features", dedupe=False)
    pg_feats = summary_store.fetch_df("SELECT oid, feature_version, n_features, features FROM feature")
    assert len(feats) > 0 and set(feats["oid"]) == set(pg_feats["oid"])
    det = lake.read_table("detections", dedupe=True)
    n_gr = det[det["fid"].isin([1, 2])].groupby(["oid", "fid"]).size().groupby("oid").max()
    assert (n_gr.reindex(feats["oid"]) >= 6).all()
    # the definition the run's light-curve classifier was trained on (its metadata names it), not necessarily
    # the newest: features and model always agree
    assert (pg_feats["feature_version"] == RunModels.of(settings).feature_version).all()
    assert RunModels.of(settings).feature_version in FEATURE_VERSIONS
    row = pg_feats.iloc[0]
    assert row["n_features"] == sum(v is not None for v in row["features"].values()) > 10

    # the run is recorded, with its report
    runs = summary_store.fetch_df("SELECT run_id, status FROM pipeline_run")
    assert list(runs["status"]) == ["ok"]
    assert list(Path(settings.reports_dir).glob("run-*.json"))

    # re-running the same night doubles nothing, in the lake or the database
    counts_before = {
        t: len(lake.read_table(t)) for t in ("alerts", "detections", "non_detections", "magstats")
    }
    report2 = run(settings)
    assert report2.alerts == N_GOOD
    counts_after = {t: len(lake.read_table(t)) for t in counts_before}
    assert counts_after == counts_before
    assert summary_store.count("alert") == N_GOOD
    assert summary_store.count("object") == len(objects)

    # --resume over a night already committed reads nothing, yet publishes (a stopped run leaves that undone)
    shutil.rmtree(Path(settings.lake) / "objects_current")
    report3 = run(dataclasses.replace(settings, resume=True))
    assert report3.status == "ok" and report3.messages == 0 and report3.resumed_skipped == n_files
    assert {t: len(lake.read_table(t)) for t in counts_before} == counts_before
    assert (Path(settings.lake) / "objects_current").is_dir()


def test_tar_gz_archive_equals_folder(tmp_path, night_dir, summary_store):
    tgz = tmp_path / "night.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        for f in sorted(night_dir.glob("*.avro")):
            tar.add(f, arcname=f"ztf_public_night/{f.name}")
    settings = _settings(tmp_path, str(tgz), summary_store.dsn, batch_size=64)
    report = run(settings)
    assert report.alerts == N_GOOD
    assert set(_lake_candids(Lake(settings.lake))) == _expected_candids(night_dir)


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        c.close()


def test_kafka_night_exactly_once_crash_and_replay(tmp_path, night_dir, summary_store, kafka_bootstrap):
    topic = f"ztf-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, topic, partitions=2)
    files = sorted(night_dir.glob("*.avro"))
    produce(kafka_bootstrap, topic, [(f.name, f.read_bytes()) for f in files])
    expected = _expected_candids(night_dir)
    url = f"kafka://{kafka_bootstrap}/{topic}"
    group = f"broker-{uuid.uuid4().hex[:6]}"

    # 1. a crash after the sinks of the second batch but before its commit
    settings = _settings(tmp_path, url, summary_store.dsn, kafka_group=group, batch_size=30)
    calls = {"n": 0}
    original = Broker.commit

    def crashing_commit(self, source, messages, batch_id):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash before commit")
        return original(self, source, messages, batch_id)

    Broker.commit = crashing_commit
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(settings)
    finally:
        Broker.commit = original

    # 2. restart with another batch size: the uncommitted batch is re-delivered, regrouped
    settings = _settings(tmp_path, url, summary_store.dsn, kafka_group=group, batch_size=45)
    run(settings)
    lake = Lake(settings.lake)
    candids = _lake_candids(lake)
    assert set(candids) == expected and candids.is_unique
    assert summary_store.count("alert") == len(expected)
    assert len(lake.read_table("dead_letters")) == len(files) - len(expected)

    # every message is accounted for (an alert or a dead letter), and the committed offset of each partition is
    # the one after its last message (tansu's ListOffsets answer is not reliable, so we do not ask it)
    coords = pd.concat(
        [
            lake.read_table("alerts", columns=["partition", "offset"]),
            lake.read_table("dead_letters", columns=["partition", "offset"]),
        ]
    ).drop_duplicates()
    assert len(coords) == len(files)
    ends = coords.groupby("partition")["offset"].max().add(1).reindex(range(2)).tolist()
    assert _committed(kafka_bootstrap, group, topic, 2) == ends

    # 3. the same group again: nothing left to do
    report = run(settings)
    assert report.messages == 0

    # 4. a full replay with a new group: files are superseded, no row doubled
    settings = _settings(tmp_path, url, summary_store.dsn, kafka_group=group + "-replay", batch_size=70)
    report = run(settings)
    assert report.messages == len(files)
    candids = _lake_candids(lake)
    assert set(candids) == expected and candids.is_unique
    assert len(lake.read_table("dead_letters")) == len(files) - len(expected)


def test_s3_lake_reads_back_with_dask(tmp_path, night_dir, summary_store, s3_lake_url):
    url, options = s3_lake_url
    settings = _settings(
        tmp_path,
        str(night_dir),
        summary_store.dsn,
        lake_url=url,
        s3_endpoint_url=options["endpoint_url"],
        s3_key=options.get("key", ""),
        s3_secret=options.get("secret", ""),
    )
    report = run(settings)
    assert report.alerts == N_GOOD
    ddf = dd.read_parquet(f"{url}/alerts", storage_options=options)
    df = ddf[["candid", "oid", "night"]].compute()
    assert set(df["candid"]) == _expected_candids(night_dir) and df["candid"].is_unique
    det = dd.read_parquet(f"{url}/detections", storage_options=options).compute()
    assert {"magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext", "corrected", "dubious"} <= set(det.columns)
    # the light-curve history lives on S3 too: compacted at the end of the run, every detection stored once
    from alert_broker.storage.history import HistoryStore

    history = HistoryStore(Lake(url, options))
    assert history.delta_files("detections") == [] and history.delta_files("objects") == []
    stored = history.read("detections", history.pixels("detections"))
    assert set(stored["candid"]) == set(det["candid"]) and stored["candid"].is_unique
    objects = history.read("objects", history.pixels("objects"))
    assert set(objects["oid"]) == set(df["oid"]) and objects["oid"].is_unique
    # the raw packets come back by candid, with their stamps
    store = SummaryStore(summary_store.dsn)
    row = store.fetch_df("SELECT candid, raw_path FROM alert ORDER BY candid LIMIT 1")
    from alert_broker.storage import RawArchive

    archive = RawArchive(Lake(url, options))
    stamps = archive.fetch_stamps(int(row["candid"].iloc[0]), path=row["raw_path"].iloc[0])
    assert stamps["science"][:2] == b"\x1f\x8b"


def test_object_sequences_all_process(tmp_path, summary_store, shared_data):
    """Every alert of the six object_sequences objects is processed; the 21 HTML error pages are dead letters."""
    src = shared_data / "ztf" / "object_sequences"
    files = sorted(src.rglob("*.avro"))
    settings = _settings(tmp_path, str(src), summary_store.dsn, batch_size=200)
    report = run(settings)
    assert report.messages == len(files)
    assert report.alerts + report.dead_letters == len(files)
    dead = Lake(settings.lake).read_table("dead_letters")
    assert len(dead) == 21 and dead["reason"].str.contains("HTML").all()
    objects = summary_store.fetch_df("SELECT oid, ndet FROM object ORDER BY oid")
    assert sorted(objects["oid"]) == sorted(p.name for p in src.iterdir() if p.is_dir())
    sn = summary_store.fetch_df(
        "SELECT fid, ndet, magmin_corr, magmin FROM magstats WHERE oid = 'ZTF20aaelulu'"
    )
    assert set(sn["fid"]) >= {1, 2} and (sn["ndet"] > 5).all()


def test_external_scheduler(tmp_path, night_dir, summary_store):
    """--scheduler: the driver submits to a cluster it did not start (workers get the bytes, not paths)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=":0") as cluster:
        settings = _settings(tmp_path, str(night_dir), summary_store.dsn, scheduler=cluster.scheduler_address)
        report = run(settings)
    assert report.alerts == N_GOOD
    assert summary_store.count("alert") == N_GOOD


def test_crossmatch_with_an_imported_catalogue(tmp_path, night_dir, summary_store):
    """Objects are matched per region against a local HEALPix-partitioned catalogue; rows land in the lake and
    in PostgreSQL."""
    import fastavro
    import numpy as np

    from alert_broker.storage import import_catalog

    positions = {}
    for f in sorted(night_dir.glob("*.avro"))[:60]:
        try:
            with open(f, "rb") as fh:
                c = next(fastavro.reader(fh))
        except Exception:
            continue
        positions[c["objectId"]] = (c["candidate"]["ra"], c["candidate"]["dec"])
    planted = dict(list(positions.items())[:10])
    rng = np.random.default_rng(0)
    cat = pd.DataFrame(
        {
            "src": [f"S{i}" for i in range(len(planted))] + [f"R{i}" for i in range(300)],
            "ra": [ra for ra, _ in planted.values()] + list(rng.uniform(0, 360, 300)),
            "dec": [dec + 0.5 / 3600 for _, dec in planted.values()] + list(rng.uniform(-30, 80, 300)),
            "vmag": np.arange(len(planted) + 300, dtype=float),
        }
    )
    cat.to_csv(tmp_path / "cat.csv", index=False)
    import_catalog("test", tmp_path / "cat.csv", "ra", "dec", tmp_path / "catalogs", id_col="src")

    settings = _settings(
        tmp_path,
        str(night_dir),
        summary_store.dsn,
        catalog_root=str(tmp_path / "catalogs"),
        xmatch="test:2:vmag",
    )
    run(settings)
    xm = summary_store.fetch_df("SELECT oid, catalog_id, dist_arcsec, properties FROM xmatch")
    expected = {oid: f"S{i}" for i, oid in enumerate(planted)}
    got = dict(zip(xm["oid"], xm["catalog_id"], strict=True))
    assert {o: got.get(o) for o in expected} == expected
    assert (xm["dist_arcsec"] < 2).all()
    assert all("vmag" in p for p in xm["properties"])
    assert set(Lake(settings.lake).read_table("xmatch")["oid"]) == set(xm["oid"])


def test_light_curve_classifier_in_the_pipeline(tmp_path, night_dir, summary_store):
    """A registry model runs on the workers: ALeRCE-style probability rows and outlier scores per object."""
    from alert_broker.classifiers import CLASSES, HierarchicalClassifier, save

    settings = _settings(tmp_path, str(night_dir), summary_store.dsn, lc_model="none", stamp_model="none")
    run(settings)
    assert summary_store.count("probability") == 0
    feats = Lake(settings.lake).read_table("features", dedupe=True)
    feats = feats.drop(columns=["alert_night", "batch_id", "lastmjd", "night"], errors="ignore")
    labels = pd.Series([CLASSES[i % len(CLASSES)] for i in range(len(feats))], index=feats["oid"])
    model = HierarchicalClassifier(n_estimators=10, outlier_estimators=10, random_state=0).fit(feats, labels)
    save(model, root=tmp_path / "models")

    settings = _settings(
        tmp_path,
        str(night_dir),
        summary_store.dsn,
        lc_model=model.name,
        models=str(tmp_path / "models"),
        stamp_model="none",
    )
    run(settings)
    probs = summary_store.fetch_df("SELECT * FROM probability")
    classified = set(feats["oid"])
    assert set(probs["oid"]) == classified
    fine = probs[probs["classifier_name"] == model.name]
    assert (fine.groupby("oid").size() == len(CLASSES)).all()
    sums = probs.groupby(["oid", "classifier_name"])["probability"].sum()
    assert ((sums - 1).abs() < 1e-9).all()  # both levels are distributions
    top = fine.loc[fine.groupby("oid")["probability"].idxmax()]
    assert (top["ranking"] == 1).all()
    outl = summary_store.fetch_df("SELECT oid, outlier_score FROM outlier_score")
    assert set(outl["oid"]) == classified and outl["outlier_score"].notna().all()
    lake = Lake(settings.lake)
    assert len(lake.read_table("probabilities", dedupe=True)) == len(probs)
    # every per-object table is filed by the night of the alert that produced it, and opens as a dataset
    for table in ("features", "probabilities", "outliers"):
        files = lake.list_files(table)
        assert files and all("/alert_night=" in f for f in files), table
        n = len(lake.read_table(table))
        assert len(dd.read_parquet(f"{settings.lake}/{table}").compute()) == n
        back = pd.read_parquet(f"{settings.lake}/{table}")  # the analyst's one-liner, partition from the path
        assert len(back) == n and back["alert_night"].notna().all()
