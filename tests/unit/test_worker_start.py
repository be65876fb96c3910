"""The worker start method: validated, and Dask's spawn where the platform has no fork server."""

from __future__ import annotations

import multiprocessing

import pytest

from alert_broker.pipeline.worker_start import available, prepare_worker_start, worker_start_config


def test_methods_and_the_fallback(monkeypatch):
    key = "distributed.worker.multiprocessing-method"
    assert worker_start_config("spawn") == {key: "spawn"}
    assert prepare_worker_start("spawn") == {}  # a spawned worker inherits the environment itself
    with pytest.raises(ValueError, match="not 'fork'"):
        available("fork")
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])  # e.g. Windows
    assert available("forkserver") == "spawn"
    assert worker_start_config("forkserver") == {key: "spawn"}
    assert prepare_worker_start("forkserver") == {}
