"""Kafka edge: a micro-batching consumer with manual commits, and a producer for archives and tests.

Offsets are committed only by :meth:`KafkaSource.commit`, which the driver calls after every sink has the
batch. A crash before that makes the consumer group re-deliver the batch; idempotent sinks make the replay
harmless (see storage/manifest.py).

Security: every client here (consumer, producer, admin) takes the run's Kafka client settings
(``Settings.kafka_config``: security.protocol, SASL, SSL, any ``--kafka-option``) as ``config``; a
``KafkaEndpoint`` (an output URL) carries them. An error while creating a client is re-raised redacted, so a
password given in a property never reaches a log or a traceback.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from alert_broker.pipeline.logs import RepeatFilter
from alert_broker.storage.secrets import redact
from alert_broker.surveys.messages import RawMessage

log = logging.getLogger(__name__)

#: librdkafka's own log lines (connection failures, broker errors), routed through the broker's logging (so
#: ``--log-format json`` covers them) instead of librdkafka writing to stderr; a client retrying a connection
#: logs every attempt, so each kind of line is shown once per ``LIBRDKAFKA_REPEAT_S`` with a count of the rest
LIBRDKAFKA_LOG = logging.getLogger(f"{__name__}.librdkafka")
LIBRDKAFKA_REPEAT_S = 30.0
# "Connect to ... failed: Connection refused (after 0ms in state CONNECT)": the timing is not part of its kind
_ATTEMPT_DETAIL = re.compile(r"\d+ms")
LIBRDKAFKA_REPEATS = RepeatFilter(LIBRDKAFKA_REPEAT_S, key=lambda message: _ATTEMPT_DETAIL.sub("", message))
LIBRDKAFKA_LOG.addFilter(LIBRDKAFKA_REPEATS)


def flush_client_logs() -> int:
    """Say how many of librdkafka's lines were not shown since the last of their kind (the end of a run: an outage's
    last burst is otherwise never counted). Returns the lines logged."""
    return LIBRDKAFKA_REPEATS.flush()


#: librdkafka settings that suit alert packets (tens to hundreds of kB each) and fast group joins.
CONSUMER_DEFAULTS = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "max.partition.fetch.bytes": 16 * 1024 * 1024,
    "fetch.max.bytes": 64 * 1024 * 1024,
}

#: how long a consumer without partitions (joining its group, or between a revoke and the next assignment) waits
#: for the group before an idle stop: the group answers only once every member has rejoined, and a member rejoins
#: after finishing its batches in flight, which can take longer than ``idle_stop_s`` on a loaded machine
JOIN_GRACE_S = 60.0


class KafkaEndpoint(str):
    """A ``kafka://host:port/topic`` URL (a plain ``str`` everywhere) that carries the client settings of the run
    that named it (``client_config``: security.protocol, SASL, SSL). Its ``repr`` is the URL alone."""

    client_config: dict[str, str]

    def __new__(cls, url: str, client_config: dict[str, str] | None = None) -> KafkaEndpoint:
        endpoint = super().__new__(cls, url)
        endpoint.client_config = dict(client_config or {})
        return endpoint

    def __reduce__(self):
        return (KafkaEndpoint, (str(self), self.client_config))


def client(kind: type, conf: dict):
    """A confluent_kafka client (``Consumer``, ``Producer``, ``AdminClient``) of ``conf``; a configuration error
    (which may quote a property's value) is re-raised with its text redacted. Its log lines go to
    ``LIBRDKAFKA_LOG`` (confluent_kafka hands them over inside ``poll``/``consume``/``flush``)."""
    try:
        return kind({"logger": LIBRDKAFKA_LOG, **conf})
    except (KafkaException, ValueError, TypeError) as err:
        raise type(err)(redact(str(err))) from None


@dataclass(frozen=True)
class KafkaURL:
    bootstrap: str
    topics: tuple[str, ...]


def parse_kafka_url(url: str) -> KafkaURL:
    """``kafka://host:port[,host:port]/topic[,topic]`` -> bootstrap servers and topics."""
    parsed = urlparse(url)
    if parsed.scheme != "kafka" or not parsed.netloc:
        raise ValueError(f"not a Kafka URL (kafka://host:port/topic): {url!r}")
    topics = tuple(t for t in parsed.path.lstrip("/").split(",") if t)
    if not topics:
        raise ValueError(f"Kafka URL names no topic: {url!r}")
    return KafkaURL(parsed.netloc, topics)


class KafkaSource:
    """Pulls micro-batches of raw alert packets from a consumer group.

    ``idle_stop_s`` ends the iteration once no message arrived for that long (a night replayed from a topic);
    0 means run forever (continuous mode). The quiet time counts from the last message or the last assignment,
    whichever came later, and only while this consumer has been given its partitions: one still waiting for
    the group (joining, or between a revoke and the next assignment) waits up to ``JOIN_GRACE_S`` for it, so a
    driver that joins while the others drain their batches does not leave before its share comes.

    Several drivers in one consumer group share the topic's partitions (docs/operations.md, "Several drivers").
    When the group rebalances (a driver joins or leaves), this consumer's partitions are revoked: ``on_revoke``
    (set by the driver) runs first, inside the rebalance, and must finish and commit every batch it has in
    flight; messages this source read but had not handed out yet are dropped, uncommitted, so whoever owns
    their partition next reads them again from the committed offset. No batch is then ever processed by two
    drivers, and the lake's exactly-once bookkeeping (storage/manifest.py) stays per driver.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Iterable[str],
        group: str,
        batch_size: int = 500,
        batch_timeout_s: float = 5.0,
        idle_stop_s: float = 10.0,
        extra_config: dict | None = None,
    ) -> None:
        self.topics = list(topics)
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.idle_stop_s = idle_stop_s
        # yield an empty batch after each empty poll: a driver with batches in flight commits the finished ones
        # while the topic is quiet, instead of holding them until the next burst (set by the driver)
        self.yield_idle = False
        conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            **CONSUMER_DEFAULTS,
            **(extra_config or {}),
        }
        self._consumer = client(Consumer, conf)
        #: called when the group takes this consumer's partitions away: finish and commit what is in flight
        self.on_revoke: Callable[[], None] | None = None
        self._revoked = False
        #: monotonic time of the last assignment, and since when this consumer has been waiting for one (None
        #: while it has one): the idle stop's clock (``_idle``)
        self._assigned_at = 0.0
        self._unassigned_since: float | None = time.monotonic()
        self._consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoking)
        self.name = "kafka:" + ",".join(self.topics)
        #: partitions this consumer owns now
        self.assignment: list[tuple[str, int]] = []

    def _assigned(self, consumer, partitions: list[TopicPartition]) -> None:  # noqa: ARG002 - callback shape
        self.assignment = sorted((tp.topic, tp.partition) for tp in partitions)
        self._assigned_at, self._unassigned_since = time.monotonic(), None
        log.info("partitions assigned: %s", ", ".join(f"{t}[{p}]" for t, p in self.assignment) or "none")

    def _rewind_to_committed(self) -> None:
        owned = [TopicPartition(t, p) for t, p in self.assignment]
        if not owned:
            return
        for tp in self._consumer.committed(owned, timeout=10):
            tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self._consumer.seek(tp)

    def _revoking(self, consumer, partitions: list[TopicPartition]) -> None:  # noqa: ARG002 - callback shape
        """The group rebalances: finish and commit the batches in flight while the partitions are still ours."""
        log.info("partitions revoked: %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))
        self._revoked = True
        if self.on_revoke is not None:
            self.on_revoke()
        self.assignment = []
        self._unassigned_since = time.monotonic()

    def batches(self) -> Iterator[list[RawMessage]]:
        last_message = time.monotonic()
        while True:
            batch = self.poll_batch()
            now = time.monotonic()
            if batch:
                last_message = now
                yield batch
            elif self._idle(now, last_message):
                return
            elif self.yield_idle:
                yield []

    def _idle(self, now: float, last_message: float) -> bool:
        """Whether the idle stop is due: ``idle_stop_s`` quiet since the last message and the last assignment,
        or, without partitions, ``JOIN_GRACE_S`` (at least ``idle_stop_s``) waiting for the group."""
        if not self.idle_stop_s:
            return False
        if self._unassigned_since is not None:
            waited = now - self._unassigned_since
            if waited >= max(self.idle_stop_s, JOIN_GRACE_S):
                log.warning("idle stop: the group gave this consumer no partitions within %.0f s", waited)
                return True
            return False
        return now - max(last_message, self._assigned_at) >= self.idle_stop_s

    def poll_batch(self) -> list[RawMessage]:
        """Up to ``batch_size`` messages, or what arrived within ``batch_timeout_s``."""
        out: list[RawMessage] = []
        deadline = time.monotonic() + self.batch_timeout_s
        while len(out) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._revoked = False
            msgs = self._consumer.consume(self.batch_size - len(out), timeout=min(remaining, 1.0))
            if self._revoked:
                # a rebalance ran inside consume(): nothing read in this poll was handed out, so drop it all and
                # start every partition we own now at its committed offset (everything before it is committed:
                # on_revoke finished the batches in flight); the other partitions' owners do the same
                log.info(
                    "rebalance: %d messages read but not handed out are read again", len(out) + len(msgs)
                )
                out, msgs = [], []
                self._rewind_to_committed()
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                key = m.key()
                ts_type, ts_ms = m.timestamp()
                out.append(
                    RawMessage(
                        source=m.topic(),
                        partition=m.partition(),
                        offset=m.offset(),
                        payload=m.value() or b"",
                        key=key.decode("utf-8", "replace") if key else None,
                        timestamp=ts_ms / 1000.0 if ts_type != TIMESTAMP_NOT_AVAILABLE else None,
                    )
                )
            if not msgs and out:
                break  # the topic is drained for now: do not sit on a partial batch
        return out

    def commit(self, messages: Iterable[RawMessage]) -> list[TopicPartition]:
        """Synchronously commit the next offset of every (topic, partition) in ``messages``."""
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            k = (m.source, m.partition)
            last[k] = max(last.get(k, -1), m.offset)
        if not last:
            return []
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]
        return self._consumer.commit(offsets=offsets, asynchronous=False)

    def lag(self) -> int:
        """Messages not yet consumed on the assigned partitions (for the progress bar and metrics)."""
        total = 0
        for tp in self._consumer.assignment():
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)  # noqa: E501
            pos = self._consumer.position([tp])[0].offset
            total += max(0, high - pos) if pos >= 0 else high
        return total

    def close(self) -> None:
        self.on_revoke = None  # closing revokes the partitions: nothing is in flight by then, or it failed
        self._consumer.close()


class KafkaUnavailable(RuntimeError):
    """The Kafka cluster a run reads from did not answer: the run stops before it starts anything."""


def check_source(
    bootstrap: str, topics: Iterable[str], timeout: float, config: dict | None = None
) -> list[str]:
    """Ask the cluster at ``bootstrap`` for its topics; returns those of ``topics`` it does not have (yet).

    A run checks this before it starts its cluster and PostgreSQL: a wrong address or a broker that is down
    fails in ``timeout`` seconds with :class:`KafkaUnavailable` (naming the address), instead of a night that
    polls nothing (librdkafka retrying the connection in the background) until its idle stop."""
    admin = client(AdminClient, {"bootstrap.servers": bootstrap, **(config or {})})
    try:
        known = admin.list_topics(timeout=timeout).topics
    except KafkaException as err:
        admin.poll(0)  # hand librdkafka's own lines (why it failed: refused, unresolved) to the log first
        raise KafkaUnavailable(
            f"no answer from Kafka at {bootstrap} within {timeout:g} s ({redact(err.args[0].str())})"
        ) from None
    return [t for t in topics if t not in known]


def ensure_topic(
    bootstrap: str, topic: str, partitions: int = 1, timeout: float = 30.0, config: dict | None = None
) -> None:
    """Create ``topic`` if it does not exist. ``config``: the run's Kafka client settings (security)."""
    admin = client(AdminClient, {"bootstrap.servers": bootstrap, **(config or {})})
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for fut in futures.values():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def produce(
    bootstrap: str,
    topic: str,
    payloads: Iterable[tuple[str | None, bytes]],
    rate: float | None = None,
    config: dict | None = None,
) -> int:
    """Produce (key, value) pairs to ``topic``; ``rate`` (messages/s) paces a load generator. Returns the count.
    ``config``: the run's Kafka client settings (security)."""
    producer = client(
        Producer,
        {
            "bootstrap.servers": bootstrap,
            "message.max.bytes": 16 * 1024 * 1024,
            "linger.ms": 20,
            **(config or {}),
        },
    )
    n = 0
    start = time.monotonic()
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value=value, key=key.encode() if key else None)
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
        producer.poll(0)
        if rate:
            ahead = n / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} messages were not delivered to {topic}")
    return n
