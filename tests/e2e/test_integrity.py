"""End to end: the integrity re-scan (``broker integrity``) finds what a night lost, and ``--repair`` brings it
back without doubling anything (docs/integrity.md).

Real alerts, a real Dask LocalCluster, a real PostgreSQL, a real Kafka-protocol broker (tansu): a night is run,
lake files and PostgreSQL rows are deleted, the re-scan names exactly those alerts, the repair restores them.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from alert_broker.pipeline import integrity
from alert_broker.pipeline.cli import main
from alert_broker.pipeline.driver import run
from alert_broker.pipeline.kafka import ensure_topic, produce
from alert_broker.storage import Lake, manifest
from alert_broker.storage.history import HistoryStore
from tests.fixtures.night import broken_files, night_settings

pytestmark = pytest.mark.e2e

N_GOOD = 120
N_BAD = 2


@pytest.fixture(scope="module")
def night_dir(tmp_path_factory, shared_data) -> Path:
    """120 real ZTF alerts and two files that are not alerts (corrupt or pre-release Avro)."""
    d = tmp_path_factory.mktemp("integrity-night")
    for f in sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:N_GOOD]:
        shutil.copy(f, d / f.name)
    for f in broken_files(shared_data, N_BAD):
        shutil.copy(f, d / ("zz_bad_" + f.name))  # sorted last: the last batch holds them
    return d


def _history_detections(lake: Lake) -> pd.DataFrame:
    store = HistoryStore(lake)
    det = store.read("detections", store.pixels("detections"))
    return det[["oid", "candid"]].sort_values(["oid", "candid"]).reset_index(drop=True)


def _assert_nothing_doubled(lake: Lake, store, expected: int) -> None:
    raw = lake.read_table("alerts", columns=["survey", "candid"], dedupe=False)  # every live file, as is
    assert len(raw) == expected and not raw.duplicated().any()
    pg = store.fetch_df("SELECT survey, candid FROM alert")
    assert len(pg) == expected and not pg.duplicated().any()


def _written_at(path: str) -> bytes:
    return pq.read_schema(path).metadata[b"broker.written_at_ns"]


def test_archive_night_rescan_and_repair(tmp_path, night_dir, summary_store, monkeypatch):
    settings = night_settings(tmp_path, str(night_dir), summary_store.dsn)
    report = run(settings)
    assert report.alerts == N_GOOD and report.dead_letters == N_BAD
    lake = Lake(settings.lake)
    history_before = _history_detections(lake)

    # 1. a clean night: every alert in the lake and PostgreSQL, the bad files dead-lettered with their reasons
    clean = integrity.scan(settings)
    assert clean.messages == N_GOOD + N_BAD
    assert clean.missing_total == 0 and clean.clean
    totals = clean.totals()
    dated = [n for n in clean.nights if n.night is not None]
    assert sum(n.in_source for n in dated) == N_GOOD
    assert sum(n.in_lake for n in dated) == sum(n.in_postgres for n in dated) == N_GOOD
    (undated,) = [n for n in clean.nights if n.night is None]
    assert undated.in_source == undated.dead_lettered == N_BAD and undated.not_dead_lettered == 0
    assert sum(undated.dead_reasons.values()) == N_BAD
    assert all(len(r) > 10 for r in totals.dead_reasons)
    assert "clean" in clean.render()

    # 2. damage: two lake alert files of the second batch and five PostgreSQL rows of the third are lost
    batches = manifest.batches(summary_store, f"archive:{night_dir.name}").sort_values("first_offset")
    assert list(batches["first_offset"]) == [0, 40, 80, 120]
    second, third = batches.iloc[1], batches.iloc[2]
    alert_files = sorted(f for f in second["files"] if "/alerts/" in f)
    assert alert_files, second["files"]
    lost = alert_files[:2]
    lost_lake = pd.concat([pq.read_table(f, columns=["survey", "candid"]).to_pandas() for f in lost])
    for f in lost:
        os.remove(f)
    lost_pg = summary_store.fetch_df(
        "SELECT survey, candid FROM alert WHERE batch_id = %s ORDER BY candid LIMIT 5", (third["batch_id"],)
    )
    summary_store.conn.execute(
        "DELETE FROM alert WHERE candid = ANY(%s)", ([int(c) for c in lost_pg["candid"]],)
    )
    # the undamaged first and last batches: a repair rewrites neither
    first_files = [
        f for i in (0, 3) for f in batches.iloc[i]["files"] if f.endswith(".parquet") and "/history/" not in f
    ]
    first_written = {f: _written_at(f) for f in first_files}

    damaged = integrity.scan(settings)
    got_lake = damaged.missing[damaged.missing["missing_lake"]]
    got_pg = damaged.missing[damaged.missing["missing_postgres"]]
    assert set(zip(got_lake["survey"], got_lake["candid"], strict=True)) == set(
        zip(lost_lake["survey"], lost_lake["candid"], strict=True)
    )
    assert set(zip(got_pg["survey"], got_pg["candid"], strict=True)) == set(
        zip(lost_pg["survey"], lost_pg["candid"], strict=True)
    )
    assert damaged.missing_total == len(lost_lake) + len(lost_pg)
    assert sum(n.missing_lake for n in damaged.nights) == len(lost_lake)

    # 3. the CLI: a scan alone exits 1; --repair reprocesses and exits 0, with the JSON report
    monkeypatch.delenv("BROKER_CONFIG", raising=False)
    for k in [k for k in os.environ if k.startswith("BROKER_")]:
        monkeypatch.delenv(k)
    flags = [
        "--source", str(night_dir), "--out", str(settings.out), "--pg-dsn", summary_store.dsn,
        "--batch-size", "40", "--n-workers", "1", "--threads-per-worker", "2", "--dashboard-address", ":0",
        "--no-progress", "--lc-model", "none", "--stamp-model", "none",
    ]  # fmt: skip
    assert main(["integrity", *flags]) == 1
    assert main(["integrity", *flags, "--repair"]) == 0
    reports = sorted(Path(settings.reports_dir).glob("integrity-*.json"))
    assert len(reports) == 2
    saved = json.loads(reports[-1].read_text())
    assert saved["scan"]["missing_total"] == len(lost_lake) + len(lost_pg)
    assert saved["missing_after"] == 0 and saved["after"]["clean"]
    redone = {b["batch_id"]: b["why"] for b in saved["repair"]["batches"]}
    # the damaged batches are re-run whole, and only they: re-running one retires no other (none overlaps it)
    assert redone == {second["batch_id"]: "missing", third["batch_id"]: "missing"}
    # each check is a pipeline_run row with its verdict; a check that finds nothing missing is one too
    assert main(["integrity", *flags]) == 0
    checks = summary_store.fetch_df(
        "SELECT status, counts, summary, config, finished_at FROM pipeline_run WHERE source = %s "
        "ORDER BY started_at",
        (integrity.RUN_SOURCE,),
    )
    assert list(checks["status"]) == ["missing", "repaired", "clean"]
    assert checks["finished_at"].notna().all()
    lost = len(lost_lake) + len(lost_pg)
    assert [(c["missing"], c["missing_after"]) for c in checks["counts"]] == [(lost, lost), (lost, 0), (0, 0)]
    assert all(c["messages"] == N_GOOD + N_BAD for c in checks["counts"])
    assert checks["counts"][1]["repaired_messages"] == saved["repair"]["messages"] > 0
    assert [c["repair"] for c in checks["config"]] == [False, True, False]
    assert checks["summary"][1]["repair"]["run_id"] == saved["repair"]["run_id"]
    assert checks["summary"][0]["scan"]["totals"]["missing_lake"] == len(lost_lake)

    # 4. everything back, nothing doubled, the untouched first and last batches' files never rewritten
    after = integrity.scan(settings)
    assert after.clean and after.missing_total == 0
    _assert_nothing_doubled(lake, summary_store, N_GOOD)
    assert {f: _written_at(f) for f in first_files} == first_written
    pd.testing.assert_frame_equal(_history_detections(lake), history_before)
    assert len(lake.read_table("dead_letters")) == N_BAD
    assert summary_store.count("dead_letter") == N_BAD


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        c.close()


def test_kafka_topic_rescan_from_earliest_and_repair(tmp_path, night_dir, summary_store, kafka_bootstrap):
    topic = f"ztf-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, topic, partitions=2)
    files = sorted(night_dir.glob("*.avro"))
    produce(kafka_bootstrap, topic, [(f.name, f.read_bytes()) for f in files])
    group = f"broker-{uuid.uuid4().hex[:6]}"
    settings = night_settings(
        tmp_path,
        f"kafka://{kafka_bootstrap}/{topic}",
        summary_store.dsn,
        kafka_group=group,
        batch_size=30,
        kafka_idle_stop_s=5,
    )  # the group join comes before the first message
    report = run(settings)
    assert report.alerts == N_GOOD and report.dead_letters == N_BAD
    committed = _committed(kafka_bootstrap, group, topic, 2)
    assert sum(committed) == len(files)
    lake = Lake(settings.lake)
    history_before = _history_detections(lake)

    # PostgreSQL loses rows of two batches; the lake loses one file of a third
    batches = manifest.batches(summary_store, topic)
    ids = sorted(set(batches["batch_id"]))
    lost_pg = summary_store.fetch_df(
        "SELECT survey, candid FROM alert WHERE batch_id = ANY(%s) ORDER BY candid", (ids[:2],)
    ).iloc[::4]
    summary_store.conn.execute(
        "DELETE FROM alert WHERE candid = ANY(%s)", ([int(c) for c in lost_pg["candid"]],)
    )
    # the last batch that wrote alerts (a batch of dead letters only writes none)
    alert_files = [
        sorted(f for f in batches[batches["batch_id"] == b]["files"].iloc[0] if "/alerts/" in f)
        for b in ids[2:]
    ]
    lake_file = [fs for fs in alert_files if fs][-1][0]
    lost_lake = pq.read_table(lake_file, columns=["survey", "candid"]).to_pandas()
    os.remove(lake_file)

    scanned = integrity.scan(settings)  # from the earliest retained offset of each partition
    assert scanned.messages == len(files)
    assert set(scanned.offsets["partition"]) == {0, 1} and (scanned.offsets["first"] == 0).all()
    missing_pg = scanned.missing[scanned.missing["missing_postgres"]]
    missing_lake = scanned.missing[scanned.missing["missing_lake"]]
    assert set(missing_pg["candid"]) == set(lost_pg["candid"])
    assert set(missing_lake["candid"]) == set(lost_lake["candid"])

    result = integrity.repair(settings, scanned)
    assert result.status == "ok" and not result.unrepairable
    assert {b.why for b in result.planned} == {"missing"}
    assert result.after.clean and result.after.missing_total == 0
    _assert_nothing_doubled(lake, summary_store, N_GOOD)
    pd.testing.assert_frame_equal(_history_detections(lake), history_before)
    # the repair read the topic with its own consumer: the broker's group is where it was
    assert _committed(kafka_bootstrap, group, topic, 2) == committed
