"""SIGTERM (Kubernetes stopping the driver's pod) and Ctrl-C (SIGINT to the terminal's whole process group) stop a
night cleanly: the batches in flight are committed, nothing is left running, and the same command with --resume
goes on from there."""

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

from alert_broker.storage import Lake, SummaryStore
from alert_broker.storage.embedded import EmbeddedPostgres

pytestmark = pytest.mark.e2e

BROKER = Path(sys.executable).parent / "broker"
#: alerts per night, in batches of 40: a run stopped 1.5 s into its processing has read ~100-200 of them
N_FILES, BATCH = 400, "40"


def _start(source: Path | str, out: Path, log: Path, *more: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    args = ["run-night", "--source", str(source), "--out", str(out), "--batch-size", BATCH, "--no-progress"]
    args += more
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
    time.sleep(1.5)  # a few batches in flight
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


def test_sigint_and_sigterm_stop_after_the_batches_in_flight_and_resume_goes_on(tmp_path, shared_data):
    if not BROKER.exists():
        pytest.skip(f"the broker script is not installed next to {sys.executable} (run make setup)")
    night = tmp_path / "night"
    night.mkdir()
    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:N_FILES]
    for f in files:
        shutil.copy(f, night / f.name)
    out = tmp_path / "out"
    out.mkdir()

    seen: list[int] = []
    for n, (group, sig) in enumerate([(True, signal.SIGINT), (False, signal.SIGTERM)]):
        log = tmp_path / f"run{n}.log"
        proc = _start(night, out, log)  # the second from the start again, retiring only what it overlaps
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
        assert len(seen) <= len(lake) < len(files), len(lake)  # kept the last run's, stopped before the end
        seen = lake

    # the same command with --resume: only the rest of the night, then each alert once
    log = tmp_path / "run-final.log"
    proc = _start(night, out, log, "--resume")
    assert proc.wait(300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert f"messages read     {len(files) - len(seen)} (resumed: {len(seen)} committed earlier" in text, (
        text[-2000:]
    )
    lake, pg = _stored(out)
    assert len(lake) == len(set(lake)) == len(files) and sorted(lake) == sorted(pg)
