"""When a Kafka source's idle stop is due (pipeline/kafka.py, ``KafkaSource``): quiet time counts only while the
consumer has partitions; one still waiting for its group waits up to ``JOIN_GRACE_S``. A fake consumer and a fake
clock (each empty ``consume`` advances it by its timeout) make the times exact; the real broker's side of a
rebalance is tested end to end in tests/e2e/test_consumer_group.py."""

from __future__ import annotations

import pytest

from alert_broker.pipeline import kafka
from alert_broker.pipeline.kafka import JOIN_GRACE_S, KafkaSource


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class _Partition:
    def __init__(self, partition: int) -> None:
        self.topic, self.partition = "t", partition


class _Consumer:
    """No messages ever; the group's answers come at the clock times in ``events`` (offset from the start):
    ``("assign", [partitions])`` or ``("revoke", [])``."""

    def __init__(self, clock: _Clock, events: list[tuple[float, str, list[int]]]) -> None:
        self.clock, self.start, self.events = clock, clock.now, sorted(events)

    def subscribe(self, topics, on_assign, on_revoke) -> None:  # noqa: ARG002 - the real consumer's shape
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def consume(self, n, timeout):  # noqa: ARG002
        self.clock.now += timeout
        while self.events and self.clock.now - self.start >= self.events[0][0]:
            _, what, parts = self.events.pop(0)
            callback = self.on_assign if what == "assign" else self.on_revoke
            callback(self, [_Partition(p) for p in parts])
        return []

    def close(self) -> None:
        pass


def _stops_after(monkeypatch, events, idle_stop_s: float = 10.0) -> float:
    """Seconds (fake clock) from the first poll to the end of ``batches()``."""
    clock = _Clock()
    monkeypatch.setattr(kafka, "time", clock)
    monkeypatch.setattr(kafka, "client", lambda kind, conf: _Consumer(clock, events))  # noqa: ARG005
    src = KafkaSource("127.0.0.1:1", ["t"], "g", batch_timeout_s=1.0, idle_stop_s=idle_stop_s)
    start = clock.now
    assert list(src.batches()) == []
    return clock.now - start


def test_assigned_at_once_stops_after_the_idle_time(monkeypatch):
    assert _stops_after(monkeypatch, [(1.0, "assign", [0, 1])]) == pytest.approx(11.0, abs=1.0)


def test_a_consumer_the_group_has_not_answered_waits_for_it(monkeypatch):
    # the other members are still draining their batches: no assignment for 30 s, then the quiet time starts
    assert _stops_after(monkeypatch, [(30.0, "assign", [1])]) == pytest.approx(40.0, abs=1.0)


def test_an_empty_share_is_an_answer(monkeypatch):
    # more drivers than partitions: this one is given none, and leaves after the idle time
    assert _stops_after(monkeypatch, [(2.0, "assign", [])]) == pytest.approx(12.0, abs=1.0)


def test_a_revoke_waits_for_the_next_assignment(monkeypatch):
    events = [(1.0, "assign", [0, 1]), (5.0, "revoke", []), (25.0, "assign", [0])]
    assert _stops_after(monkeypatch, events) == pytest.approx(35.0, abs=1.0)


def test_a_group_that_never_answers_ends_after_the_grace(monkeypatch):
    assert _stops_after(monkeypatch, []) == pytest.approx(JOIN_GRACE_S, abs=1.0)
    # a longer idle stop than the grace is the wait's floor
    assert _stops_after(monkeypatch, [], idle_stop_s=90.0) == pytest.approx(90.0, abs=1.0)


def test_no_idle_stop_runs_on(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(kafka, "time", clock)
    monkeypatch.setattr(kafka, "client", lambda kind, conf: _Consumer(clock, []))  # noqa: ARG005
    src = KafkaSource("127.0.0.1:1", ["t"], "g", batch_timeout_s=1.0, idle_stop_s=0)
    src.yield_idle = True
    batches = src.batches()
    for _ in range(200):  # 200 s without partitions or messages: still polling
        assert next(batches) == []
    assert clock.now - 1000.0 >= 200
