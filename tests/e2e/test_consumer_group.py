"""Several drivers in one consumer group share a topic's partitions (docs/operations.md, "Several drivers"): two
`broker run-night` processes on one topic, one PostgreSQL and one lake, the second joining while the first has
batches in flight and alerts still arriving. The rebalance finishes and commits the first driver's batches before
its partitions move, so every alert is processed by exactly one driver, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from alert_broker.storage import SummaryStore
from tests.e2e.test_faults import _candids, _committed_total, _settings, audit

pytestmark = pytest.mark.timeout(420)


def _driver(bootstrap: str, topic: str, group: str, out: Path, lake: Path, dsn: str) -> subprocess.Popen:
    cmd = [
        str(Path(sys.executable).with_name("broker")), "run-night", "--source", f"kafka://{bootstrap}/{topic}",
        "--kafka-group", group, "--kafka-idle-stop-s", "10", "--out", str(out), "--lake-url", str(lake),
        "--pg-dsn", dsn, "--batch-size", "8", "--batch-timeout-s", "1", "--n-workers", "1", "--no-progress",
        "--dashboard-address", ":0", "--lc-model", "none", "--stamp-model", "none", "--no-features",
        "--no-publish-lake",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _report(out: Path) -> dict:
    (path,) = (out / "reports").glob("run-*.json")
    return json.loads(path.read_text())["summary"]


def test_two_drivers_in_one_consumer_group_share_the_partitions(
    tmp_path, kafka_bootstrap, summary_store, shared_data
):
    from alert_broker.pipeline.kafka import ensure_topic, produce

    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:160]
    night = tmp_path / "night"
    night.mkdir()
    for f in files:
        (night / f.name).write_bytes(f.read_bytes())
    topic, group = f"group-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, topic, partitions=2)
    lake = tmp_path / "lake"

    joined = threading.Event()  # the group has answered the second driver (its share, or none)
    gone = threading.Event()  # the second driver has ended
    held_back = 40  # alerts that trickle until it has: however slowly it starts, there is work left for it

    def feed() -> None:  # alerts keep arriving (4 a second) while the drivers start, join and rebalance
        i = 0
        while i < len(files):
            # until the second driver has its share, one alert every 4 s: the first driver stays busy (below its
            # 10 s idle stop) through the second one's start and the rebalance, and alerts are left for afterwards
            step = 1 if i >= len(files) - held_back and not (joined.is_set() or gone.is_set()) else 4
            produce(kafka_bootstrap, topic, [(f.name, f.read_bytes()) for f in files[i : i + step]])
            i += step
            time.sleep(4.0 if step == 1 else 1.0)

    def follow(proc: subprocess.Popen, lines: list[str]) -> None:
        for line in proc.stdout:
            lines.append(line)
            if "partitions assigned" in line:
                joined.set()
        gone.set()

    producer = threading.Thread(target=feed)
    producer.start()
    first = _driver(kafka_bootstrap, topic, group, tmp_path / "a", lake, summary_store.dsn)
    deadline = time.monotonic() + 120
    while not list(lake.rglob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.5)  # until the first driver is processing batches
    second = _driver(kafka_bootstrap, topic, group, tmp_path / "b", lake, summary_store.dsn)
    second_lines: list[str] = []
    follower = threading.Thread(target=follow, args=(second, second_lines))
    follower.start()
    producer.join()
    first_log = first.communicate(timeout=300)[0]
    second.wait(timeout=300)
    follower.join(timeout=30)
    logs = [first_log, "".join(second_lines)]
    assert first.returncode == 0 and second.returncode == 0, "\n".join(x[-3000:] for x in logs)

    # the group moved partitions while the first driver was working (it was given a share back after the
    # revoke, so it had not left), and both drivers took a share
    first_events = [
        x for x in logs[0].splitlines() if "partitions revoked" in x or "partitions assigned" in x
    ]
    revoked_at = next((i for i, x in enumerate(first_events) if "revoked" in x), len(first_events))
    assert any("assigned" in x for x in first_events[revoked_at:]), "\n".join(x[-3000:] for x in logs)
    assert "partitions assigned" in logs[1], "\n".join(x[-3000:] for x in logs)
    ra, rb = _report(tmp_path / "a"), _report(tmp_path / "b")
    assert ra["messages_read"] > 0 and rb["messages_read"] > 0, (ra["messages_read"], rb["messages_read"])
    # ... and no message was processed twice: the rebalance committed the first driver's batches in flight
    assert ra["messages_read"] + rb["messages_read"] == len(files)
    settings = _settings(
        tmp_path, f"kafka://{kafka_bootstrap}/{topic}", summary_store.dsn, lake_url=str(lake)
    )
    audit(settings, SummaryStore(summary_store.dsn), _candids(night))
    assert _committed_total(kafka_bootstrap, group, topic) == len(files)
