"""The Kafka source against a real Kafka-protocol broker (tansu on 127.0.0.1)."""

from __future__ import annotations

import uuid

import pytest

from alert_broker.pipeline.kafka import (
    KafkaSource,
    KafkaUnavailable,
    check_source,
    ensure_topic,
    parse_kafka_url,
    produce,
)

pytestmark = pytest.mark.integration


def _source(bootstrap, topic, group, **kw):
    return KafkaSource(
        bootstrap, [topic], group, batch_size=kw.pop("batch_size", 40), batch_timeout_s=3, **kw
    )


def test_parse_kafka_url():
    u = parse_kafka_url("kafka://127.0.0.1:9092/ztf,lsst")
    assert u.bootstrap == "127.0.0.1:9092" and u.topics == ("ztf", "lsst")
    with pytest.raises(ValueError, match="no topic"):
        parse_kafka_url("kafka://127.0.0.1:9092/")
    with pytest.raises(ValueError, match="not a Kafka URL"):
        parse_kafka_url("/some/folder")


def test_batches_commit_and_redelivery(kafka_bootstrap):
    topic = f"t-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, topic, partitions=2)
    payloads = [(f"k{i}", f"alert-{i}".encode() * 100) for i in range(100)]
    assert produce(kafka_bootstrap, topic, payloads) == 100

    # First consumer: take one batch, do NOT commit (a crash before the sinks finished).
    src = _source(kafka_bootstrap, topic, group, idle_stop_s=5)
    first = next(src.batches())
    assert 0 < len(first) <= 40
    src.close()

    # Second consumer of the same group: everything is re-delivered, nothing lost.
    src = _source(kafka_bootstrap, topic, group, idle_stop_s=5)
    seen = []
    for batch in src.batches():
        seen.extend(batch)
        src.commit(batch)
    src.close()
    values = sorted(m.payload for m in seen)
    assert values == sorted(v for _, v in payloads)
    assert {m.source for m in seen} == {topic}
    assert {m.partition for m in seen} <= {0, 1}

    # Third consumer: all committed, nothing more to read.
    src = _source(kafka_bootstrap, topic, group, idle_stop_s=3)
    assert sum(len(b) for b in src.batches()) == 0
    src.close()


def test_check_source_names_missing_topics_and_a_cluster_that_does_not_answer(kafka_bootstrap):
    topic = f"t-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, topic)
    assert check_source(kafka_bootstrap, [topic, "no-such-topic"], timeout=10) == ["no-such-topic"]
    with pytest.raises(KafkaUnavailable, match=r"no answer from Kafka at 127\.0\.0\.1:1 within 1 s"):
        check_source("127.0.0.1:1", [topic], timeout=1)
