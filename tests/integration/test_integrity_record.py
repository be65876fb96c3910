"""An integrity check's ``pipeline_run`` row on real PostgreSQL: a check that stops records ``failed``."""

from __future__ import annotations

import os

import pytest

from alert_broker.pipeline import integrity
from alert_broker.pipeline.config import load_settings

pytestmark = pytest.mark.integration


def test_a_check_that_raises_is_recorded_failed_with_its_secrets_masked(tmp_path, summary_store):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    settings = load_settings(
        env=env, overrides={"source": str(tmp_path), "out": str(tmp_path), "pg_dsn": summary_store.dsn,
                            "s3_secret": "hunter2"},
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="reader gone"), integrity.recorded_check(settings, repair=True):
        raise RuntimeError("reader gone")
    (row,) = summary_store.fetch_df(
        "SELECT status, finished_at, config, summary FROM pipeline_run WHERE source = %s",
        (integrity.RUN_SOURCE,),
    ).itertuples(index=False)
    assert row.status == "failed" and row.finished_at is not None
    assert row.config["repair"] is True and row.config["s3_secret"] == "***"
    assert "hunter2" not in str(row.config)
