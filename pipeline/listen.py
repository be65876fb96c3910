"""Reading the annotated output stream back: what a downstream user (a TOM, a script, a person at a terminal)
runs to follow the broker's alerts, its filters' topics and its watch lists (``broker listen``, ``iter_stream``).

Kafka (``kafka://host:port/topic[,topic]``): a consumer with ``isolation.level=read_committed`` (a batch is seen
whole or not at all, docs/output-stream.md), each message decoded with the packaged schema its
``schema_version`` header names. With ``group`` the consumer commits what it has read, so the next session goes
on from there; without one, each session reads from the beginning (or, ``latest``, only what comes next) and
commits nothing. Files (``file://DIR/alerts``, or a filter's or watch list's folder): the batch containers in
write order. A replay can publish a batch again (same keys): keys seen in this session are skipped.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import fastavro
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from alert_broker.pipeline.kafka import CONSUMER_DEFAULTS, JOIN_GRACE_S, client, parse_kafka_url
from alert_broker.pipeline.output import SCHEMA_FILE, SCHEMA_VERSION

log = logging.getLogger(__name__)

SCHEMAS = SCHEMA_FILE.parent
#: Keys remembered to skip a replayed batch's messages (a bounded memory for a session of days).
SEEN_KEYS = 1_000_000
#: A group's position is committed every this many alerts, and when the session ends.
COMMIT_EVERY = 1000


class UnknownSchema(ValueError):
    """A message of a schema version this broker does not ship (a newer broker published it)."""


_parsed: dict[str, dict] = {}


def schema_for(version: str) -> dict:
    """The parsed schema of ``version`` (``pipeline/schemas/annotated_alert_<version>.avsc``)."""
    if version not in _parsed:
        path = SCHEMAS / f"annotated_alert_{version}.avsc"
        if not version.replace(".", "").isdigit() or not path.is_file():
            known = sorted(p.stem.rsplit("_", 1)[1] for p in SCHEMAS.glob("annotated_alert_*.avsc"))
            raise UnknownSchema(
                f"no annotated-alert schema {version!r} here (known: {', '.join(known)}); upgrade"
            )
        _parsed[version] = fastavro.parse_schema(json.loads(path.read_text()))
    return _parsed[version]


def decode_message(value: bytes, headers: list[tuple[str, bytes]] | None) -> dict:
    """A message body as its record, read with the schema its ``schema_version`` header names (default the
    current one)."""
    version = SCHEMA_VERSION
    for k, v in headers or []:
        if k == "schema_version" and v:
            version = v.decode()
    return fastavro.schemaless_reader(io.BytesIO(value), schema_for(version))


class _Seen:
    """The last ``SEEN_KEYS`` keys: a replayed message is skipped."""

    def __init__(self) -> None:
        self.keys: OrderedDict[str, None] = OrderedDict()

    def first(self, key: str) -> bool:
        if key in self.keys:
            return False
        self.keys[key] = None
        if len(self.keys) > SEEN_KEYS:
            self.keys.popitem(last=False)
        return True


def iter_kafka(
    url: str,
    group: str | None = None,
    latest: bool = False,
    idle_stop_s: float = 10.0,
    max_messages: int | None = None,
    client_config: dict[str, str] | None = None,
) -> Iterator[tuple[str, dict]]:
    """(key, record) of each message of the URL's topics, until ``max_messages`` or ``idle_stop_s`` without a
    message (0: forever)."""
    where = parse_kafka_url(url)
    conf = {
        **CONSUMER_DEFAULTS,  # fast group joins, packets of any size
        **(client_config or {}),
        "bootstrap.servers": where.bootstrap,
        "group.id": group or f"broker-listen-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
        "auto.offset.reset": "latest" if latest else "earliest",
        "enable.auto.commit": False,  # a group's position is committed here, synchronously, as the session ends
    }
    consumer = client(Consumer, conf)
    seen = _Seen()
    done = 0
    state = {"assigned": group is None, "since": time.monotonic()}

    def on_assign(_consumer, _partitions) -> None:
        state["assigned"], state["since"] = True, time.monotonic()  # the quiet time counts from here

    try:
        if group is None:  # no group to join: every partition of the topics, at once
            start = OFFSET_END if latest else OFFSET_BEGINNING
            found = consumer.list_topics(timeout=10).topics
            missing = [t for t in where.topics if t not in found or found[t].error is not None]
            if missing:
                raise ValueError(f"no topic {', '.join(missing)} on {where.bootstrap}")
            consumer.assign([TopicPartition(t, p, start) for t in where.topics for p in found[t].partitions])
        else:
            consumer.subscribe(list(where.topics), on_assign=on_assign)
        while max_messages is None or done < max_messages:
            msg = consumer.poll(0.5)
            if msg is None:
                waited = time.monotonic() - state["since"]
                if idle_stop_s and (waited > idle_stop_s if state["assigned"] else waited > JOIN_GRACE_S):
                    return
                continue
            state["since"] = time.monotonic()
            if msg.error():
                continue
            key = (msg.key() or b"").decode()
            if not seen.first(f"{msg.topic()}/{key}"):
                continue
            try:
                record = decode_message(msg.value() or b"", msg.headers())
            except UnknownSchema:
                raise
            except Exception as err:  # one unreadable message never ends a session: said, and skipped
                log.warning("listen: %s/%s offset %s is not an annotated alert (%s: %s); skipped",
                            msg.topic(), msg.partition(), msg.offset(), type(err).__name__, err)  # fmt: skip
                continue
            done += 1
            yield key, record
            if group is not None and done % COMMIT_EVERY == 0:
                consumer.commit(asynchronous=True)  # a long session that dies re-reads little
    finally:
        if group is not None and done:
            with contextlib.suppress(KafkaException):  # nothing read since the last commit, or the group gone
                consumer.commit(asynchronous=False)  # what was handed out (poll stores each message's offset)
        consumer.close()


def iter_files(folder: str | Path, max_messages: int | None = None) -> Iterator[tuple[str, dict]]:
    """(key, record) of every container in ``folder`` (a ``file://`` output's ``alerts``, ``filter/<name>`` or
    ``watchlist/<name>``), oldest file first."""
    seen = _Seen()
    done = 0
    files = sorted(Path(folder).glob("*.avro"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    for path in files:
        with open(path, "rb") as fh:
            for record in fastavro.reader(fh):
                key = f"{record['survey']}:{record['candid']}"
                if not seen.first(key):
                    continue
                if max_messages is not None and done >= max_messages:
                    return
                done += 1
                yield key, record


def iter_stream(url: str, **options) -> Iterator[tuple[str, dict]]:
    """``kafka://...`` or ``file://DIR`` (a folder of batch containers)."""
    parsed = urlparse(url)
    if parsed.scheme == "kafka":
        yield from iter_kafka(url, **options)
    elif parsed.scheme == "file":
        yield from iter_files(parsed.netloc + parsed.path, options.get("max_messages"))
    else:
        raise ValueError(f"listen to kafka://host:port/topic or file://DIR, not {url!r}")


def summary_line(key: str, record: dict) -> str:
    """One line a person reads: the alert, its object, its photometry and the broker's classes."""
    stamp = record.get("stamp") or {}
    lc = record.get("lc") or {}
    mag = record.get("magpsf")
    parts = [
        f"{key:<28}",
        f"{record.get('oid', ''):<24}",
        f"mjd {record.get('mjd', float('nan')):.5f}",
        f"{record.get('band') or '':>2}",
        f"mag {mag:6.3f}" if mag is not None else "mag   -   ",
        f"ndet {((record.get('object') or {}).get('ndet')) or 0:>4}",
    ]
    if stamp:
        parts.append(f"stamp {stamp.get('class')} {stamp.get('probability', 0):.2f}")
    if lc:
        parts.append(f"lc {lc.get('class')} {lc.get('probability', 0):.2f}")
    if record.get("watchlists"):
        parts.append("watch " + ",".join(w["name"] for w in record["watchlists"]))
    return "  ".join(parts)
