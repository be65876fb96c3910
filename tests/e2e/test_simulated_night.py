"""A simulated ZTF night (SOURCE=sim) goes through the whole pipeline like a real one, with the truth intact."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import run
from alert_broker.storage import Lake

pytestmark = pytest.mark.e2e


def test_sim_night_end_to_end(tmp_path, summary_store):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    settings = load_settings(
        env=env,
        overrides=dict(
            source="sim",
            sim_objects=1500,
            sim_seed=3,
            out=str(tmp_path / "out"),
            pg_dsn=summary_store.dsn,
            n_workers=1,
            threads_per_worker=2,
            batch_size=200,
            dashboard_address=":0",
            progress=False,
        ),
    )
    report = run(settings)
    assert report.status == "ok" and report.alerts > 100
    assert report.dead_letters == 0  # every simulated alert is valid for the real decoder
    assert report.messages == report.alerts

    lake = Lake(settings.lake)
    alerts = lake.read_table("alerts", columns=["oid", "candid", "night"])
    assert alerts["candid"].is_unique and alerts["night"].nunique() == 1  # one observing night
    truth = pd.read_parquet(next((tmp_path / "out" / "sim").glob("*-truth.parquet")))
    assert set(alerts["oid"]) <= set(truth["oid"])
    # forced photometry (ZTF 4.02 fp_hists) is simulated and lands in its table
    assert len(lake.read_table("forced_photometry", columns=["oid"])) > 0
    assert summary_store.count("object") == alerts["oid"].nunique()
