"""The lake's analysis-ready tables (``broker lake publish``), opened as an analyst would: dask without
duplicates, and the sky-partitioned ones with lsdb (a cone search, a cross-match with an imported catalogue)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from alert_broker.api.publish import PUBLISHED_TABLES, SKY_TABLES, latest_probabilities
from alert_broker.features.xmatch import angular_distance_arcsec
from alert_broker.storage import Lake, SummaryStore, import_catalog
from alert_broker.storage.history import HistoryStore

pytestmark = pytest.mark.e2e
lsdb = pytest.importorskip("lsdb")
hats = pytest.importorskip("hats")


@pytest.fixture(scope="module")
def store(api_night):
    with SummaryStore(api_night.dsn) as s:
        yield s


def test_dask_reads_one_row_per_thing(api_night, store):
    lake = api_night.lake
    objects = dd.read_parquet(f"{lake}/objects_current").compute()
    assert objects["oid"].is_unique and len(objects) == store.count("object")
    pg = store.fetch_df("SELECT oid, ndet, lastmjd FROM object").set_index("oid").sort_index()
    mine = objects.set_index("oid").sort_index()
    assert (mine["ndet"].to_numpy() == pg["ndet"].to_numpy()).all()
    assert "xid" in objects.columns

    magstats = dd.read_parquet(f"{lake}/magstats_current").compute()
    assert len(magstats) == store.count("magstats") and not magstats.duplicated(["oid", "fid"]).any()

    probs = dd.read_parquet(f"{lake}/probabilities_latest").compute()
    assert not probs.duplicated(["oid", "classifier_name", "class_name"]).any()
    assert len(probs) == store.count("probability")  # one version per classifier in this lake
    # the per-batch table the pipeline writes does repeat them (one per batch that saw the object)
    batches = dd.read_parquet(f"{lake}/probabilities").compute()
    assert len(batches) >= len(probs)

    history = HistoryStore(Lake(lake))
    for table in ("detections", "non_detections", "forced_photometry"):
        published = dd.read_parquet(f"{lake}/{table}_current").compute()
        stored = history.read(table, history.pixels(table))
        assert len(published) == len(stored), table
        key = {"detections": ["oid", "candid"], "non_detections": ["oid", "fid", "mjd"],
               "forced_photometry": ["oid", "pid"]}[table]  # fmt: skip
        assert not published.duplicated(key).any(), table
    det = dd.read_parquet(f"{lake}/detections_current").compute()
    assert {"magpsf_corr", "sigmapsf_corr", "corrected", "dubious", "meanra", "meandec"} <= set(det.columns)
    assert det["candid"].dtype == "int64"


def test_lsdb_opens_the_sky_tables_and_cone_searches(api_night, store):
    from hats.io.validation import is_valid_collection

    for name in SKY_TABLES:
        path = Path(api_night.lake) / name
        assert is_valid_collection(path, strict=True), name
        cat = lsdb.read_hats(path)
        assert cat.margin is not None
        assert len(cat.compute(progress_bar=False)) == len(dd.read_parquet(str(path)))
    objects = store.fetch_df("SELECT oid, meanra, meandec FROM object")
    cat = lsdb.read_hats(Path(api_night.lake) / "objects_current")
    ra, dec = objects[["meanra", "meandec"]].iloc[5]
    for radius in (5.0, 7200.0):
        got = cat.cone_search(ra, dec, radius).compute(progress_bar=False)
        d = angular_distance_arcsec(ra, dec, objects["meanra"].to_numpy(), objects["meandec"].to_numpy())
        assert set(got["oid"]) == set(objects.loc[d <= radius, "oid"])
    # an object's whole light curve, from the cone
    oid = objects["oid"].iloc[5]
    lc = lsdb.read_hats(Path(api_night.lake) / "detections_current").cone_search(ra, dec, 5.0)
    lc = lc.compute(progress_bar=False)
    n = store.fetch_df("SELECT count(*) AS n FROM alert WHERE oid = %s", (oid,))["n"][0]
    assert (lc["oid"] == oid).sum() >= n > 0


def test_lsdb_crossmatch_with_an_imported_catalogue(api_night, store, tmp_path):
    """A catalogue of sources 1" from 20 objects (and 200 elsewhere), imported with `broker catalog import`'s
    writer, cross-matched with lsdb: each of the 20 finds its source."""
    objects = store.fetch_df("SELECT oid, meanra, meandec FROM object ORDER BY oid")
    rng = np.random.default_rng(4)
    near = objects.sample(20, random_state=1)
    ang = rng.uniform(0, 2 * np.pi, len(near))
    off = 1.0 / 3600
    src = pd.DataFrame(
        {
            "name": [f"src-{o}" for o in near["oid"]],
            "ra": (near["meanra"] + off * np.sin(ang) / np.cos(np.radians(near["meandec"]))) % 360,
            "dec": near["meandec"] + off * np.cos(ang),
        }
    )
    far = pd.DataFrame({"name": [f"far-{i}" for i in range(200)], "ra": rng.uniform(0, 360, 200),
                        "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, 200)))})  # fmt: skip
    pd.concat([src, far]).to_csv(tmp_path / "mine.csv", index=False)
    import_catalog("mine", tmp_path / "mine.csv", "ra", "dec", tmp_path / "catalogs", id_col="name", order=1)
    left = lsdb.read_hats(Path(api_night.lake) / "objects_current")
    right = lsdb.read_hats(tmp_path / "catalogs" / "mine")
    xm = left.crossmatch(
        right,
        radius_arcsec=2.0,
        n_neighbors=1,
        suffixes=("", "_cat"),
        suffix_method="all_columns",
        log_changes=False,
    )
    xm = xm.compute(progress_bar=False)
    matched = dict(zip(xm["oid"], xm["name_cat"], strict=True))
    for oid in near["oid"]:
        assert matched.get(oid) == f"src-{oid}"
    assert np.allclose(xm.loc[xm["oid"].isin(near["oid"]), "_dist_arcsec"], 1.0, atol=0.01)


def test_latest_probabilities_keeps_the_newest_version():
    rows = pd.DataFrame(
        {
            "oid": ["a"] * 4 + ["b"] * 2,
            "classifier_name": ["lc"] * 6,
            "classifier_version": ["1.9.0", "1.9.0", "1.10.0", "1.10.0", "1.9.0", "1.9.0"],
            "class_name": ["SN", "AGN", "SN", "AGN", "SN", "AGN"],
            "probability": [0.6, 0.4, 0.3, 0.7, 0.5, 0.5],
            "ranking": [1, 2, 2, 1, 1, 2],
        }
    )
    out = latest_probabilities(rows)
    assert out[out["oid"] == "a"]["classifier_version"].unique().tolist() == ["1.10.0"]
    assert len(out) == 4


def test_the_cli_publishes(api_night, tmp_path):
    broker = Path(sys.executable).parent / "broker"
    if not broker.exists():
        pytest.skip("the broker script is not installed (run make setup)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    proc = subprocess.run(
        [str(broker), "lake", "publish", "--pg-dsn", api_night.dsn, "--lake-url", api_night.lake,
         "--table", "objects_current", "--table", "probabilities_latest"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "objects_current" in proc.stdout and "probabilities_latest" in proc.stdout
    assert set(PUBLISHED_TABLES) <= {p.name for p in Path(api_night.lake).iterdir()}
    assert not [p for p in Path(api_night.lake).iterdir() if p.name.startswith(".publish-")]
