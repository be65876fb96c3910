"""``broker listen``: a downstream user follows the annotated stream of a real night, from a real Kafka broker
(tansu) and from a ``file://`` output, a filter's topic too; a replayed batch is read once; a consumer group
goes on where it stopped."""

from __future__ import annotations

import json
import uuid

import pytest

from alert_broker.pipeline import listen
from alert_broker.pipeline.cli import main
from alert_broker.pipeline.driver import run
from tests.fixtures.night import copy_alerts, night_settings

pytestmark = pytest.mark.e2e

N = 60


@pytest.fixture(scope="module")
def streamed(tmp_path_factory, shared_data, kafka_bootstrap, postgres_dsn):
    """A night of real alerts published to a topic (with a filter's topic) and to a folder, then run again
    (its batches published again, same keys)."""
    from tests.fixtures.services import new_database

    root = tmp_path_factory.mktemp("listen")
    night = copy_alerts(shared_data / "ztf" / "fink_sample_1166", root / "night", N)
    topic = f"annotated-{uuid.uuid4().hex[:6]}"
    with new_database(postgres_dsn) as dsn:
        once = f"{topic}-once"
        outputs = [f"kafka://{kafka_bootstrap}/{topic}", f"file://{root / 'stream'}"]
        settings = night_settings(
            root, str(night), dsn, output=";".join([*outputs, f"kafka://{kafka_bootstrap}/{once}"]),
            filter="bright=magpsf < 18.5",
        )  # fmt: skip
        first = run(settings)
        # a replay: every batch published again (not to the "once" topic)
        again = run(
            night_settings(root, str(night), dsn, output=";".join(outputs), filter="bright=magpsf < 18.5")
        )
        yield {"topic": topic, "once": once, "folder": root / "stream", "alerts": first.alerts,
               "again": again.alerts, "out": settings.out, "dsn": dsn}  # fmt: skip


def test_listen_reads_each_alert_once_from_kafka_and_files(streamed, kafka_bootstrap):
    assert streamed["again"] == streamed["alerts"] == N
    url = f"kafka://{kafka_bootstrap}/{streamed['topic']}"
    from_kafka = dict(listen.iter_stream(url, idle_stop_s=3))
    assert len(from_kafka) == N  # published twice, read once
    from_files = dict(listen.iter_stream(f"file://{streamed['folder'] / 'alerts'}"))
    assert from_files.keys() == from_kafka.keys()
    for key, record in from_kafka.items():
        assert key == f"{record['survey']}:{record['candid']}" and record["schema_version"] == "1.0"
        assert from_files[key]["oid"] == record["oid"] and from_files[key]["mjd"] == record["mjd"]
    bright = dict(listen.iter_stream(f"{url}.filter.bright", idle_stop_s=3))
    assert bright and all(r["magpsf"] < 18.5 for r in bright.values()) and bright.keys() < from_kafka.keys()
    assert len(dict(listen.iter_stream(url, idle_stop_s=3, max_messages=7))) == 7


def test_a_group_goes_on_where_it_stopped(streamed, kafka_bootstrap):
    """A topic published once: a group that read 25 alerts and stopped reads the other 35 next time, and
    nothing the time after."""
    url = f"kafka://{kafka_bootstrap}/{streamed['once']}"
    group = f"tom-{uuid.uuid4().hex[:6]}"
    first = [k for k, _ in listen.iter_stream(url, group=group, idle_stop_s=10, max_messages=25)]
    rest = [k for k, _ in listen.iter_stream(url, group=group, idle_stop_s=10)]
    assert len(first) == 25 and len(rest) == N - 25 and not set(first) & set(rest)
    assert [k for k, _ in listen.iter_stream(url, group=group, idle_stop_s=5)] == []


def test_the_cli_prints_a_line_or_a_json_record_per_alert(streamed, kafka_bootstrap, tmp_path, capsys):
    url = f"kafka://{kafka_bootstrap}/{streamed['topic']}"
    flags = ["--out", str(streamed["out"]), "--pg-dsn", streamed["dsn"]]
    assert main(["listen", url, *flags, "--idle-stop-s", "3", "--max", "5"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 5 and all(line.startswith("ztf:") and " mjd " in line for line in lines)
    assert captured.err.strip().endswith("5 alerts")
    out = tmp_path / "alerts.jsonl"
    assert main(["listen", f"file://{streamed['folder'] / 'alerts'}", *flags, "--jsonl", str(out)]) == 0
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == N and all(r["key"] == f"ztf:{r['candid']}" for r in records)
    assert main(["listen", "http://example.org/topic", *flags]) == 1
    assert "listen to kafka://" in capsys.readouterr().err
    # --where: the broker's filter language on the consumer's side, the same alerts as the run's filter topic
    bright = dict(listen.iter_stream(f"{url}.filter.bright", idle_stop_s=3))
    assert (
        main(["listen", f"file://{streamed['folder'] / 'alerts'}", *flags, "--where", "magpsf < 18.5"]) == 0
    )
    shown = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert shown == set(bright) and 0 < len(shown) < N
    assert main(["listen", url, *flags, "--where", "magpsf <"]) == 2
    assert "syntax error" in capsys.readouterr().err


def test_an_unknown_schema_version_is_refused_with_the_known_ones():
    with pytest.raises(listen.UnknownSchema, match="known: 1.0"):
        listen.decode_message(b"\x00", [("schema_version", b"9.9")])


def test_an_unreadable_message_is_skipped_and_said(streamed, kafka_bootstrap, caplog):
    """A message that is not an annotated alert (someone else's producer on the topic) never ends a session."""
    from confluent_kafka import Producer

    from alert_broker.pipeline.output import encode

    url = f"kafka://{kafka_bootstrap}/{streamed['topic']}"
    good = list(listen.iter_stream(url, idle_stop_s=3, max_messages=3))
    mixed = f"{streamed['topic']}-mixed"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(mixed, key=b"junk", value=b"\xff\x00 not avro", headers=[("schema_version", b"1.0")])
    for key, record in good:
        producer.produce(mixed, key=key.encode(), value=encode(record), headers=[("schema_version", b"1.0")])
    assert producer.flush(30) == 0
    got = list(listen.iter_stream(f"kafka://{kafka_bootstrap}/{mixed}", idle_stop_s=3))
    assert sorted(got, key=lambda kv: kv[0]) == sorted(good, key=lambda kv: kv[0])  # partitions: any order
    assert any("is not an annotated alert" in r.getMessage() for r in caplog.records)
