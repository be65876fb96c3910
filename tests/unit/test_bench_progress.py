"""bench_million: the sampler of the rolling run report (the rate and each step's cost per alert over parts of the
night, from the report's cumulative counters: a rate that falls must show which step grows), and the pointings of
its calibration run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.bench_million import ProgressSampler


def _report(folder, seconds, alerts, decode, history, postgres):
    summary = {
        "processing_seconds": seconds,
        "alerts_written": alerts,
        "worker_seconds": {"decode": decode, "history": history},
        "step_seconds": {"postgres": postgres},
    }
    (folder / "run-x.json").write_text(json.dumps({"summary": summary}))


def test_rates_and_costs_by_part(tmp_path):
    # 1000 alerts in the first 10 s, 500 in the next 10 s: decode stays 1 ms an alert, history grows 1 -> 4 ms
    sampler = ProgressSampler(tmp_path)
    for point in [
        (5, 500, 0.5, 0.5, 0.1),
        (10, 1000, 1.0, 1.0, 0.2),
        (10, 1000, 1.0, 1.0, 0.2),
        (20, 1500, 1.5, 3.0, 0.4),
    ]:
        _report(tmp_path, *point)
        sampler.sample()
    assert len(sampler.samples) == 3  # the unchanged report is one point
    assert sampler.rates(2) == [100.0, 50.0]
    first, second = sampler.ms_per_alert(2)
    assert first == {"driver postgres": 0.2, "worker decode": 1.0, "worker history": 1.0}
    assert second == {"driver postgres": 0.4, "worker decode": 1.0, "worker history": pytest.approx(4.0)}


def test_no_samples_no_parts(tmp_path):
    sampler = ProgressSampler(tmp_path)
    assert sampler.rates(5) == [] and sampler.ms_per_alert(5) == []


def test_calibration_uses_the_nights_pointings():
    from bench.bench_million import ALERTS_PER_OBJECT_GUESS, night_fields

    # 10^6 alerts: ~2.9 M objects, over the 800 pointings a ZTF night can visit
    assert night_fields(1_000_000) == 800
    # 10^4 alerts: 28,571 objects at 500 a pointing
    assert night_fields(10_000) == int(np.ceil(10_000 / ALERTS_PER_OBJECT_GUESS / 500)) == 58
    assert night_fields(500) == 40  # never fewer than 40 (cadence and conditions vary across them)


def test_the_last_part_ends_at_the_last_sample_even_when_the_division_rounds_down(tmp_path):
    # 5 * 29.64 / 5 is 29.639999999999997 in floating point: no sample lies at or after the last part's end
    assert 5 * 29.64 / 5 < 29.64
    sampler = ProgressSampler(tmp_path)
    for point in [(10.0, 1000, 1.0, 1.0, 0.1), (29.64, 2964, 2.964, 2.964, 0.2964)]:
        _report(tmp_path, *point)
        sampler.sample()
    parts = sampler.ms_per_alert(5)
    assert len(parts) == 5 and parts[-1]["worker decode"] == pytest.approx(1.0)
    assert sampler.rates(5)[-1] == pytest.approx(100.0)
