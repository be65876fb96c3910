"""Where simulated alerts go: a night archive folder, per-night .tar.gz files, or a Kafka topic at a set rate.

The Kafka producer is the load generator: alerts leave in observing order (night, time, id) at a mean rate, in
bursts of `burst` alerts (one LSST visit ~ 10^4 alerts) sent back to back, each burst starting on the schedule
that keeps the mean rate; `rate = 0` sends as fast as the broker takes them.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

import pandas as pd
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True)
class KafkaTarget:
    bootstrap: str
    topic: str
    partitions: int = 1
    config: dict = field(default_factory=dict)


def parse_kafka_url(url: str) -> KafkaTarget:
    """kafka://host:port[,host:port]/topic[?partitions=N&linger.ms=5...] -> KafkaTarget."""
    u = urlparse(url)
    if u.scheme != "kafka" or not u.netloc or not u.path.strip("/"):
        raise ValueError(f"expected kafka://host:port/topic, got {url!r}")
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    parts = int(q.pop("partitions", 1))
    return KafkaTarget(u.netloc, u.path.strip("/"), parts, q)


def is_kafka(out: str) -> bool:
    return str(out).startswith("kafka://")


def write_tarballs(manifest: pd.DataFrame, out_dir: str, survey: str, compresslevel: int = 1) -> list[str]:
    """One `<survey>_public_<night>.tar.gz` per night with `<id>.avro` members (deterministic bytes).

    Members are sorted by id; tar headers carry fixed owner and mtime, the gzip header mtime 0, so the same
    alerts give the same tarball. Level-1 gzip: the stamps inside are already compressed.
    """
    paths = []
    for night, grp in manifest.groupby("night", sort=True):
        path = os.path.join(out_dir, f"{survey}_public_{night}.tar.gz")
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for _, r in grp.sort_values("candid").iterrows():
                with open(r["path"], "rb") as fh:
                    data = fh.read()
                info = tarfile.TarInfo(f"{r['candid']}.avro")
                info.size = len(data)
                info.mtime = 0
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


@dataclass
class ProduceReport:
    messages: int
    nbytes: int
    seconds: float
    errors: int
    bursts: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mbytes_per_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds if self.seconds > 0 else float("nan")


def ensure_topic(target: KafkaTarget, timeout: float = 30.0) -> None:
    """Create the topic if the broker does not have it (single replica: test and bench brokers)."""
    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    md = admin.list_topics(timeout=timeout)
    if target.topic in md.topics:
        return
    fut = admin.create_topics(
        [NewTopic(target.topic, num_partitions=target.partitions, replication_factor=1)]
    )
    for f in fut.values():
        try:
            f.result(timeout)
        except Exception as exc:  # already exists (a race) is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def produce(
    messages, target: KafkaTarget, rate: float = 0.0, burst: int = 0, create_topic: bool = True
) -> ProduceReport:
    """Send (key, value) pairs in order at `rate` alerts/s (0: unthrottled), in bursts of `burst` alerts."""
    if create_topic:
        ensure_topic(target)
    conf = {
        "bootstrap.servers": target.bootstrap,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 200_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.max.bytes": 20_000_000,
        "acks": "all",
    }
    conf.update(target.config)
    prod = Producer(conf)
    errors = [0]

    def on_delivery(err, _msg):
        if err is not None:
            errors[0] += 1

    group = burst if burst > 0 else (max(1, int(rate / 200)) if rate > 0 else 0)
    n = nbytes = bursts = 0
    t0 = time.perf_counter()
    for key, value in messages:
        if group and n % group == 0:
            bursts += 1
            if rate > 0:
                due = t0 + n / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    prod.poll(0)
                    time.sleep(wait)
        while True:
            try:
                prod.produce(target.topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                prod.poll(0.05)
        prod.poll(0)
        n += 1
        nbytes += len(value)
    left = prod.flush(120)
    dt = time.perf_counter() - t0
    if left:
        raise KafkaException(f"{left} messages still undelivered after flush")
    return ProduceReport(n, nbytes, dt, errors[0], bursts)


def manifest_messages(manifest: pd.DataFrame):
    """(key, value) pairs in observing order from a spool manifest (files are read lazily)."""
    for oid, path in zip(manifest["oid"].tolist(), manifest["path"].tolist(), strict=True):
        with open(path, "rb") as fh:
            yield oid.encode(), fh.read()
