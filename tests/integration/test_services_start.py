"""A run whose start fails part-way stops what had started: the embedded PostgreSQL is not left running."""

from __future__ import annotations

import os

import pytest

from alert_broker.pipeline import driver
from alert_broker.pipeline.config import load_settings


def test_a_cluster_that_fails_to_start_stops_the_embedded_postgres(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    overrides = {"out": str(tmp_path / "out"), "lc_model": "none", "stamp_model": "none", "progress": False}
    settings = load_settings(None, overrides=overrides, env=env)

    def no_cluster(**_kw):
        assert (settings.pg_data_dir / "postmaster.pid").exists()  # PostgreSQL is up by now
        raise RuntimeError("no cluster today")

    monkeypatch.setattr(driver, "LocalCluster", no_cluster)
    with pytest.raises(RuntimeError, match="no cluster today"), driver.Services(settings):
        pass
    assert not (settings.pg_data_dir / "postmaster.pid").exists()  # stopped, not orphaned
