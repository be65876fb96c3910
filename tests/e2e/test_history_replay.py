"""Light-curve history across nights: the six object_sequences objects replayed night by night over several
`run-night` invocations end with the same light curves, magstats and features as one run over every alert.

Each invocation starts its own Dask cluster, so workers never carry a cache from one to the next: the stored
history is the only memory, as after a worker restart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pytest

from alert_broker.features.night import SITES, observing_night
from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import run
from alert_broker.storage import Lake, SummaryStore
from alert_broker.storage.history import HistoryStore
from tests.fixtures.services import new_database

pytestmark = pytest.mark.e2e


def _alerts(shared_data: Path) -> pd.DataFrame:
    """Every readable alert file of object_sequences with its oid, time, night and the detections it carries."""
    rows = []
    for f in sorted((shared_data / "ztf" / "object_sequences").rglob("*.avro")):
        try:
            with open(f, "rb") as fh:
                rec = next(iter(fastavro.reader(fh)))
        except Exception:  # noqa: BLE001 - the HTML pages and the corrupt file: dead letters, not history
            continue
        cand = rec["candidate"]
        prv = rec.get("prv_candidates") or []
        carried = {int(cand["candid"])} | {int(p["candid"]) for p in prv if p.get("candid") is not None}
        rows.append(
            {
                "path": f,
                "oid": rec["objectId"],
                "jd": cand["jd"],
                "candids": carried,
                "own": int(cand["candid"]),
            }
        )
    df = pd.DataFrame(rows)
    df["night"] = observing_night(df["jd"].to_numpy() - 2400000.5, SITES["ztf"])
    return df.sort_values("jd").reset_index(drop=True)


def _folder(root: Path, name: str, files: pd.DataFrame) -> Path:
    d = root / name
    d.mkdir()
    for row in files.itertuples():
        os.symlink(row.path, d / f"{row.oid}_{row.path.name}")
    return d


def _run(source: Path, out: Path, dsn: str, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    overrides = dict(
        source=str(source),
        out=str(out),
        pg_dsn=dsn,
        n_workers=2,
        threads_per_worker=1,
        batch_size=40,
        dashboard_address=":0",
        progress=False,
        lc_model="none",  # the history, features and object state are compared, not classes: no TensorFlow
        stamp_model="none",
        publish_lake=False,
    )
    overrides.update(kw)
    report = run(load_settings(env=env, overrides=overrides))
    assert report.status == "ok" and report.dead_letters == 0
    return report


def _light_curves(out: Path) -> pd.DataFrame:
    store = HistoryStore(Lake(str(out / "lake")), order=4)
    return store.read("detections", store.pixels("detections"))


def _state(dsn: str) -> dict[str, pd.DataFrame]:
    store = SummaryStore(dsn)
    try:
        return {
            "object": store.fetch_df("SELECT * FROM object ORDER BY oid"),
            "magstats": store.fetch_df("SELECT * FROM magstats ORDER BY oid, fid"),
            "feature": store.fetch_df("SELECT oid, features FROM feature ORDER BY oid"),
            "association": store.fetch_df("SELECT * FROM object_association ORDER BY oid"),
            "neighbour": store.fetch_df("SELECT * FROM neighbour ORDER BY oid, catalog, rank"),
        }
    finally:
        store.close()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, shared_data, postgres_dsn):
    """One run over every alert (A) and the same alerts as three blocks of nights, three invocations (B). A folds
    its history deltas into their pixels every 3 batches while it runs; B only at the end of each invocation:
    the comparisons below also say that compacting mid-run changes nothing."""
    alerts = _alerts(shared_data)
    nights = np.sort(alerts["night"].unique())
    blocks = np.array_split(nights, 3)
    root = tmp_path_factory.mktemp("replay")
    with new_database(postgres_dsn) as dsn_a, new_database(postgres_dsn) as dsn_b:
        report_a = _run(_folder(root, "all", alerts), root / "a", dsn_a, compact_every=3)
        rows_b = []
        for i, block in enumerate(blocks):
            part = alerts[alerts["night"].isin(block)]
            _run(_folder(root, f"block{i}", part), root / "b", dsn_b, batch_size=25 + 10 * i)
            rows_b.append(len(_light_curves(root / "b")))
        # an invocation replayed (a crash before its commit, or a person re-running a night) adds nothing
        _run(root / "block1", root / "b", dsn_b, batch_size=25 + 10)
        yield {
            "alerts": alerts,
            "a": (_light_curves(root / "a"), _state(dsn_a)),
            "b": (_light_curves(root / "b"), _state(dsn_b)),
            "b_rows": rows_b,
            "a_counts": dict(report_a.counts),
            "a_worker_seconds": dict(report_a.worker_steps),
            "root": root,
        }


def test_light_curves_equal_one_run_and_the_packets(replayed):
    alerts = replayed["alerts"]
    expected = alerts.groupby("oid")["candids"].agg(lambda s: set().union(*s))
    for key in ("a", "b"):
        lc, _ = replayed[key]
        assert not lc.duplicated(["oid", "candid"]).any()
        got = lc.groupby("oid")["candid"].agg(set)
        assert sorted(got.index) == sorted(expected.index)
        for oid in expected.index:
            assert got[oid] == expected[oid], f"{key}: {oid} light curve differs from its packets"


def test_replayed_invocation_stores_nothing_twice(replayed):
    lc_b, _ = replayed["b"]
    assert len(lc_b) == replayed["b_rows"][-1]
    assert replayed["b_rows"][0] < replayed["b_rows"][1] < replayed["b_rows"][2]


def test_full_light_curve_beyond_the_30_day_history(replayed):
    """Objects use every night, not only the 30 days their last alert carries."""
    alerts = replayed["alerts"]
    _, state = replayed["b"]
    obj = state["object"].set_index("oid")
    for oid, group in alerts.groupby("oid"):
        all_candids = set().union(*group["candids"])
        last = group.iloc[-1]
        assert obj.loc[oid, "ndet"] == len(all_candids)
        # the first detection is at or before the first alert (its history may reach further back)
        assert obj.loc[oid, "firstmjd"] <= group["jd"].min() - 2400000.5 + 1e-9
        if oid in ("ZTF17aaaedmd", "ZTF20aaelulu"):
            assert len(all_candids) > len(last["candids"]), f"{oid}: the test needs history beyond 30 days"
    # SN 2020oi: its whole light curve, from the first detection of the first alert to the last
    sn = alerts[alerts["oid"] == "ZTF20aaelulu"]
    assert obj.loc["ZTF20aaelulu", "ndet"] == len(set().union(*sn["candids"]))


def test_summaries_equal_one_run(replayed):
    _, a = replayed["a"]
    _, b = replayed["b"]
    skip = {"batch_id", "updated_at", "created_at", "inserted_at"}
    for table in ("object", "magstats"):
        ta, tb = a[table], b[table]
        cols = [c for c in ta.columns if c not in skip]
        assert len(ta) == len(tb) > 0
        for c in cols:
            x, y = ta[c], tb[c]
            if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
                np.testing.assert_allclose(
                    x.astype(float),
                    y.astype(float),
                    rtol=1e-9,
                    atol=1e-9,
                    equal_nan=True,
                    err_msg=f"{table}.{c}",
                )
            else:
                assert list(x) == list(y), f"{table}.{c}"
    fa = a["feature"].set_index("oid")["features"]
    fb = b["feature"].set_index("oid")["features"]
    assert sorted(fa.index) == sorted(fb.index) and len(fa) >= 4
    for oid in fa.index:
        va = json.loads(fa[oid]) if isinstance(fa[oid], str) else fa[oid]
        vb = json.loads(fb[oid]) if isinstance(fb[oid], str) else fb[oid]
        assert va.keys() == vb.keys()
        for k in va:
            if va[k] is None or vb[k] is None:
                assert va[k] is None and vb[k] is None, f"{oid} {k}"
            else:
                assert vb[k] == pytest.approx(va[k], rel=1e-6, abs=1e-9), f"{oid} {k}"


def test_run_a_compacted_while_it_ran(replayed):
    assert replayed["a_counts"].get("history_compactions", 0) >= 2
    # the workers' CPU in those compactions is counted beside the batch steps' (the night's cost per step)
    assert replayed["a_worker_seconds"].get("compaction", 0.0) > 0


def test_the_run_counts_the_history_caches_hits_and_misses(replayed):
    """Run A reads its history back batch after batch: some files come from a worker's cache, and those written
    by the other worker or the previous batch are read (the counts an operator sizes --history-cache-mb by)."""
    counts = replayed["a_counts"]
    assert counts.get("history_files_cached", 0) > 0 and counts.get("history_files_read", 0) > 0
    assert counts.get("history_files_selective", -1) == 0  # no file here is an eighth of a 1 GB cache


def test_history_is_compacted_one_file_per_pixel(replayed):
    """Each invocation folds its delta files into one compacted file per pixel and removes them."""
    lake = replayed["root"] / "b" / "lake" / "history"
    folders = [p for p in lake.rglob("Npix=*") if p.is_dir()]
    assert folders
    compacted = 0
    for folder in folders:
        files = [f for f in folder.iterdir() if f.suffix == ".parquet"]
        assert len(files) == 1, folder
        compacted += files[0].name.startswith("compacted-")
    assert compacted == len(folders)
    deltas = [f for f in lake.rglob("deltas/*.parquet")]
    assert deltas == []


def test_associations_and_neighbours_are_stored_once_per_object(replayed):
    """Six ZTF objects, none within 1.5" of another: each is its own cross-survey id, decided once (on its
    first night) and not changed by later invocations; every object has its PS1 neighbours from its latest
    alert."""
    alerts = replayed["alerts"]
    for key in ("a", "b"):
        _, state = replayed[key]
        assoc = state["association"]
        assert sorted(assoc["oid"]) == sorted(alerts["oid"].unique())
        assert (assoc["xid"] == assoc["oid"]).all() and (assoc["survey"] == "ztf").all()
        nb = state["neighbour"]
        ps1 = nb[(nb["catalog"] == "ps1") & (nb["rank"] == 1)]
        assert sorted(ps1["oid"]) == sorted(alerts["oid"].unique())
        last_mjd = alerts.groupby("oid")["jd"].max() - 2400000.5
        np.testing.assert_allclose(ps1.set_index("oid")["mjd"].sort_index(), last_mjd.sort_index(), atol=1e-6)
