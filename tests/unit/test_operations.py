"""What an operator relies on in a long run: bounded report aggregates whose percentiles and counts agree with
an exact computation, progress lines without a terminal, the Prometheus endpoint, --adapt parsing, and the
per-alert production time carried to PostgreSQL."""

from __future__ import annotations

import logging
import urllib.request

import numpy as np
import pandas as pd
import pytest

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import _with_produced_at, alert_latencies
from alert_broker.pipeline.metrics import Metrics
from alert_broker.pipeline.progress import Progress
from alert_broker.pipeline.report import (
    KEEP_BATCHES,
    BatchReport,
    DistinctCounter,
    LatencyHistogram,
    RunReport,
)
from alert_broker.surveys.messages import RawMessage
from tests.fixtures.kafka import _free_port


def test_latency_histogram_percentiles_agree_with_numpy():
    rng = np.random.default_rng(3)
    values = rng.lognormal(mean=1.0, sigma=1.2, size=50_000)  # seconds, spanning ms to minutes
    h = LatencyHistogram()
    for chunk in np.array_split(values, 37):
        h.add(chunk)
    assert h.n == values.size and h.max == pytest.approx(values.max())
    for q in (0.5, 0.9, 0.99):
        exact = np.quantile(values, q)
        assert h.quantile(q) == pytest.approx(exact, rel=0.03)  # log bins of 4.7 %: half a bin


def test_latency_histogram_ignores_non_finite_and_is_empty_safe():
    h = LatencyHistogram()
    assert h.quantile(0.5) == 0.0
    h.add([np.nan, np.inf, 2.0])
    assert h.n == 1 and h.quantile(0.99) == pytest.approx(2.0, rel=0.03)


def test_distinct_counter_is_exact_then_estimates_within_two_percent(monkeypatch):
    small = DistinctCounter()
    small.update([f"ZTF{i}" for i in range(1000)] * 2)
    assert len(small) == 1000
    monkeypatch.setattr("alert_broker.pipeline.report.EXACT_OBJECTS", 10_000)
    big = DistinctCounter()
    n = 300_000
    for start in range(0, n, 50_000):
        ids = [f"obj{i}" for i in range(start, start + 50_000)]
        big.update(ids)
        big.update(ids[:1000])  # repeats do not count
    assert big.exact is None  # switched to the sketch: memory no longer grows with the objects
    assert abs(len(big) - n) / n < 0.02


def test_run_report_keeps_bounded_batches_and_exact_aggregates():
    report = RunReport(run_id="r", source="s", lake="l")
    walls = []
    for i in range(KEEP_BATCHES + 50):
        rep = BatchReport(batch_id=f"b{i}", messages=10, alerts=9, dead_letters=1)
        rep.wall = 0.5 + (i % 7) * 0.1
        rep.counts = {"alerts": 9, "alerts_ztf": 9}
        rep.object_ids = {f"o{i}", f"o{i + 1}"}
        walls.append(rep.wall)
        report.add(rep, alert_latencies=[1.0, 2.0])
    assert len(report.batches) == KEEP_BATCHES and report.n_batches == KEEP_BATCHES + 50
    report.finish("ok")
    s = report.summary()
    assert s["messages_read"] == 10 * (KEEP_BATCHES + 50) and s["alerts_written"] == 9 * (KEEP_BATCHES + 50)
    assert s["counts"]["alerts_ztf"] == 9 * (KEEP_BATCHES + 50)
    assert s["objects"] == KEEP_BATCHES + 51
    assert s["batch_seconds_p50"] == pytest.approx(np.median(walls), rel=0.05)
    assert s["alert_latency_seconds"]["n"] == 2 * (KEEP_BATCHES + 50)


def _batch_report(alerts: int) -> BatchReport:
    rep = BatchReport(batch_id="b", messages=alerts, alerts=alerts, dead_letters=0)
    rep.wall = 1.0
    return rep


def test_progress_logs_lines_without_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="alert_broker.pipeline.progress")
    report = RunReport(run_id="r", source="s", lake="l")
    with Progress(total=30, enabled=True, every_s=0.0, tty=False) as bar:
        for _ in range(3):
            report.add(_batch_report(10))
            bar.update(10, report)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert len(lines) == 4  # one per batch (every_s=0) and a last one
    assert lines[-1].startswith("progress: 30/30 messages") and "3 batches" in lines[-1]


def test_progress_on_a_terminal_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="alert_broker.pipeline.progress")
    report = RunReport(run_id="r", source="s", lake="l")
    with Progress(total=10, enabled=True, every_s=0.0, tty=True) as bar:
        report.add(_batch_report(10))
        bar.update(10, report)
    assert not [r for r in caplog.records if r.getMessage().startswith("progress:")]


def test_metrics_are_served_with_their_documented_names():
    metrics = Metrics()
    port = _free_port()
    metrics.serve(port, addr="127.0.0.1")
    rep = _batch_report(7)
    rep.counts = {"alerts_ztf": 4, "alerts_lsst": 3, "published_alerts": 7}
    rep.dead_letters = 2
    rep.seconds = {"postgres": 0.25}
    metrics.observe_batch(rep, alert_latencies=[0.4, 3.0, 70.0])
    metrics.consumer_lag.set(12)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['alert_broker_alerts_total{survey="ztf"}'] == 4
    assert samples['alert_broker_alerts_total{survey="lsst"}'] == 3
    assert samples["alert_broker_dead_letters_total"] == 2
    assert samples['alert_broker_published_total{stream="alerts"}'] == 7
    assert samples["alert_broker_consumer_lag_messages"] == 12
    assert samples["alert_broker_alert_latency_seconds_count"] == 3
    assert samples['alert_broker_alert_latency_seconds_bucket{le="60.0"}'] == 2
    assert samples['alert_broker_step_seconds_total{step="postgres",where="driver"}'] == 0.25


@pytest.mark.parametrize(
    ("text", "bounds"), [("1:4", (1, 4)), (" 0 : 2 ", (0, 2)), ("3:3", (3, 3)), ("", None)]
)
def test_adapt_bounds(text, bounds):
    assert load_settings(env={}, overrides={"adapt": text}).adapt_bounds == bounds


@pytest.mark.parametrize("text", ["4:1", "0:0", "2", "a:b", "-1:3"])
def test_bad_adapt_bounds_are_refused(text):
    with pytest.raises(ValueError, match="--adapt"):
        load_settings(env={}, overrides={"adapt": text})


def test_produced_at_follows_each_alerts_message():
    messages = [
        RawMessage("t", 0, 5, b"", timestamp=1_800_000_000.25),
        RawMessage("t", 1, 5, b"", timestamp=1_800_000_010.5),
        RawMessage("t", 1, 6, b"", timestamp=None),
    ]
    alerts = pd.DataFrame({"candid": [1, 2, 3], "partition": [1, 0, 1], "offset": [5, 5, 6]})
    out = _with_produced_at(alerts, messages)
    assert out["produced_at"].iloc[0] == pd.Timestamp(1_800_000_010.5, unit="s", tz="UTC")
    assert out["produced_at"].iloc[1] == pd.Timestamp(1_800_000_000.25, unit="s", tz="UTC")
    assert pd.isna(out["produced_at"].iloc[2])
    archive = [RawMessage("night", 0, 5, b"")]
    assert "produced_at" not in _with_produced_at(alerts, archive).columns
    lat = alert_latencies(messages, now=1_800_000_020.5)
    assert sorted(lat) == [10.0, 20.25]


def test_the_driver_cpu_per_alert_gives_the_one_driver_ceiling():
    report = RunReport(run_id="r", source="s", lake="l")
    report.add(_batch_report(500))
    report.driver_cpu_started, report.driver_cpu_ended = 10.0, 12.5  # 2.5 s of CPU for 500 alerts
    s = report.summary()
    assert s["driver_cpu_ms_per_alert"] == pytest.approx(5.0)
    assert s["driver_ceiling_alerts_per_second"] == pytest.approx(200.0)
    assert "tops out near 200.0 alerts/s" in report.render()
