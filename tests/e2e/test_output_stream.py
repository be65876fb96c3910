"""The annotated output stream on a real Kafka-protocol broker (tansu) and in files: one message per processed
alert, decodable with the published schema, classes equal to the lake's, filter and watch-list topics exactly
what their rules select, and a crash between the output and the input commit repeating, never losing, a batch."""

from __future__ import annotations

import io
import os
import shutil
import time
import uuid
from pathlib import Path

import fastavro
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import Broker, run
from alert_broker.pipeline.kafka import ensure_topic, produce
from alert_broker.pipeline.output import SCHEMA_FILE, decode
from alert_broker.storage import Lake
from alert_broker.storage.watchlists import import_watchlist

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def night(tmp_path_factory, shared_data) -> Path:
    d = tmp_path_factory.mktemp("night")
    for f in sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:80]:
        shutil.copy(f, d / f.name)
    return d


def _settings(tmp_path: Path, source: str, dsn: str, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    overrides = dict(
        source=source,
        out=str(tmp_path / "out"),
        pg_dsn=dsn,
        n_workers=2,
        batch_size=30,
        dashboard_address=":0",
        progress=False,
        publish_lake=False,  # the analysis tables: tests/e2e/test_lake_publish.py
        kafka_idle_stop_s=5,
        batch_timeout_s=2,
    )
    overrides.update(kw)
    return load_settings(env=env, overrides=overrides)


def _consume(bootstrap: str, topic: str, timeout: float = 20.0) -> list[tuple[str, bytes]]:
    """Every committed message of ``topic`` (read_committed), as (key, value)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out = []
        deadline = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < deadline and idle < 6:
            m = c.poll(0.5)
            if m is None:
                idle += 1
                continue
            idle = 0
            if m.error():
                continue
            out.append((m.key().decode(), m.value()))
        return out
    finally:
        c.close()


def test_kafka_stream_filters_and_watchlists(tmp_path, night, summary_store, kafka_bootstrap, shared_data):
    # a watch list entry on a known object's position (and one far from everything)
    with open(sorted(night.glob("*.avro"))[0], "rb") as fh:
        first = next(fastavro.reader(fh))
    target, ra, dec = first["objectId"], first["candidate"]["ra"], first["candidate"]["dec"]
    wl = tmp_path / "targets.csv"
    pd.DataFrame(
        {
            "name": ["my-target", "nowhere"],
            "ra": [ra, (ra + 90) % 360],
            "dec": [dec, 0.0],
            "radius_arcsec": [2.0, 5.0],
        }
    ).to_csv(wl, index=False)
    import_watchlist("friends", wl, tmp_path / "out" / "watchlists")

    topic = f"annotated-{uuid.uuid4().hex[:6]}"
    settings = _settings(
        tmp_path,
        str(night),
        summary_store.dsn,
        output=f"kafka://{kafka_bootstrap}/{topic}",
        filter="bright=magpsf < 18.5 and rb > 0.5",
        watchlists="friends",
    )
    report = run(settings)
    assert report.status == "ok"
    msgs = _consume(kafka_bootstrap, topic)
    keys = [k for k, _ in msgs]
    assert len(keys) == len(set(keys)) == report.alerts  # one message per processed alert
    records = [decode(v) for _, v in msgs]
    assert {r["schema_version"] for r in records} == {"1.0"}
    # decodable by any consumer with fastavro and the published .avsc
    published = fastavro.parse_schema(__import__("json").loads(SCHEMA_FILE.read_text()))
    assert fastavro.schemaless_reader(io.BytesIO(msgs[0][1]), published)["candid"] == records[0]["candid"]

    # classes equal to the lake's
    lake = Lake(settings.lake)
    probs = lake.read_table("probabilities")
    best = probs[probs["ranking"] == 1].set_index(["oid", "classifier_name"])["class_name"].astype(str)
    checked = 0
    for r in records:
        for section in ("stamp", "lc"):
            if r[section]:
                assert best[(r["oid"], r[section]["classifier"])] == r[section]["class"]
                checked += 1
    assert checked > 0

    # the filter topic holds exactly what the rule selects, evaluated independently on the lake's alerts
    alerts = lake.read_table("alerts")
    expected = {f"ztf:{c}" for c in alerts.loc[(alerts["magpsf"] < 18.5) & (alerts["rb"] > 0.5), "candid"]}
    got = {k for k, _ in _consume(kafka_bootstrap, f"{topic}.filter.bright")}
    assert got == expected and expected
    assert report.summary()["counts"]["filter:bright:matches"] == len(expected)

    # the watch list: the target's alerts, in PostgreSQL and on its topic
    hits = summary_store.fetch_df("SELECT name, oid, candid FROM watchlist_hit")
    assert set(hits["name"]) == {"my-target"} and set(hits["oid"]) == {target}
    wl_keys = {k for k, _ in _consume(kafka_bootstrap, f"{topic}.watchlist.friends")}
    assert wl_keys == {f"ztf:{c}" for c in hits["candid"]}


def test_crash_between_output_and_commit_repeats_never_loses(tmp_path, night, summary_store, kafka_bootstrap):
    files = sorted(night.glob("*.avro"))[:60]
    src = f"in-{uuid.uuid4().hex[:6]}"
    ensure_topic(kafka_bootstrap, src, partitions=1)
    produce(kafka_bootstrap, src, [(f.name, f.read_bytes()) for f in files])
    out = f"out-{uuid.uuid4().hex[:6]}"
    group = f"broker-{uuid.uuid4().hex[:6]}"
    settings = _settings(
        tmp_path,
        f"kafka://{kafka_bootstrap}/{src}",
        summary_store.dsn,
        output=f"kafka://{kafka_bootstrap}/{out}",
        kafka_group=group,
        lc_model="none",
        stamp_model="none",
    )
    original = Broker.commit
    calls = {"n": 0}

    def crashing_commit(self, source, messages, batch_id):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash after the output, before the commit")
        return original(self, source, messages, batch_id)

    Broker.commit = crashing_commit
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(settings)
    finally:
        Broker.commit = original
    run(settings)  # the restart: resumes from the committed offsets
    msgs = _consume(kafka_bootstrap, out)
    keys = [k for k, _ in msgs]
    candids = set(summary_store.fetch_df("SELECT candid FROM alert")["candid"])
    assert {int(k.split(":")[1]) for k in keys} == candids  # every alert present
    assert len(keys) > len(set(keys))  # the crashed batch came twice ...
    dup = pd.Series(keys).value_counts()
    assert dup.max() == 2  # ... once more, never more; consumers deduplicate by key


def test_file_output(tmp_path, night, summary_store):
    settings = _settings(
        tmp_path,
        str(night),
        summary_store.dsn,
        output=f"file://{tmp_path / 'stream'}",
        lc_model="none",
        stamp_model="none",
    )
    report = run(settings)
    files = sorted((tmp_path / "stream" / "alerts").glob("*.avro"))
    assert len(files) == report.n_batches
    records = []
    for f in files:
        with open(f, "rb") as fh:
            records.extend(fastavro.reader(fh))
    assert len(records) == report.alerts == len({r["candid"] for r in records})
    # a re-run rewrites the same files (named by batch), adding none
    run(settings)
    assert sorted((tmp_path / "stream" / "alerts").glob("*.avro")) == files
