"""make bench's CPU accounting: the budget arithmetic, the processing-window difference, and a real child
process's CPU counted as a worker's."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.run_bench import PeakRSS, cpu_budget, settle


def test_cpu_budget_arithmetic():
    # 1000 alerts, 1.5 s of CPU in all; decoding alone runs at 2000 alerts/s on a core (0.5 ms each)
    b = cpu_budget({"driver": 0.25, "postgres": 0.25, "workers": 1.0}, 1000, 2000.0)
    assert b == {"driver": 0.25, "postgres": 0.25, "workers": 1.0, "total": 1.5, "cpu_bound_ratio": 0.333}


def test_cpu_between_takes_the_window():
    mem = PeakRSS()
    zero = {"driver": 0.0, "postgres": 0.0, "workers": 0.0}
    mem.cpu_samples = [
        (10.0, zero),
        (11.0, {"driver": 0.1, "postgres": 0.0, "workers": 0.5}),
        (12.0, {"driver": 0.3, "postgres": 0.1, "workers": 1.5}),
        (13.0, {"driver": 0.4, "postgres": 0.1, "workers": 2.0}),
    ]
    got = mem.cpu_between(11.2, 11.9)  # from the sample at 11.0 to the one at 12.0
    assert got == pytest.approx({"driver": 0.2, "postgres": 0.1, "workers": 1.0})


def test_a_busy_child_counts_as_a_worker():
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
    with PeakRSS(interval=0.05, rescan=0.05) as mem:  # a child started after the sampler: found at a rescan
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", burn])
        time.sleep(0.3)
        proc.wait(timeout=30)
        time.sleep(0.1)
        t1 = time.perf_counter()
    cpu = mem.cpu_between(t0, t1)
    # the child burnt ~0.6 s; the last sample before it exited caught most of it
    assert 0.3 <= cpu["workers"] <= 1.5


def test_settle_deletes_each_output_once_no_later_run_reads_it(tmp_path):
    """The core run's lake survives its own run (the "again" run reads it) and goes after "again"; every other
    run's output goes as soon as it is done."""
    labels = ("core", "no-history", "stamps", "features")
    for label in labels:
        (tmp_path / f"out-{label}").mkdir()
    settle(tmp_path, "core")
    assert (tmp_path / "out-core").is_dir()
    settle(tmp_path, "again")
    assert not (tmp_path / "out-core").exists()
    for label in labels[1:]:
        assert (tmp_path / f"out-{label}").is_dir()
        settle(tmp_path, label)
        assert not (tmp_path / f"out-{label}").exists()


def test_a_child_started_between_rescans_has_all_its_cpu_counted():
    """Found at the first rescan after it started, a process is counted from its own start, not from then."""
    burn = (
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
        "print('burnt', flush=True)\ntime.sleep(30)\n"
    )
    with PeakRSS(interval=0.05, rescan=1.0) as mem:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE, text=True)
        try:
            # its CPU is spent before the sampler can list it
            assert proc.stdout.readline().strip() == "burnt"
            time.sleep(1.3)  # past the next rescan
            t1 = time.perf_counter()
            time.sleep(0.2)  # a sample after t1
        finally:
            proc.kill()
            proc.wait(timeout=30)
    assert 0.35 <= mem.cpu_between(t0, t1)["workers"] <= 1.5
