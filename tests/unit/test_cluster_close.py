"""A LocalCluster that does not close in time is given up on with a warning, not waited for without end."""

from __future__ import annotations

import logging

import pytest

from alert_broker.pipeline.driver import close_local_cluster


class _Cluster:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.timeouts: list[float | None] = []

    def close(self, timeout=None):
        self.timeouts.append(timeout)
        if self.error is not None:
            raise self.error


def test_a_cluster_is_closed_with_a_bound():
    cluster = _Cluster()
    close_local_cluster(cluster, timeout=7.0)
    assert cluster.timeouts == [7.0]  # never distributed's default of no limit


@pytest.mark.parametrize("error", [TimeoutError("timed out after 7 s"), OSError("comm closed")])
def test_a_close_that_times_out_or_fails_is_a_warning(caplog, error):
    caplog.set_level(logging.WARNING, logger="alert_broker.pipeline.driver")
    logging.getLogger("alert_broker").propagate = True  # caplog listens on the root logger
    close_local_cluster(_Cluster(error), timeout=7.0)
    (record,) = [r for r in caplog.records if r.name == "alert_broker.pipeline.driver"]
    assert record.levelno == logging.WARNING and "did not close within 7 s" in record.getMessage()
    assert type(error).__name__ in record.getMessage()
