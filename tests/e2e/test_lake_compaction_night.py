"""End to end: a real night's lake compacted (``broker lake compact``, ``--compact-lake``) keeps every row once,
and a repair and a full replay after it still leave every alert in the lake exactly once (docs/lake-tables.md).

Real alerts, a real Dask LocalCluster, a real PostgreSQL, a local lake.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from alert_broker.pipeline import integrity
from alert_broker.pipeline.cli import main
from alert_broker.pipeline.driver import run
from alert_broker.storage import NATURAL_KEYS, Lake, compaction, manifest
from tests.fixtures.night import copy_alerts, night_settings

pytestmark = pytest.mark.e2e

N = 120
TABLES = ("alerts", "objects", "magstats", "detections", "non_detections", "neighbours")


@pytest.fixture(scope="module")
def night_dir(tmp_path_factory, shared_data) -> Path:
    return copy_alerts(
        shared_data / "ztf" / "fink_sample_1166", tmp_path_factory.mktemp("compaction-night"), N
    )


def _drop_batch_rows(lake: Lake, path: str, batch_id: str) -> int:
    """Damage: a batch's rows taken out of a compacted (local) file, as if they had been lost. Returns how many."""
    pf = pq.ParquetFile(path)
    meta, table = pf.schema_arrow.metadata, pf.read()
    keep = pc.invert(pc.fill_null(pc.equal(table.column("batch_id"), batch_id), False))
    kept = table.filter(keep)
    if kept.num_rows < table.num_rows:
        lake.write_whole(kept.replace_schema_metadata(meta), path)
    return table.num_rows - kept.num_rows


def _tables(lake: Lake) -> dict[str, pd.DataFrame]:
    """Every stored row of each table (no dedupe), without the write-dependent columns, in a stable order."""
    out = {}
    for t in TABLES:
        df = lake.read_table(t)
        key = [k for k in NATURAL_KEYS[t] if k in df.columns]
        out[t] = (
            df.drop(columns=[c for c in ("written_at",) if c in df.columns])
            .sort_values([*key, "batch_id"])
            .reset_index(drop=True)[sorted(df.columns)]
        )
    return out


def _per_batch_folders(lake: Lake) -> dict[str, int]:
    """Files per night folder of the per-batch tables (not the raw archive, not the history store)."""
    counts: dict[str, int] = {}
    for t in TABLES:
        for f in lake.list_files(t):
            counts[os.path.dirname(f)] = counts.get(os.path.dirname(f), 0) + 1
    return counts


def test_compacted_night_survives_a_repair_and_a_replay(
    tmp_path, night_dir, summary_store, monkeypatch, capsys
):
    settings = night_settings(tmp_path, str(night_dir), summary_store.dsn)
    assert run(settings).alerts == N
    lake = Lake(settings.lake)
    before = _tables(lake)
    folders = _per_batch_folders(lake)
    assert max(folders.values()) >= 3  # three batches of 40, region files each

    # 1. the CLI compacts every folder the committed batches wrote: one file each, the same rows
    for k in [k for k in os.environ if k.startswith("BROKER_")]:
        monkeypatch.delenv(k)
    flags = ["--out", str(settings.out), "--pg-dsn", summary_store.dsn]
    assert main(["lake", "status", "--out", str(settings.out), "--json"]) == 0
    due = {r["table"]: r for r in json.loads(capsys.readouterr().out)}
    assert due["alerts"]["folders_to_compact"] > 0 and due["raw"]["folders_to_compact"] == 0
    assert main(["lake", "compact", *flags]) == 0
    capsys.readouterr()
    assert main(["lake", "status", "--out", str(settings.out), "--json"]) == 0
    done = {r["table"]: r for r in json.loads(capsys.readouterr().out)}
    assert all(r["folders_to_compact"] == 0 for r in done.values()), done
    assert done["alerts"]["compacted_files"] == due["alerts"]["folders_to_compact"]
    assert done["alerts"]["files"] == due["alerts"]["folders"]
    assert set(_per_batch_folders(lake).values()) == {1}
    (row,) = summary_store.fetch_df(
        "SELECT status, counts FROM pipeline_run WHERE source = %s", (compaction.RUN_SOURCE,)
    ).itertuples()
    assert row.status == "ok" and row.counts["folders"] >= len([n for n in folders.values() if n > 1])
    assert row.counts["files_merged"] >= sum(n for n in folders.values() if n > 1)
    assert all(os.path.basename(f).startswith("compacted-") for t in TABLES for f in lake.list_files(t)
               if folders[os.path.dirname(f)] > 1)  # fmt: skip
    after = _tables(lake)
    for t in TABLES:
        pd.testing.assert_frame_equal(before[t], after[t], check_dtype=False, obj=t)
    scan = integrity.scan(settings)
    assert scan.clean and scan.missing_total == 0 and scan.duplicates.empty

    # 2. damage: the second batch's alerts lost from the compacted alerts files; --repair re-runs that batch,
    #    which takes its rows out of every compacted file and writes them again
    second = manifest.batches(summary_store, f"archive:{night_dir.name}").sort_values("first_offset").iloc[1]
    lost = 0
    for f in lake.list_files("alerts"):
        lost += _drop_batch_rows(lake, f, second["batch_id"])
    assert lost > 0
    damaged = integrity.scan(settings)
    assert int(damaged.missing["missing_lake"].sum()) == lost
    run_flags = [*flags, "--source", str(night_dir), "--batch-size", "40", "--n-workers", "1",
                 "--threads-per-worker", "2", "--dashboard-address", ":0", "--no-progress",
                 "--lc-model", "none", "--stamp-model", "none"]  # fmt: skip
    assert main(["integrity", *run_flags, "--repair"]) == 0
    repaired = _tables(lake)
    for t in TABLES:
        keys = [k for k in NATURAL_KEYS[t] if k in before[t].columns]
        assert len(repaired[t]) == len(before[t]), t
        pd.testing.assert_frame_equal(repaired[t][keys], before[t][keys], obj=t)
    assert integrity.scan(settings).clean

    # 3. a full replay of the night with --compact-lake: every batch retired from the compacted files and
    #    written again, then folded again; each alert once
    report = run(night_settings(tmp_path, str(night_dir), summary_store.dsn, compact_lake=True))
    assert report.alerts == N and report.lake_compaction["folders"] > 0
    assert report.lake_compaction["files_written"] == report.lake_compaction["folders"]
    assert set(_per_batch_folders(lake).values()) == {1}
    replayed = _tables(lake)
    for t in TABLES:
        keys = [k for k in NATURAL_KEYS[t] if k in before[t].columns]
        pd.testing.assert_frame_equal(replayed[t][keys], before[t][keys], obj=t)
    final = integrity.scan(settings)
    assert final.clean and final.duplicates.empty
    assert summary_store.count("lake_compaction") == 0
    # the manifest lists, for each batch, exactly the files holding its rows
    for _, b in manifest.batches(summary_store).iterrows():
        for f in b["files"]:
            if "/history/" in f or "/raw/" in f or not os.path.exists(f):
                continue
            ids = set(pq.read_table(f, columns=["batch_id"]).column("batch_id").to_pylist())
            assert b["batch_id"] in ids or not compaction.is_compacted(f), f
