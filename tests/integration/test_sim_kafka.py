"""The load generator against a real Kafka-protocol broker (tansu on 127.0.0.1): order, bytes, rate, bursts."""

from __future__ import annotations

import time
import uuid

import pytest

from alert_broker.simulator import SimConfig, iter_alerts, simulate
from alert_broker.simulator.sinks import parse_kafka_url, produce

pytestmark = pytest.mark.integration


def _consume(bootstrap: str, topic: str, n: int, timeout: float = 60.0) -> list:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}
    )
    c.assign(
        [TopicPartition(topic, 0, OFFSET_BEGINNING)]
    )  # no group rebalance: read partition 0 from the start
    got, deadline = [], time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m)
    finally:
        c.close()
    return got


def test_simulate_to_kafka_in_observing_order(kafka_bootstrap, tmp_path):
    topic = f"sim-{uuid.uuid4().hex[:8]}"
    cfg = SimConfig(objects=400, nights=2, seed=17)
    report = simulate(cfg, f"kafka://{kafka_bootstrap}/{topic}", truth_path=str(tmp_path / "truth.parquet"))
    expected = sorted(iter_alerts(cfg), key=lambda a: (a.night, a.mjd, a.candid))
    assert report.kafka.messages == report.alerts == len(expected) > 50 and report.kafka.errors == 0
    print(f"\nunthrottled produce: {report.kafka.rate:.0f} alerts/s, {report.kafka.mbytes_per_s:.1f} MB/s")
    msgs = sorted(_consume(kafka_bootstrap, topic, len(expected)), key=lambda m: m.offset())
    assert [m.value() for m in msgs] == [a.payload for a in expected]
    assert [m.key().decode() for m in msgs] == [a.oid for a in expected]


def test_rate_and_bursts_are_respected(kafka_bootstrap):
    topic = f"rate-{uuid.uuid4().hex[:8]}"
    target = parse_kafka_url(f"kafka://{kafka_bootstrap}/{topic}")
    payloads = [(b"k", bytes(2000)) for _ in range(300)]
    rate, burst = 200.0, 50
    rep = produce(iter(payloads), target, rate=rate, burst=burst)
    assert rep.messages == 300 and rep.errors == 0 and rep.bursts == 6
    # six bursts start at 0, 0.25, ..., 1.25 s: the run lasts at least 1.25 s and the mean rate stays near 200/s
    assert rep.seconds >= (300 - burst) / rate * 0.98
    assert rep.rate <= rate * 1.25
    assert len(_consume(kafka_bootstrap, topic, 300)) == 300
