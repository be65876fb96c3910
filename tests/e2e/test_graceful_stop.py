"""SIGTERM (Kubernetes stopping the driver's pod) and Ctrl-C (SIGINT to the terminal's whole process group) stop a
night cleanly: the batches in flight are committed, nothing is left running, and the same command resumes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, TopicPartition

from alert_broker.pipeline.kafka import ensure_topic, produce
from alert_broker.storage import Lake, SummaryStore
from alert_broker.storage.embedded import EmbeddedPostgres

pytestmark = pytest.mark.e2e

BROKER = Path(sys.executable).parent / "broker"


def _start(source: Path | str, out: Path, log: Path, *more: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    args = [
        "run-night",
        "--source",
        str(source),
        "--out",
        str(out),
        "--batch-size",
        "40",
        "--no-progress",
        *more,
    ]
    with open(log, "w") as fh:  # its own session: a signal to its process group reaches nothing else
        return subprocess.Popen(
            [str(BROKER), *args, "--dashboard-address", ":0"],
            cwd=out.parent, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop_while_processing(
    proc: subprocess.Popen, log: Path, group: bool, sig: int, started: str = "classifiers:"
) -> list[psutil.Process]:
    """Signal ``proc`` (or its whole process group, as a terminal's Ctrl-C does) once it processes batches;
    returns the processes it had started (Dask workers, the fork server, PostgreSQL)."""
    deadline = time.monotonic() + 180
    while started not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    time.sleep(3.0)  # a few batches in flight
    children = psutil.Process(proc.pid).children(recursive=True)
    assert proc.poll() is None, "the night ended before the signal: make it longer"
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    proc.wait(120)
    return children


def _stored(out: Path) -> tuple[list[int], list[int]]:
    """The candids in the lake and in PostgreSQL."""
    lake = Lake(str(out / "lake")).read_table("alerts", columns=["candid"])["candid"].tolist()
    with EmbeddedPostgres(out / "pg") as pg:
        pg_candids = SummaryStore(pg.dsn).fetch_df("SELECT candid FROM alert")["candid"].tolist()
    return lake, pg_candids


def test_sigint_and_sigterm_stop_after_the_batches_in_flight_and_the_same_command_resumes(
    tmp_path, shared_data
):
    if not BROKER.exists():
        pytest.skip(f"the broker script is not installed next to {sys.executable} (run make setup)")
    night = tmp_path / "night"
    night.mkdir()
    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[
        :600
    ]  # ~250 read per stopped run
    for f in files:
        shutil.copy(f, night / f.name)
    out = tmp_path / "out"
    out.mkdir()

    seen: list[int] = []
    for n, (group, sig) in enumerate([(True, signal.SIGINT), (False, signal.SIGTERM)]):
        log = tmp_path / f"run{n}.log"
        proc = _start(night, out, log)
        children = _stop_while_processing(proc, log, group, sig)
        text = log.read_text()
        assert proc.returncode == 128 + sig, text[-3000:]  # the shell's convention: stopped by that signal
        assert f"{signal.Signals(sig).name}: reading no more alerts" in text
        assert "(stopped)" in text and "Traceback" not in text, text[-3000:]
        # nothing left running: the workers, the fork server and the embedded PostgreSQL stopped with the run
        # (the fork server leaves on its own once it sees its driver gone)
        _, left = psutil.wait_procs(children, timeout=20)
        assert not left, [(p.pid, p.cmdline()[:3]) for p in left]
        assert not (out / "pg" / "postmaster.pid").exists()
        lake, pg = _stored(out)
        # what was committed, once in both
        assert len(lake) == len(set(lake)) and sorted(lake) == sorted(pg), (
            n,
            len(lake),
            len(set(lake)),
            len(pg),
            len(set(pg)),
            text[-4000:],
        )
        assert len(seen) <= len(lake) < len(files)  # went on from the last run, stopped before the end
        seen = lake

    # the same command again: the rest of the night, each alert once
    log = tmp_path / "run-final.log"
    proc = _start(night, out, log)
    assert proc.wait(300) == 0, log.read_text()[-3000:]
    lake, pg = _stored(out)
    assert len(lake) == len(set(lake)) == len(files) and sorted(lake) == sorted(pg)


def test_sigterm_in_continuous_kafka_mode_commits_exactly_what_is_stored(
    tmp_path, shared_data, kafka_bootstrap
):
    """The Kubernetes driver (``--kafka-idle-stop-s 0``) stopped by its pod's SIGTERM mid-stream: the consumer
    group's committed offsets cover exactly the alerts stored, and the next driver goes on from there."""
    if not BROKER.exists():
        pytest.skip(f"the broker script is not installed next to {sys.executable} (run make setup)")
    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:600]
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
