"""The CLI as a user runs it: the installed ``broker`` script, in another working directory."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fastavro
import pytest

pytestmark = pytest.mark.e2e

BROKER = Path(sys.executable).parent / "broker"


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    return subprocess.run(
        [str(BROKER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_run_night_then_fetch_by_candid(tmp_path, shared_data, postgres_dsn, pg_database):
    if not BROKER.exists():
        pytest.skip(f"the broker script is not installed next to {sys.executable} (run make setup)")
    night = tmp_path / "night"
    night.mkdir()
    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:40]
    for f in files:
        shutil.copy(f, night / f.name)
    out = tmp_path / "out"
    common = ["--out", str(out), "--pg-dsn", pg_database]
    proc = _run(
        ["run-night", "--source", str(night), "--no-progress", "--dashboard-address", ":0", *common], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Dask dashboard:" in proc.stderr  # logged (stderr); the night summary is the stdout
    assert "alerts written    40" in proc.stdout
    assert "dead letters      0" in proc.stdout
    assert list((out / "reports").glob("run-*.md"))
    # the run, listed from PostgreSQL with its counts
    proc = _run(["runs", *common], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if "archive:night" in x]
    assert " ok " in line and "alerts_written 40" in line and "dead_letters 0" in line
    proc = _run(["runs", "--json", "--run-source", "archive:night", *common], tmp_path)
    (listed,) = json.loads(proc.stdout)
    assert listed["status"] == "ok" and listed["counts"]["messages_read"] == 40
    assert _run(["runs", "--run-source", "integrity", *common], tmp_path).stdout.startswith("no recorded run")

    with open(files[7], "rb") as fh:
        candid = str(next(fastavro.reader(fh))["candid"])
    dest = tmp_path / "fetched"
    proc = _run(["fetch", candid, "--dest", str(dest), *common], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (dest / f"{candid}.avro").read_bytes() == files[7].read_bytes()
    for stamp in ("science", "template", "difference"):
        assert (dest / f"{candid}_{stamp}.fits.gz").read_bytes()[:2] == b"\x1f\x8b"

    # the history store: compacted at the end of the run, and an object's light curve shown by id
    proc = _run(["history", "status", *common], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "0 delta files" in proc.stdout and "detections" in proc.stdout
    with open(files[3], "rb") as fh:
        rec = next(fastavro.reader(fh))
    proc = _run(["history", "show", "--oid", rec["objectId"], *common], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(rec["candid"]) in proc.stdout

    # --resume: a night already committed reads nothing and succeeds; an archive of that name holding fewer
    # packets than the committed offsets reach is refused (exit status 2), before anything is processed
    resume = ["run-night", "--no-progress", "--dashboard-address", ":0", "--resume", *common]
    proc = _run([*resume, "--source", str(night)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "messages read     0 (resumed: 40 committed earlier, skipped)" in proc.stdout
    other = tmp_path / "elsewhere" / "night"
    other.mkdir(parents=True)
    for f in files[:5]:
        shutil.copy(f, other / f.name)
    proc = _run([*resume, "--source", str(other)], tmp_path)
    assert proc.returncode == 2 and "cannot resume archive:night" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "Dask dashboard" not in proc.stderr  # refused before the cluster started
    # ... and so is one holding as many packets, with a file renamed: the committed offsets name other files
    renamed = tmp_path / "renamed" / "night"
    renamed.mkdir(parents=True)
    for f in files:
        shutil.copy(f, renamed / f.name)
    (renamed / files[0].name).rename(renamed / f"zz_{files[0].name}")
    proc = _run([*resume, "--source", str(renamed)], tmp_path)
    assert proc.returncode == 2 and "are not those an earlier run read" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Dask dashboard" not in proc.stderr


def test_run_night_help_lists_every_setting(tmp_path):
    if not BROKER.exists():
        pytest.skip(f"the broker script is not installed next to {sys.executable} (run make setup)")
    proc = _run(["run-night", "--help"], tmp_path, timeout=60)
    assert proc.returncode == 0
    for flag in (
        "--source",
        "--out",
        "--pg-dsn",
        "--lake-url",
        "--scheduler",
        "--batch-size",
        "--kafka-group",
    ):
        assert flag in proc.stdout
    assert "BROKER_PG_DSN" in proc.stdout


def test_run_night_on_a_kafka_cluster_that_does_not_answer_stops_before_starting(tmp_path):
    """A wrong address or a broker that is down: a clear error and exit status 4 within --kafka-connect-s, before
    the run starts PostgreSQL or a cluster (not a night that polls nothing until its idle stop)."""
    if not BROKER.exists():
        pytest.skip(f"the broker script is not installed next to {sys.executable} (run make setup)")
    out = tmp_path / "out"
    with _refusing_port() as port:
        args = ["run-night", "--source", f"kafka://127.0.0.1:{port}/alerts", "--out", str(out)]
        proc = _run([*args, "--kafka-connect-s", "2", "--no-progress"], tmp_path, timeout=120)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert f"no answer from Kafka at 127.0.0.1:{port} within 2 s" in proc.stderr
    assert not (out / "pg").exists() and not list(out.rglob("run-*.json"))  # nothing was started or reported
    # librdkafka's reason comes through the broker's logging, once, not one raw line per connection attempt
    rdkafka = [line for line in proc.stderr.splitlines() if "rdkafka#" in line]
    assert rdkafka and all("alert_broker.pipeline.kafka.librdkafka" in line for line in rdkafka)
    assert len(rdkafka) <= 2 and "Connection refused" in rdkafka[0], rdkafka

    # the same for the annotated output stream's cluster (the source here: the default archive)
    with _refusing_port() as port:
        args = ["run-night", "--output", f"kafka://127.0.0.1:{port}/annotated", "--out", str(out)]
        proc = _run([*args, "--kafka-connect-s", "2", "--no-progress"], tmp_path, timeout=120)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert f"output stream kafka://127.0.0.1:{port}/annotated: no answer from Kafka" in proc.stderr
    assert not (out / "pg").exists() and not list(out.rglob("run-*.json"))


def test_run_night_on_a_postgres_that_does_not_answer_stops_cleanly(tmp_path):
    """PostgreSQL down as the night starts: retried for --pg-retry-s as during a night, then exit status 3 with the
    reason (the password redacted), before the cluster starts or anything is read."""
    if not BROKER.exists():
        pytest.skip(f"the broker script is not installed next to {sys.executable} (run make setup)")
    out = tmp_path / "out"
    with _refusing_port() as port:
        dsn = f"postgresql://broker:hunter2pw@127.0.0.1:{port}/alerts"
        args = ["run-night", "--pg-dsn", dsn, "--pg-retry-s", "2", "--out", str(out), "--no-progress"]
        proc = _run(args, tmp_path, timeout=120)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "PostgreSQL unreachable for 2 s (creating the schema)" in proc.stderr
    assert "retrying in" in proc.stderr and "Traceback" not in proc.stderr
    assert "hunter2pw" not in proc.stderr + proc.stdout
    assert not list(out.rglob("run-*.json"))


@contextlib.contextmanager
def _refusing_port() -> Iterator[int]:
    """A port bound but never listening while the block runs: every connection to it is refused, and nothing
    else can take it meanwhile (a port closed at once could be taken by another test's server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]
