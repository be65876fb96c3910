"""``alert_broker.api.client`` against a running ``broker serve``: pandas frames (astropy Tables on request) that
hold what the stores hold."""

from __future__ import annotations

import subprocess
import sys

import fastavro
import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from alert_broker.api import client as client_module
from alert_broker.api.client import BrokerAPIError, BrokerClient
from alert_broker.storage import Lake

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(api_url):
    with BrokerClient(api_url) as c:
        yield c


def test_the_client_imports_without_the_server():
    code = (
        "import sys, alert_broker.api.client\n"
        "bad = [m for m in ('fastapi', 'uvicorn', 'psycopg', 'alert_broker.storage', 'alert_broker.api.app') "
        "if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_query_objects_and_cone(client, api_store):
    df = client.query_objects(page_size=1000)
    assert isinstance(df, pd.DataFrame) and len(df) == api_store.count("object")
    assert {"oid", "meanra", "meandec", "ndet", "firstmjd", "lastmjd"} <= set(df.columns)
    sn = client.query_objects(classifier="stamp_classifier", class_name="SN", probability=0.0, page_size=100)
    assert (sn["class_name"] == "SN").all() and sn["probability"].is_monotonic_decreasing
    ndet = client.query_objects(ndet=[10, 1000], survey="ztf", page_size=1000)
    assert (ndet["ndet"] >= 10).all() and (ndet["survey"] == "ztf").all()
    row = df.iloc[0]
    near = client.cone(row["meanra"], row["meandec"], 5)
    assert near["oid"].iloc[0] == row["oid"] and near["dist_arcsec"].iloc[0] < 1e-6
    table = client.cone(row["meanra"], row["meandec"], 3600, format="astropy")
    assert isinstance(table, Table) and row["oid"] in list(table["oid"])
    page = client.query_objects(page_size=5, count=True, format="json")
    assert page["total"] == len(df) and len(page["items"]) == 5


def test_object_lightcurve_probabilities(client, api_store):
    oid = api_store.fetch_df(
        "SELECT oid FROM probability WHERE classifier_name = 'lc_hierarchical' ORDER BY oid LIMIT 1"
    )["oid"][0]
    obj = client.query_object(oid)
    assert len(obj) == 1 and obj["oid"].iloc[0] == oid
    full = client.query_object(oid, format="json")
    assert {"magstats", "xmatch", "association", "alerts"} <= set(full)
    lc = client.lightcurve(oid)
    det = lc["detections"]
    assert det["candid"].dtype == "int64" and det["mjd"].is_monotonic_increasing
    alerts = set(api_store.fetch_df("SELECT candid FROM alert WHERE oid = %s", (oid,))["candid"])
    assert alerts <= set(det["candid"])
    assert {"magpsf", "magpsf_corr", "sigmapsf_corr"} <= set(det.columns)
    tables = client.lightcurve(oid, format="astropy")
    assert len(tables["detections"]) == len(det)
    probs = client.probabilities(oid)
    assert {"lc_hierarchical", "lc_hierarchical_top"} <= set(probs["classifier_name"])
    assert len(client.probabilities(oid, classifier="lc_hierarchical")) == 15
    assert len(client.query_magstats(oid)) == len(full["magstats"])
    with pytest.raises(BrokerAPIError) as err:
        client.query_object("ZTF99nothere")
    assert err.value.status == 404


def test_features_long_and_wide(client, api_store, api_night):
    oid = api_store.fetch_df(
        "SELECT f.oid FROM feature f JOIN object o USING (oid) WHERE o.survey = 'ztf' ORDER BY f.oid LIMIT 1"
    )["oid"][0]
    lake = Lake(api_night.lake).read_table("features", dedupe=True)
    vector = lake[lake["oid"] == oid].iloc[0]
    long = client.features(oid)
    assert set(long.columns) >= {"feature", "name", "fid", "band", "value", "version"}
    wide = client.features(oid, wide=True)
    assert len(wide) == 1 and wide["version"].iloc[0] == vector["FEATURE_VERSION"]
    columns = [c for c in wide.columns if c != "version"]
    assert len(columns) == len(long) == 172
    got = wide[columns].iloc[0].astype(float).to_numpy()
    want = vector[columns].astype(float).to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    period = client.features(oid, name="Multiband_period")
    assert len(period) == 1 and period["value"].iloc[0] == pytest.approx(vector["Multiband_period"])
    assert client.features(oid, version="no-such-version", wide=True).columns.tolist() == ["version"]
    assert isinstance(client.features(oid, format="astropy"), Table)


def test_stamps_and_raw_packet(client, api_night):
    path = api_night.ztf_files[3]
    with open(path, "rb") as fh:
        rec = next(fastavro.reader(fh))
    arrays = client.stamps(rec["candid"])
    assert set(arrays) == {"science", "template", "difference"}
    assert all(a.shape == (63, 63) and np.isfinite(a).any() for a in arrays.values())
    raw = client.stamps(rec["candid"], format="fits")
    assert raw["science"] == rec["cutoutScience"]["stampData"]
    assert client.stamps(rec["candid"], format="png")["difference"][:8] == b"\x89PNG\r\n\x1a\n"
    assert client.raw_packet(rec["candid"]) == path.read_bytes()


def test_sn_candidates_and_module_functions(client, api_url, monkeypatch):
    nights = client.nights()
    night = int(nights.sort_values("alerts").iloc[-1]["night"])
    sn = client.sn_candidates(night)
    assert len(sn) and sn["rank"].tolist() == list(range(1, len(sn) + 1))
    assert sn["first_candid"].dtype == "int64"
    assert isinstance(client.sn_candidates(night, format="astropy"), Table)
    monkeypatch.setenv("BROKER_API_URL", api_url)
    monkeypatch.setattr(client_module, "_default", None)
    assert len(client_module.sn_candidates(night)) == len(sn)
    oid = sn["oid"].iloc[0]
    assert client_module.query_object(oid)["oid"].iloc[0] == oid
    assert len(client_module.lightcurve(oid)["detections"]) > 0
    assert len(client_module.probabilities(oid)) > 0
    assert len(client_module.query_objects(oid=[oid])) == 1
    assert client_module.stamps(int(sn["first_candid"].iloc[0]), format="png")
    assert client_module.cone(sn["meanra"].iloc[0], sn["meandec"].iloc[0], 2)["oid"].iloc[0] == oid
    assert client_module.crossmatch(f"ra,dec\n{sn['meanra'].iloc[0]},{sn['meandec'].iloc[0]}\n")[
        "oid"
    ].tolist() == [oid]
    assert client.stats(night)["night"] == night
    runs = client.runs(limit=5)
    assert not runs.empty and {"run_id", "source", "status", "counts"} <= set(runs.columns)
    assert client.run(runs["run_id"].iloc[0])["run_id"] == runs["run_id"].iloc[0]
    assert client.runs(source="no-such-source").empty
    lists = client.watchlists()
    assert lists["watchlist"].tolist() == ["targets"]
    hits = client.watchlist_hits(name=["target 0", "target 5"])
    assert set(hits["name"]) == {"target 0", "target 5"} and hits["candid"].dtype == "int64"
    # a cross-match of a DataFrame of positions: the nearest object of each, the others without a match
    objects = client.query_objects(page_size=3).sort_values("oid")
    mine = pd.DataFrame({"target": ["a", "b", "c", "far"], "ra": [*objects["meanra"], 10.0],
                         "dec": [*objects["meandec"], -80.0]})  # fmt: skip
    found = client.crossmatch(mine, radius=1.0, unmatched=True)
    pd.testing.assert_frame_equal(
        client.crossmatch(mine, radius=1.0, unmatched=True, chunk=3), found
    )  # in parts
    assert found["oid"].tolist()[:3] == objects["oid"].tolist() and pd.isna(found["oid"].iloc[3])
    assert found["target"].tolist() == ["a", "b", "c", "far"] and (found["dist_arcsec"].iloc[:3] < 1e-3).all()
    with pytest.raises(BrokerAPIError) as err:
        client.crossmatch("x,y\n1,2\n")
    assert err.value.status == 422 and "right ascension" in err.value.detail


def test_catalogues_and_forced_photometry(client, api_store, api_night):
    """The local catalogues as frames (ALeRCE's catsHTM calls too), and an LSST object's forced photometry."""
    from tests.fixtures.broker_api import NEAR_OFFSETS

    cats = client.catalogs()
    assert set(cats["name"]) == {"near", "rosat"}
    obj = api_store.fetch_df("SELECT oid, meanra, meandec FROM object ORDER BY oid LIMIT 1").iloc[0]
    ra, dec = float(obj["meanra"]), float(obj["meandec"])
    found = client.catalog_cone(ra, dec, 60)
    assert set(found) == {"near", "rosat"} and found["rosat"].empty
    near = found["near"]
    assert near["catalog_id"].tolist() == [f"{obj['oid']}-{k}" for k in range(len(NEAR_OFFSETS))]
    assert np.allclose(near["dist_arcsec"], NEAR_OFFSETS, atol=1e-6)
    assert (
        client.catshtm_conesearch(ra, dec, 30, "near")["catalog_id"].tolist()
        == near["catalog_id"][:2].tolist()
    )
    nearest = client.catshtm_crossmatch(ra, dec, 60)
    assert nearest["near"]["catalog_id"].tolist() == [f"{obj['oid']}-0"] and nearest["rosat"].empty
    table = client.catalog_cone(ra, dec, 60, catalog="near", format="astropy")["near"]
    assert isinstance(table, Table) and len(table) == len(NEAR_OFFSETS)
    with pytest.raises(BrokerAPIError) as err:
        client.catalog_cone(ra, dec, 60, catalog="nothere")
    assert err.value.status == 404
    lsst = api_store.fetch_df("SELECT oid FROM object WHERE survey = 'lsst' ORDER BY ndet DESC, oid LIMIT 1")[
        "oid"
    ][0]
    forced = client.query_forced_photometry(lsst)
    assert len(forced) == len(client.lightcurve(lsst)["forced_photometry"]) > 0
