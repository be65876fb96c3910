"""Prometheus metrics of the driver (docs/operations.md lists them): what an operator graphs beside the Dask
dashboard's own. Served over HTTP at ``--metrics-port`` (0: off).

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` units); every metric is prefixed
``alert_broker_``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

#: Batch latency buckets (seconds): a batch takes ~1-5 s on a small machine; LSST's budget is 60 s.
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 300)


@dataclass
class Metrics:
    """The driver's metrics, in a registry of their own (tests may create several)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter(
            "alert_broker_messages_total", "Raw messages read from the sources", registry=r
        )
        self.alerts = Counter(
            "alert_broker_alerts_total", "Alerts processed and stored", ["survey"], registry=r
        )
        self.dead_letters = Counter("alert_broker_dead_letters_total", "Messages dead-lettered", registry=r)
        self.published = Counter(
            "alert_broker_published_total", "Messages published on the output streams", ["stream"], registry=r
        )
        self.batches = Counter("alert_broker_batches_total", "Batches committed", ["outcome"], registry=r)
        self.batch_latency = Histogram(
            "alert_broker_batch_latency_seconds",
            "From a batch's submission to its commit",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.alert_latency = Histogram(
            "alert_broker_alert_latency_seconds",
            "From the alert's Kafka timestamp (its production) to its batch's commit",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.step_seconds = Counter(
            "alert_broker_step_seconds_total",
            "Time per step (driver wall or worker CPU)",
            ["step", "where"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "alert_broker_consumer_lag_messages", "Messages in the input topics not yet committed", registry=r
        )
        self.workers = Gauge("alert_broker_workers", "Dask workers connected", registry=r)
        self.in_flight = Gauge(
            "alert_broker_batches_in_flight", "Batches submitted and not yet committed", registry=r
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from other pods
        """Expose ``/metrics`` on ``port``."""
        start_http_server(port, addr=addr, registry=self.registry)

    def observe_batch(self, report, alert_latencies=None) -> None:
        """One committed batch (a ``BatchReport``)."""
        self.messages.inc(report.messages)
        for key, n in report.counts.items():
            if key.startswith("alerts_"):
                self.alerts.labels(survey=key[len("alerts_") :]).inc(n)
            elif key.startswith("published_"):
                self.published.labels(stream=key[len("published_") :]).inc(n)
        if not any(k.startswith("alerts_") for k in report.counts):
            self.alerts.labels(survey="all").inc(report.alerts)
        self.dead_letters.inc(report.dead_letters)
        self.batches.labels(outcome="poison" if report.counts.get("poison_batches") else "ok").inc()
        self.batch_latency.observe(report.wall)
        for seconds in () if alert_latencies is None else alert_latencies:
            self.alert_latency.observe(seconds)
        for step, s in report.seconds.items():
            self.step_seconds.labels(step=step, where="driver").inc(s)
        for step, s in report.worker_seconds.items():
            self.step_seconds.labels(step=step, where="workers").inc(s)
