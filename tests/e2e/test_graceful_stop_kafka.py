"""SIGTERM to a continuous Kafka driver (the Kubernetes case): it commits exactly what it stored, and the next
driver of its group goes on from there (helpers: tests/e2e/test_graceful_stop.py)."""

from __future__ import annotations

import os
import signal
import sys

import pytest
from confluent_kafka import Consumer, TopicPartition

from alert_broker.pipeline.kafka import ensure_topic, produce
from tests.e2e.test_graceful_stop import BROKER, N_FILES, _start, _stop_while_processing, _stored

pytestmark = pytest.mark.e2e


def test_sigterm_in_continuous_kafka_mode_commits_exactly_what_is_stored(
    tmp_path, shared_data, kafka_bootstrap
):
    """The Kubernetes driver (``--kafka-idle-stop-s 0``) stopped by its pod's SIGTERM mid-stream: the consumer
    group's committed offsets cover exactly the alerts stored, and the next driver goes on from there."""
    if not BROKER.exists():
        pytest.skip(f"the broker script is not installed next to {sys.executable} (run make setup)")
    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:N_FILES]
    topic, group = f"ztf-stop-{os.getpid()}", "stop-test"
    ensure_topic(kafka_bootstrap, topic, partitions=2)
    produce(kafka_bootstrap, topic, [(f.name, f.read_bytes()) for f in files])
    out = tmp_path / "out"
    out.mkdir()
    source = f"kafka://{kafka_bootstrap}/{topic}"

    log = tmp_path / "run0.log"
    proc = _start(source, out, log, "--kafka-group", group, "--kafka-idle-stop-s", "0")
    _stop_while_processing(proc, log, group=False, sig=signal.SIGTERM, started="partitions assigned: ztf")
    assert proc.returncode == 143, log.read_text()[-3000:]
    lake, pg = _stored(out)
    assert 0 < len(lake) < len(files) and len(set(lake)) == len(lake) and sorted(lake) == sorted(pg)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
    finally:
        consumer.close()
    assert sum(max(tp.offset, 0) for tp in committed) == len(
        lake
    )  # no commit ahead of the sinks, none behind

    log = tmp_path / "run1.log"
    proc = _start(source, out, log, "--kafka-group", group, "--kafka-idle-stop-s", "5")
    assert proc.wait(300) == 0, log.read_text()[-3000:]
    lake, pg = _stored(out)
    assert len(lake) == len(set(lake)) == len(files) and sorted(lake) == sorted(pg)
