"""Faults with the real services: a Dask worker SIGKILLed mid-batch, a poison batch that kills its worker on every
try, PostgreSQL stopped mid-night. Each scenario ends with the same audit: every input alert is in the lake and
PostgreSQL exactly once, or a dead letter with a reason; the manifest accounts for every lake file."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import fastavro
import pytest

from alert_broker.pipeline import driver as driver_module
from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import Broker, PostgresUnavailable, run
from alert_broker.storage import EmbeddedPostgres, Lake, SummaryStore, manifest
from tests.fixtures.poison import POISON_KEY, decode_chunk_or_die, start_postgres, stop_postgres

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def night(tmp_path_factory, shared_data) -> Path:
    d = tmp_path_factory.mktemp("night")
    for f in sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:90]:
        shutil.copy(f, d / f.name)
    return d


def _candids(folder: Path) -> set[int]:
    out = set()
    for f in folder.glob("*.avro"):
        if f.name == POISON_KEY:
            continue
        with open(f, "rb") as fh:
            out |= {int(r["candidate"]["candid"]) for r in fastavro.reader(fh)}
    return out


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
        publish_lake=False,  # the analysis tables: tests/e2e/test_lake_publish.py
        lc_model="none",
        stamp_model="none",
        features=False,
    )
    overrides.update(kw)
    return load_settings(env=env, overrides=overrides)


def audit(settings, store: SummaryStore, expected: set[int], dead_expected: int = 0) -> None:
    """Every expected alert once in the lake and PostgreSQL (or a dead letter), and no file the manifest does
    not know."""
    lake = Lake(settings.lake)
    alerts = lake.read_table("alerts", columns=["candid"])["candid"]
    assert alerts.is_unique, "an alert is in the lake twice"
    pg = store.fetch_df("SELECT candid FROM alert")["candid"]
    assert pg.is_unique
    dead = store.fetch_df("SELECT reason FROM dead_letter")
    assert len(dead) == dead_expected
    assert all(isinstance(r, str) and r for r in dead["reason"])
    if dead_expected == 0:
        assert set(alerts) == set(pg) == expected
    else:
        assert set(alerts) == set(pg) and set(pg) <= expected
    known = set()
    for files in manifest.batches(store)["files"]:
        known |= set(files or [])
    # per-batch files (the history store and the published analysis tables are rewritten whole, not per batch)
    published = ("_current/", "_latest/", "/history/")
    on_disk = {
        str(p) for p in Path(settings.lake).rglob("*.parquet") if not any(s in str(p) for s in published)
    }
    assert on_disk <= {str(Path(f)) for f in known}, "a lake file the manifest does not account for"


def _run_killing_a_worker(settings):
    """Run the night, SIGKILLing one Dask worker while the third batch's tasks run; (killed pids, report)."""
    killed: list[int] = []
    original = Broker.submit

    def submit_then_kill(self, messages, attempt=0):
        job = original(self, messages, attempt)
        if self._seq == 3 and not killed:
            victim = sorted(self.client.run(os.getpid).values())[0]
            time.sleep(0.2)  # the batch's tasks are running
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        return job

    Broker.submit = submit_then_kill
    try:
        report = run(settings)
    finally:
        Broker.submit = original
    return killed, report


def test_a_worker_killed_mid_batch_is_survived(tmp_path, night, summary_store):
    settings = _settings(tmp_path, str(night), summary_store.dsn)
    killed, report = _run_killing_a_worker(settings)
    assert killed and report.status == "ok"
    audit(settings, summary_store, _candids(night))


def test_a_poison_batch_ends_in_dead_letters(tmp_path, night, summary_store, monkeypatch):
    d = tmp_path / "poisoned"
    shutil.copytree(night, d)
    shutil.copy(sorted(night.glob("*.avro"))[20], d / POISON_KEY)  # sorts after the real files: its own batch
    monkeypatch.setattr(driver_module, "decode_chunk", decode_chunk_or_die)
    settings = _settings(tmp_path, str(d), summary_store.dsn, task_allowed_failures=1, batch_retries=1)
    report = run(settings)
    assert report.status == "ok"
    poison = summary_store.fetch_df("SELECT reason, error FROM dead_letter")
    assert len(poison) >= 1 and (poison["error"] == "PoisonBatch").all()
    assert poison["reason"].str.contains("poison batch").all()
    n_files = len(list(d.glob("*.avro")))
    assert report.alerts + report.dead_letters == n_files
    audit(settings, summary_store, _candids(d), dead_expected=len(poison))


def test_postgres_down_then_back_and_down_for_good(tmp_path, night, postgres_dsn):
    """An embedded PostgreSQL of its own, stopped for a few seconds mid-night: retried and completed; stopped for
    good: the run stops cleanly, commits nothing, and a restart completes the night."""
    pg = EmbeddedPostgres(tmp_path / "pg")
    try:
        store = SummaryStore(pg.dsn)
        settings = _settings(tmp_path, str(night), pg.dsn, pg_retry_s=60)
        original = Broker.finish
        finished = {"n": 0, "stopped": 0}

        def finish_with_a_restart(self, job):
            finished["n"] += 1
            if finished["n"] == 2:
                finished["stopped"] += 1
                stop_postgres(pg)
                threading.Timer(4.0, start_postgres, (pg,)).start()
            return original(self, job)

        Broker.finish = finish_with_a_restart
        try:
            report = run(settings)
        finally:
            Broker.finish = original
        assert report.status == "ok" and finished["stopped"] == 1
        audit(settings, SummaryStore(pg.dsn), _candids(night))

        # down for good: a clear stop, nothing committed past the sinks
        settings2 = _settings(tmp_path / "again", str(night), pg.dsn, pg_retry_s=3)

        finished["n"] = 0

        def finish_then_die(self, job):
            finished["n"] += 1
            if finished["n"] == 2:
                stop_postgres(pg)
            return original(self, job)

        Broker.finish = finish_then_die
        try:
            with pytest.raises(PostgresUnavailable, match="unreachable"):
                run(settings2)
        finally:
            Broker.finish = original
        start_postgres(pg)
        report = run(settings2)  # the restart completes the night
        assert report.status == "ok"
        store = SummaryStore(pg.dsn)
        assert store.fetch_df("SELECT count(*) AS n FROM alert")["n"].iloc[0] == len(_candids(night))
    finally:
        pg.stop()


def _postmasters(data_dir: Path) -> list[int]:
    import psutil

    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "postgres" in cmd and str(data_dir) in cmd:
            out.append(proc.info["pid"])
    return out


def _kill_after_three_batches(cmd: list[str], out: Path) -> dict[str, str]:
    """Start ``broker run-night`` (``cmd``) in its own process group, SIGKILL the whole group once three batches'
    alert files are in the lake, and return the environment it ran with (for the restart)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    alerts = out / "lake" / "alerts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = list(alerts.rglob("*.parquet")) if alerts.exists() else []
        if len(done) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the night ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    time.sleep(1)
    return env


def test_the_driver_killed_mid_night_then_restarted(tmp_path, night):
    """SIGKILL of the driver's whole process group mid-night, then the same command with --resume: it skips the
    batches committed, redoes those written but not committed (retiring their files), and completes; the
    embedded PostgreSQL the killed run left is adopted and stopped at the end."""
    import subprocess
    import sys

    out = tmp_path / "out"
    cmd = [
        str(Path(sys.executable).with_name("broker")), "run-night", "--source", str(night), "--out", str(out),
        "--batch-size", "10", "--n-workers", "1", "--no-progress", "--dashboard-address", ":0",
        "--lc-model", "none", "--stamp-model", "none", "--no-features",
    ]  # fmt: skip
    env = _kill_after_three_batches(cmd, out)
    left = _postmasters(out / "pg")
    # the killed run's embedded PostgreSQL may survive it (the wheel starts it in its own session) ...
    again = subprocess.run(
        cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    if left:
        assert "adopting the embedded PostgreSQL" in again.stderr
    # ... and the next run adopts it knowingly and stops it at its end: nothing of either run is left
    time.sleep(1)
    assert _postmasters(out / "pg") == []
    with EmbeddedPostgres(out / "pg") as pg:
        store = SummaryStore(pg.dsn)
        settings = _settings(tmp_path, str(night), pg.dsn)
        audit(settings, store, _candids(night))
        store.close()


def _produce_night(bootstrap: str, night: Path) -> str:
    import uuid

    from alert_broker.pipeline.kafka import ensure_topic, produce

    topic = f"faults-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, partitions=2)
    produce(bootstrap, topic, [(f.name, f.read_bytes()) for f in sorted(night.glob("*.avro"))])
    return topic


def _committed_total(bootstrap: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


def test_a_worker_killed_mid_batch_on_a_kafka_source(tmp_path, night, summary_store, kafka_bootstrap):
    topic = _produce_night(kafka_bootstrap, night)
    group = f"faults-{os.getpid()}-{time.monotonic_ns()}"
    settings = _settings(
        tmp_path,
        f"kafka://{kafka_bootstrap}/{topic}",
        summary_store.dsn,
        kafka_group=group,
        kafka_idle_stop_s=5,
    )
    killed, report = _run_killing_a_worker(settings)
    assert killed and report.status == "ok"
    audit(settings, summary_store, _candids(night))
    assert _committed_total(kafka_bootstrap, group, topic) == len(list(night.glob("*.avro")))


def test_the_driver_killed_mid_night_on_a_kafka_source_then_restarted(tmp_path, night, kafka_bootstrap):
    """As above with a topic: the restarted driver resumes from the committed offsets; every alert once, the
    committed offsets at the end of the topic. (The idle stop outlasts the dead member's 6 s session, after
    which the group gives the restarted driver the partitions.)"""
    import subprocess
    import sys

    topic = _produce_night(kafka_bootstrap, night)
    group = f"faults-{os.getpid()}-{time.monotonic_ns()}"
    out = tmp_path / "out"
    cmd = [
        str(Path(sys.executable).with_name("broker")), "run-night", "--source", f"kafka://{kafka_bootstrap}/{topic}",
        "--kafka-group", group, "--kafka-idle-stop-s", "12", "--out", str(out), "--batch-size", "10",
        "--batch-timeout-s", "1", "--n-workers", "1", "--no-progress", "--dashboard-address", ":0",
        "--lc-model", "none", "--stamp-model", "none", "--no-features", "--no-publish-lake",
    ]  # fmt: skip
    env = _kill_after_three_batches(cmd, out)
    committed_at_kill = _committed_total(kafka_bootstrap, group, topic)
    assert committed_at_kill < len(list(night.glob("*.avro")))
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    time.sleep(1)
    assert _postmasters(out / "pg") == []
    with EmbeddedPostgres(out / "pg") as pg:
        store = SummaryStore(pg.dsn)
        settings = _settings(tmp_path, f"kafka://{kafka_bootstrap}/{topic}", pg.dsn)
        audit(settings, store, _candids(night))
        store.close()
    assert _committed_total(kafka_bootstrap, group, topic) == len(list(night.glob("*.avro")))
