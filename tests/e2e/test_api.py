"""The query API against a running ``broker serve`` on a real night (real PostgreSQL, real lake): every endpoint's
answer checked against the stores, the cone search against brute force, and injection strings and oversized values
thrown at every parameter of every endpoint (only 4xx, never 5xx; the tables untouched)."""

from __future__ import annotations

import io
import itertools
from urllib.parse import quote

import astropy.units as u
import fastavro
import numpy as np
import pandas as pd
import psycopg
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from PIL import Image

from alert_broker.api.data import BadRequest, BrokerData, ObjectQuery
from alert_broker.features.lightcurve import feature_names, flux_feature_names
from alert_broker.storage import Lake
from alert_broker.storage.history import HistoryStore

pytestmark = pytest.mark.e2e


def _stored_detections(api_night, oid: str) -> int:
    """How many detections of ``oid`` the history store holds (found through its whole object index)."""
    history = HistoryStore(Lake(api_night.lake))
    home = history.read("objects", history.pixels("objects"), [oid])["pixel"].tolist()
    return len(history.read("detections", home, [oid]))


def test_objects_page_filters_and_paging(api_http, api_store):
    n = api_store.count("object")
    res = api_http.get("/objects", params={"page_size": 10, "count": True}).json()
    assert res["total"] == n and len(res["items"]) == 10 and res["has_next"]
    lastmjd = [r["lastmjd"] for r in res["items"]]
    assert lastmjd == sorted(lastmjd, reverse=True)  # newest first by default
    page2 = api_http.get("/objects", params={"page_size": 10, "page": 2}).json()
    assert not {r["oid"] for r in res["items"]} & {r["oid"] for r in page2["items"]}

    lsst = api_http.get("/objects", params={"survey": "lsst", "page_size": 1000}).json()["items"]
    assert lsst and all(r["survey"] == "lsst" for r in lsst)
    assert (
        len(lsst) == api_store.fetch_df("SELECT count(*) AS n FROM object WHERE survey = 'lsst'")["n"].iloc[0]
    )

    many = api_http.get("/objects", params={"ndet": [10, 400], "page_size": 1000, "order_by": "ndet"}).json()[
        "items"
    ]
    expected = api_store.fetch_df("SELECT oid FROM object WHERE ndet BETWEEN 10 AND 400")
    assert {r["oid"] for r in many} == set(expected["oid"]) and many
    assert [r["ndet"] for r in many] == sorted((r["ndet"] for r in many), reverse=True)

    lo = float(api_store.fetch_df("SELECT min(firstmjd) AS m FROM object")["m"].iloc[0]) + 1
    first = api_http.get("/objects", params={"firstmjd": lo, "page_size": 1000}).json()["items"]
    assert first and all(r["firstmjd"] >= lo for r in first)


def test_objects_by_class_and_probability(api_http, api_store):
    top = api_store.fetch_df(
        "SELECT oid, probability FROM probability WHERE classifier_name = 'stamp_classifier' AND ranking = 1 "
        "AND class_name = (SELECT class_name FROM probability WHERE classifier_name = 'stamp_classifier' "
        "AND ranking = 1 GROUP BY 1 ORDER BY count(*) DESC LIMIT 1)"
    )
    cls = api_store.fetch_df(
        "SELECT class_name FROM probability WHERE oid = %s AND classifier_name = 'stamp_classifier' AND ranking = 1",
        (top["oid"].iloc[0],),
    )["class_name"].iloc[0]
    res = api_http.get(
        "/objects", params={"classifier": "stamp_classifier", "class": cls, "page_size": 1000, "count": True}
    ).json()
    assert res["total"] == len(top) == len(res["items"])
    probs = [r["probability"] for r in res["items"]]
    assert probs == sorted(probs, reverse=True)  # ranked by probability by default
    assert all(r["class_name"] == cls and r["ranking"] == 1 for r in res["items"])
    cut = float(np.median(probs))
    above = api_http.get(
        "/objects",
        params={"classifier": "stamp_classifier", "class_name": cls, "probability": cut, "page_size": 1000},
    ).json()["items"]
    assert {r["oid"] for r in above} == set(top.loc[top["probability"] >= cut, "oid"])
    # the light-curve classifier's classes too
    lc = api_store.fetch_df(
        "SELECT oid, class_name FROM probability WHERE classifier_name = 'lc_hierarchical' AND ranking = 1"
    )
    assert not lc.empty
    got = api_http.get(
        "/objects",
        params={"classifier": "lc_hierarchical", "class": lc["class_name"].iloc[0], "page_size": 100},
    ).json()["items"]
    assert lc["oid"].iloc[0] in {r["oid"] for r in got}


def test_cone_search_equals_brute_force(api_http, api_store):
    objects = api_store.fetch_df("SELECT oid, meanra, meandec FROM object")
    everything = SkyCoord(objects["meanra"].to_numpy() * u.deg, objects["meandec"].to_numpy() * u.deg)
    rng = np.random.default_rng(3)
    centres = objects.sample(5, random_state=2)[["meanra", "meandec"]].to_numpy().tolist()
    centres += [[rng.uniform(0, 360), rng.uniform(-60, 60)] for _ in range(3)]
    for (ra, dec), radius in itertools.product(centres, (5.0, 3600.0, 36000.0)):
        res = api_http.get(
            "/objects", params={"ra": ra, "dec": dec, "radius": radius, "page_size": 1000}
        ).json()
        d = SkyCoord(ra * u.deg, dec * u.deg).separation(everything).arcsec
        expected = set(objects.loc[d <= radius, "oid"])
        assert {r["oid"] for r in res["items"]} == expected, (ra, dec, radius)
        dist = [r["dist_arcsec"] for r in res["items"]]
        assert dist == sorted(dist)
        for r in res["items"]:
            i = objects.index[objects["oid"] == r["oid"]][0]
            assert abs(r["dist_arcsec"] - d[i]) < 1e-3
    # an object found within 5" of its own position
    ra, dec = centres[0]
    near = api_http.get("/objects", params={"ra": ra, "dec": dec, "radius": 5}).json()["items"]
    assert near and near[0]["dist_arcsec"] < 1e-6


def test_cone_query_uses_the_hpx29_index(api_night):
    """The API's own cone SQL, planned by PostgreSQL with sequential scans switched off only so that this small
    table's plan shows what a large one's does (bench/bench_api.py shows it on 10^6 rows): an hpx29 index scan."""
    data = BrokerData(api_night.dsn, api_night.lake)
    try:
        sql, _, params = data.objects_sql(ObjectQuery(ra=25.19, dec=27.57, radius=5.0))
        with data.db.connection() as conn:
            conn.execute("SET enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}", params).fetchall())
            conn.execute("RESET enable_seqscan")
        assert "object_hpx29_idx" in plan, plan
    finally:
        data.close()


def test_object_page(api_http, api_store, api_night):
    oid = (
        "ZTF23abgqcnj"
        if not api_store.fetch_df("SELECT 1 FROM object WHERE oid = 'ZTF23abgqcnj'").empty
        else None
    )
    oid = (
        oid
        or api_store.fetch_df("SELECT oid FROM object WHERE survey = 'ztf' ORDER BY ndet DESC LIMIT 1")[
            "oid"
        ][0]
    )
    obj = api_http.get(f"/objects/{oid}").json()
    row = api_store.fetch_df("SELECT * FROM object WHERE oid = %s", (oid,)).iloc[0]
    assert obj["oid"] == oid and obj["ndet"] == row["ndet"] and abs(obj["meanra"] - row["meanra"]) < 1e-12
    assert (
        len(obj["magstats"])
        == api_store.fetch_df("SELECT count(*) AS n FROM magstats WHERE oid = %s", (oid,))["n"][0]
    )
    assert all(m["band"] in ("g", "r", "i") for m in obj["magstats"])
    assert {n["catalog"] for n in obj["neighbours"]} <= {"ps1", "gaia", "gaia_bright", "sso"}
    assert obj["association"]["xid"] and oid in {m["oid"] for m in obj["association"]["members"]}
    assert [a["candid"] for a in obj["alerts"]] == [
        str(c)
        for c in api_store.fetch_df("SELECT candid FROM alert WHERE oid = %s ORDER BY mjd", (oid,))["candid"]
    ]
    assert api_http.get(f"/objects/{oid}/magstats").json() == obj["magstats"]


def test_light_curves_are_the_stored_ones(api_http, api_store, api_night):
    objects = api_store.fetch_df("SELECT oid, survey, meanra, meandec FROM object ORDER BY ndet DESC LIMIT 6")
    assert set(objects["survey"]) == {"ztf", "lsst"}
    for oid, survey, _, _ in objects.itertuples(index=False):
        lc = api_http.get(f"/objects/{oid}/lightcurve").json()
        assert lc["source"] == "history"
        assert len(lc["detections"]) == _stored_detections(api_night, oid) > 0
        det = lc["detections"]
        assert [d["mjd"] for d in det] == sorted(d["mjd"] for d in det)
        assert all(isinstance(d["candid"], str) for d in det)  # 64-bit ids survive JavaScript
        assert {"magpsf", "sigmapsf", "magpsf_corr", "sigmapsf_corr", "corrected", "dubious", "flux"} <= set(
            det[0]
        )
        assert any(d["corrected"] and d["magpsf_corr"] is not None for d in det)
        assert api_http.get(f"/objects/{oid}/detections").json() == det
        if survey == "lsst":
            assert lc["forced_photometry"]
        for nd in lc["non_detections"]:
            assert nd["diffmaglim"] is not None


def test_probabilities_of_both_classifiers(api_http, api_store):
    oid = api_store.fetch_df(
        "SELECT oid FROM probability WHERE classifier_name = 'lc_hierarchical' "
        "INTERSECT SELECT oid FROM probability WHERE classifier_name = 'stamp_classifier' LIMIT 1"
    )
    if oid.empty:
        oid = api_store.fetch_df(
            "SELECT oid FROM probability WHERE classifier_name = 'lc_hierarchical' LIMIT 1"
        )
    oid = oid["oid"][0]
    rows = api_http.get(f"/objects/{oid}/probabilities").json()
    expected = api_store.fetch_df(
        "SELECT classifier_name, class_name, probability FROM probability WHERE oid = %s", (oid,)
    )
    assert len(rows) == len(expected)
    assert {"lc_hierarchical", "lc_hierarchical_top"} <= {r["classifier_name"] for r in rows}
    assert all(r["level"] in ("class", "branch") for r in rows)
    only = api_http.get(f"/objects/{oid}/probabilities", params={"classifier": "lc_hierarchical"}).json()
    assert {r["classifier_name"] for r in only} == {"lc_hierarchical"} and len(only) == 15
    assert abs(sum(r["probability"] for r in only) - 1) < 1e-6


@pytest.mark.parametrize(("survey", "table"), [("ztf", "features"), ("lsst", "flux_features")])
def test_features_are_the_lake_vectors_split_by_band(api_http, api_store, api_night, survey, table):
    """Each feature row equals the lake's wide vector (read independently of PostgreSQL's JSON), with the band
    split off the column name; the filters and errors."""
    oid = api_store.fetch_df(
        "SELECT f.oid FROM feature f JOIN object o USING (oid) WHERE o.survey = %s ORDER BY f.oid LIMIT 1",
        (survey,),
    )["oid"][0]
    wide = Lake(api_night.lake).read_table(table, dedupe=True)
    wide = wide[wide["oid"] == oid]
    assert len(wide) == 1
    vector = wide.iloc[0]
    rows = api_http.get(f"/objects/{oid}/features").json()
    columns = feature_names() if survey == "ztf" else flux_feature_names()  # the feature sets' columns
    assert sorted(r["feature"] for r in rows) == sorted(columns)
    for r in rows:
        expected = vector[r["feature"]]
        if pd.isna(expected) or not np.isfinite(expected):
            assert r["value"] is None, r
        else:
            assert r["value"] == pytest.approx(float(expected), rel=1e-12, abs=1e-12), r
        assert r["version"] == vector["FEATURE_VERSION"] and r["oid"] == oid
        if r["band"] is not None:
            suffix = str(r["fid"]) if survey == "ztf" else r["band"]
            assert r["feature"] == f"{r['name']}_{suffix}"
    if survey == "ztf":
        amp = api_http.get(f"/objects/{oid}/features", params={"name": "Amplitude"}).json()
        assert [(r["fid"], r["band"]) for r in amp] == [(1, "g"), (2, "r")]
        (period,) = api_http.get(f"/objects/{oid}/features", params={"name": "Multiband_period"}).json()
        assert period["fid"] is None and period["band"] is None
        one = api_http.get(f"/objects/{oid}/features", params={"name": "Power_rate_1/2"}).json()
        assert [r["feature"] for r in one] == ["Power_rate_1/2"]
    else:
        flux = api_http.get(f"/objects/{oid}/features", params={"name": "Amplitude_flux"}).json()
        assert {r["band"] for r in flux} <= set("ugrizy") and all(r["fid"] is None for r in flux)
    assert api_http.get(f"/objects/{oid}/features", params={"version": "no-such-version"}).json() == []
    assert api_http.get("/objects/ZTF00nothere/features").status_code == 404
    assert api_http.get(f"/objects/{oid}/features", params={"name": "x' OR 1=1"}).status_code == 422


def test_stamps_png_and_fits_and_raw_packet(api_http, api_night):
    path = api_night.ztf_files[7]
    with open(path, "rb") as fh:
        record = next(fastavro.reader(fh))
    candid = record["candid"]
    for kind, field in (
        ("science", "cutoutScience"),
        ("template", "cutoutTemplate"),
        ("difference", "cutoutDifference"),
    ):
        png = api_http.get(f"/alerts/{candid}/stamps/{kind}")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        image = np.asarray(Image.open(io.BytesIO(png.content)))
        assert image.shape == (63, 63) and image.std() > 5  # not blank
        raw = api_http.get(f"/alerts/{candid}/stamps/{kind}", params={"format": "fits"})
        assert raw.content == record[field]["stampData"]
    big = Image.open(
        io.BytesIO(api_http.get(f"/alerts/{candid}/stamps/science", params={"scale": 4}).content)
    )
    assert big.size == (252, 252)
    packet = api_http.get(f"/alerts/{candid}/raw")
    assert packet.content == path.read_bytes()
    alert = api_http.get(f"/alerts/{candid}").json()
    assert alert["candid"] == str(candid) and alert["survey"] == "ztf"


def test_lsst_stamps_are_plain_fits(api_http, api_store):
    candid = int(api_store.fetch_df("SELECT candid FROM alert WHERE survey = 'lsst' LIMIT 1")["candid"][0])
    raw = api_http.get(f"/alerts/{candid}/stamps/difference", params={"format": "fits", "survey": "lsst"})
    assert raw.status_code == 200
    with fits.open(io.BytesIO(raw.content)) as hdus:
        assert any(h.data is not None and h.data.ndim == 2 for h in hdus)
    png = api_http.get(f"/alerts/{candid}/stamps/science", params={"survey": "lsst"})
    assert np.asarray(Image.open(io.BytesIO(png.content))).std() > 0


def test_sn_candidates_stats_and_nights(api_http, api_store):
    nights = api_http.get("/nights").json()
    assert {n["night"] for n in nights} == set(
        api_store.fetch_df("SELECT DISTINCT night FROM alert")["night"]
    )
    night = max(nights, key=lambda n: n["alerts"])["night"]
    sn = api_http.get("/sn-candidates", params={"night": night}).json()
    assert sn["night"] == night
    cands = sn["candidates"]
    assert cands, "the fink sample's busy night has stamp-classified SN candidates"
    assert [c["rank"] for c in cands] == list(range(1, len(cands) + 1))
    probs = [c["sn_probability"] for c in cands]
    assert probs == sorted(probs, reverse=True)
    for c in cands:
        assert not c["stellar"] and c["age_days"] <= 5
        assert c["first_candid"] and (c["sgscore1"] is None or c["sgscore1"] <= 0.4 or c["distpsnr1"] > 1.4)
        top = api_store.fetch_df(
            "SELECT class_name FROM probability WHERE oid = %s AND classifier_name = 'stamp_classifier' AND ranking = 1",
            (c["oid"],),
        )
        assert top["class_name"].tolist() == ["SN"]
    wider = api_http.get("/sn-candidates", params={"night": night, "ranking": 5, "max_age_days": 365}).json()
    assert len(wider["candidates"]) >= len(cands)

    stats = api_http.get("/stats", params={"night": night}).json()
    alerts = api_store.fetch_df(
        "SELECT survey, count(*) AS n FROM alert WHERE night = %s GROUP BY 1", (night,)
    )
    assert stats["alerts"] == alerts["n"].sum() == sum(r["alerts"] for r in stats["alerts_per_hour"])
    assert stats["classes"] and stats["dead_letters"] == 0 and stats["runs"][0]["status"] == "ok"
    assert api_http.get("/stats").json()["night"] == max(n["night"] for n in nights)


def test_runs_newest_first_filtered_and_one_by_id(api_http, api_store):
    night_run = api_store.fetch_df("SELECT run_id, source FROM pipeline_run ORDER BY started_at DESC LIMIT 1")
    older = [  # an integrity check and a failed re-scoring, before the night's run (other tests read the latest)
        ("t-integrity", "integrity", "clean", '{"messages": 57, "missing": 0, "missing_after": 0}'),
        ("t-reclassify", "reclassify", "failed", '{"objects": 3}'),
    ]
    try:
        for i, (run_id, source, status, counts) in enumerate(older):
            api_store.conn.execute(
                "INSERT INTO pipeline_run (run_id, started_at, finished_at, source, status, counts) VALUES "
                "(%s, '2020-01-02'::timestamptz - %s * interval '1 hour', '2020-01-02', %s, %s, %s::jsonb)",
                (run_id, i + 1, source, status, counts),
            )
        runs = api_http.get("/runs").json()
        assert [r["run_id"] for r in runs[:1]] == list(night_run["run_id"])
        assert [r["run_id"] for r in runs[-2:]] == ["t-integrity", "t-reclassify"]  # newest first
        assert runs[0]["status"] == "ok" and runs[0]["seconds"] > 0 and runs[0]["counts"]
        (check,) = api_http.get("/runs", params={"source": "integrity"}).json()
        assert (
            check["counts"] == {"messages": 57, "missing": 0, "missing_after": 0} and check["seconds"] == 3600
        )
        assert [r["run_id"] for r in api_http.get("/runs", params={"status": ["failed", "clean"]}).json()] == [
            "t-integrity", "t-reclassify"
        ]  # fmt: skip
        assert (
            api_http.get("/runs", params={"source": night_run["source"][0], "limit": 1}).json()[0]["run_id"]
            == (night_run["run_id"][0])
        )
        assert api_http.get("/runs", params={"source": "nothing-of-the-kind"}).json() == []
        one = api_http.get(f"/runs/{night_run['run_id'][0]}").json()
        assert one["summary"]["alerts_written"] == one["counts"]["alerts_written"] == api_store.count("alert")
        assert one["config"]["pg_dsn"] and one["summary"]["run_id"] == one["run_id"]
        assert api_http.get("/runs/no-such-run").status_code == 404
    finally:
        api_store.conn.execute("DELETE FROM pipeline_run WHERE run_id LIKE 't-%%'")


def test_crossmatch_upload_equals_brute_force(api_http, api_store):
    objects = api_store.fetch_df(
        "SELECT oid, meanra, meandec, ndet FROM object WHERE meanra IS NOT NULL ORDER BY oid"
    )
    rng = np.random.default_rng(7)
    picked = objects.sample(12, random_state=7).reset_index(drop=True)
    centre = SkyCoord(picked["meanra"].to_numpy(float) * u.deg, picked["meandec"].to_numpy(float) * u.deg)
    near = centre.directional_offset_by(rng.uniform(0, 360, 12) * u.deg, rng.uniform(0.1, 1.8, 12) * u.arcsec)
    ra = np.r_[near.ra.deg, 10.0, 200.0]
    dec = np.r_[near.dec.deg, -80.0, 5.0]
    # sexagesimal on one row, decimal degrees on the others; a free-text column comes back untouched
    cells = [f"{r:.8f}" for r in ra], [f"{d:.8f}" for d in dec]
    ra_text, dec_text = (
        SkyCoord(ra[0] * u.deg, dec[0] * u.deg).to_string("hmsdms", sep=":", precision=4).split()
    )
    cells[0][0], cells[1][0] = ra_text, dec_text
    # the brute force uses the positions as written (rounded) in the upload
    ra, dec = np.array(cells[0][1:], dtype=float), np.array(cells[1][1:], dtype=float)
    first = SkyCoord(ra_text, dec_text, unit=(u.hourangle, u.deg))
    ra, dec = np.r_[first.ra.deg, ra], np.r_[first.dec.deg, dec]
    csv = "name\tRAJ2000\tDEJ2000\tnote\n" + "".join(
        f"t{k}\t{cells[0][k]}\t{cells[1][k]}\tnote, {k}\n" for k in range(len(ra))
    )
    sep = (
        SkyCoord(ra[:, None] * u.deg, dec[:, None] * u.deg)
        .separation(
            SkyCoord(
                objects["meanra"].to_numpy(float)[None, :] * u.deg,
                objects["meandec"].to_numpy(float)[None, :] * u.deg,
            )
        )
        .arcsec
    )
    for radius in (2.0, 30.0):
        res = api_http.post(
            "/crossmatch", params={"radius": radius, "all_matches": True}, content=csv.encode()
        )
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["positions"] == len(ra) and (body["ra_col"], body["dec_col"]) == ("RAJ2000", "DEJ2000")
        got = {(int(r["line"]) - 2, r["oid"]) for r in body["rows"]}
        want = {(int(k), objects["oid"][j]) for k, j in zip(*np.nonzero(sep <= radius), strict=True)}
        assert got == want and len(body["rows"]) == len(want)
        assert body["matched"] == len({k for k, _ in want})
        for r in body["rows"]:
            k = int(r["line"]) - 2
            assert r["name"] == f"t{k}" and r["note"] == f"note, {k}"
            assert r["dist_arcsec"] == pytest.approx(
                sep[k, objects.index[objects["oid"] == r["oid"]][0]], abs=1e-4
            )
    # the nearest only (the default), and the positions without one kept as empty rows when asked
    nearest = api_http.post(
        "/crossmatch", params={"radius": 2.0, "unmatched": True}, content=csv.encode()
    ).json()
    assert [int(r["line"]) for r in nearest["rows"]] == list(range(2, 2 + len(ra)))
    for r in nearest["rows"]:
        k = int(r["line"]) - 2
        best = int(np.argmin(sep[k]))
        assert r["oid"] == (objects["oid"][best] if sep[k, best] <= 2.0 else None)
    assert all(r["oid"] == picked["oid"][k] for k, r in enumerate(nearest["rows"][:12]))
    # each classifier's class and probability are the object's latest-version top class
    top = api_store.fetch_df(
        "SELECT oid, classifier_name, class_name, probability FROM probability WHERE ranking = 1 AND oid = ANY(%s)",
        (list(picked["oid"]),),
    )
    checked = 0
    for row in top.itertuples(index=False):
        (r,) = [r for r in nearest["rows"] if r["oid"] == row.oid]
        if (
            api_store.fetch_df(
                "SELECT count(DISTINCT classifier_version) AS n FROM probability WHERE oid = %s AND classifier_name = %s",
                (row.oid, row.classifier_name),
            )["n"][0]
            == 1
        ):
            assert r[f"{row.classifier_name}_class"] == row.class_name
            assert r[f"{row.classifier_name}_probability"] == pytest.approx(row.probability)
            checked += 1
    assert checked > 0
    # CSV out: the same rows, ready for a spreadsheet
    out = api_http.post("/crossmatch", params={"radius": 2.0, "format": "csv"}, content=csv.encode())
    assert (
        out.headers["content-type"].startswith("text/csv")
        and "attachment" in out.headers["content-disposition"]
    )
    table = pd.read_csv(io.StringIO(out.text), dtype={"name": str})
    assert table["oid"].tolist() == [r["oid"] for r in nearest["rows"] if r["oid"]]
    assert table["note"].tolist() == [r["note"] for r in nearest["rows"] if r["oid"]]


def test_crossmatch_answers_are_bounded(api_night, api_store, monkeypatch):
    from alert_broker.api import data as data_module

    objects = api_store.fetch_df("SELECT meanra, meandec FROM object ORDER BY oid LIMIT 3")
    data = BrokerData(api_night.dsn, api_night.lake)
    try:
        ra, dec = objects["meanra"].to_numpy(float), objects["meandec"].to_numpy(float)
        assert len(data.match_positions(ra, dec, 1.0)) == 3
        monkeypatch.setattr(data_module, "MAX_MATCH_PAIRS", 2)
        with pytest.raises(BadRequest, match="3 matches: at most 2"):
            data.match_positions(ra, dec, 1.0)
    finally:
        data.close()


def test_crossmatch_upload_refusals_are_4xx_and_say_why(api_http):
    cases = [
        (b"ra,dec\n10,95\n", {}, 422, "line 2: dec 95"),
        (b"x,y\n1,2\n", {}, 422, "no right ascension column"),
        (b"ra,dec\n1,2\n", {"ra_col": "alpha"}, 422, "ra_col='alpha': no such column"),
        (b"", {}, 422, "empty"),
        (b"ra,dec\n\xff,1\n", {}, 422, "not UTF-8"),
        (b"ra,dec\n1,2\n", {"radius": 0}, 422, "radius"),
        (b"ra,dec\n1,2\n", {"radius": 61}, 422, "radius"),
        (b"ra,dec\n1,2\n", {"format": "xml"}, 422, "format"),
        (b"ra,dec\n" + b"1,1\n" * 1_400_000, {}, 413, "at most"),
    ]
    for body, params, status, words in cases:
        res = api_http.post("/crossmatch", params=params, content=body)
        assert res.status_code == status, (params, res.text[:200])
        assert words in res.json()["detail"], res.json()["detail"]


def test_local_catalogues_and_cones_around_a_position(api_http, api_store, api_night):
    from tests.fixtures.broker_api import NEAR_OFFSETS

    cats = {c["name"]: c for c in api_http.get("/catalogs").json()}
    assert set(cats) == {"near", "rosat"}
    assert (
        cats["near"]["rows"] == 15
        and cats["rosat"]["rows"] == 703
        and "CountRate" in cats["rosat"]["columns"]
    )
    obj = api_store.fetch_df("SELECT oid, meanra, meandec FROM object ORDER BY oid LIMIT 1").iloc[0]
    at = {"ra": float(obj["meanra"]), "dec": float(obj["meandec"])}
    for radius in (1.0, 5.0, 30.0, 60.0):
        res = api_http.get("/catalogs/cone", params={**at, "radius": radius}).json()
        near = res["catalogs"]["near"]
        want = [f"{obj['oid']}-{k}" for k, off in enumerate(NEAR_OFFSETS) if off <= radius]
        assert [r["catalog_id"] for r in near["rows"]] == want and near["total"] == len(want)
        for r in near["rows"]:
            off = NEAR_OFFSETS[int(r["catalog_id"].rsplit("-", 1)[1])]
            assert r["dist_arcsec"] == pytest.approx(off, abs=1e-6) and r["mag"] == 15 + NEAR_OFFSETS.index(
                off
            )
        assert res["catalogs"]["rosat"]["total"] == 0  # no ROSAT source near a ZTF sample object
    one = api_http.get(
        "/catalogs/cone", params={**at, "radius": 60, "catalog": "near", "nearest": True}
    ).json()
    assert list(one["catalogs"]) == ["near"] and [
        r["catalog_id"] for r in one["catalogs"]["near"]["rows"]
    ] == [f"{obj['oid']}-0"]
    capped = api_http.get("/catalogs/cone", params={**at, "radius": 60, "limit": 2}).json()["catalogs"][
        "near"
    ]
    assert capped["total"] == 3 and len(capped["rows"]) == 2
    # around a real ROSAT source (the first of the sample's first trixel): found, its columns beside it
    rosat = api_http.get(
        "/catalogs/cone", params={"ra": 2.89292, "dec": 0.00014, "radius": 5, "catalog": "rosat"}
    )
    (hit,) = rosat.json()["catalogs"]["rosat"]["rows"]
    assert hit["dist_arcsec"] < 1 and hit["CountRate"] == pytest.approx(0.02972, rel=1e-3)
    for params, status in (({**at, "radius": 0}, 422), ({**at, "radius": 1801}, 422), ({"ra": 1}, 422),
                           ({**at, "catalog": "nothere"}, 404), ({**at, "catalog": "a b"}, 422)):  # fmt: skip
        assert api_http.get("/catalogs/cone", params=params).status_code == status, params


def test_watch_lists_and_their_hits(api_http, api_store, api_night):
    from tests.fixtures.broker_api import WATCHLIST, WATCHLIST_FILES

    rows = api_store.fetch_df("SELECT * FROM watchlist_hit ORDER BY mjd DESC")
    assert set(rows["name"]) == {f"target {k}" for k in WATCHLIST_FILES}  # every entry was hit
    # the hits are exactly the alerts within an entry's radius (brute force over every stored alert)
    entries = pd.read_csv(api_night.out.parent / "targets.csv")
    alerts = api_store.fetch_df("SELECT candid, ra, dec FROM alert")
    sep = (
        SkyCoord(entries["ra"].to_numpy() * u.deg, entries["dec"].to_numpy() * u.deg)[:, None]
        .separation(
            SkyCoord(alerts["ra"].to_numpy(float) * u.deg, alerts["dec"].to_numpy(float) * u.deg)[None, :]
        )
        .arcsec
    )
    want = {
        (entries["name"][e], int(alerts["candid"][a])) for e, a in zip(*np.nonzero(sep <= 3.0), strict=True)
    }
    assert set(zip(rows["name"], rows["candid"].astype(int), strict=True)) == want
    for k in WATCHLIST_FILES:  # the entry's own alert among them
        with open(api_night.ztf_files[k], "rb") as fh:
            assert int(next(fastavro.reader(fh))["candid"]) in set(
                rows.loc[rows["name"] == f"target {k}", "candid"]
            )
    (summary,) = api_http.get("/watchlists").json()
    assert summary["watchlist"] == WATCHLIST and summary["hits"] == len(rows)
    assert summary["targets_hit"] == 3 and summary["objects"] == rows["oid"].nunique()
    hits = api_http.get("/watchlists/hits").json()
    assert [int(h["candid"]) for h in hits] == [int(c) for c in rows["candid"]]
    assert all(0.5 < h["dist_arcsec"] <= 3.0 and h["magpsf"] and h["band"] for h in hits)
    one = api_http.get("/watchlists/hits", params={"name": "target 5", "watchlist": WATCHLIST}).json()
    assert {h["name"] for h in one} == {"target 5"} and len(one) == int((rows["name"] == "target 5").sum())
    night = int(rows["night"].iloc[0])
    assert len(api_http.get("/watchlists/hits", params={"night": night}).json()) == int(
        (rows["night"] == night).sum()
    )
    later = float(rows["mjd"].median())
    assert len(api_http.get("/watchlists/hits", params={"since_mjd": later}).json()) == int(
        (rows["mjd"] >= later).sum()
    )
    assert api_http.get("/watchlists/hits", params={"watchlist": "other"}).json() == []
    assert api_http.get("/watchlists/hits", params={"limit": 0}).status_code == 422


def test_errors_are_4xx_with_a_message(api_http):
    cases = [
        ("/objects/ZTF99nothere", {}, 404),
        ("/objects/ZTF99nothere/lightcurve", {}, 404),
        ("/objects/ZTF99nothere/probabilities", {}, 404),
        ("/alerts/1/stamps/science", {}, 404),
        ("/alerts/1/raw", {}, 404),
        ("/objects", {"ra": 10, "dec": 95, "radius": 5}, 422),
        ("/objects", {"ra": -1, "dec": 0, "radius": 5}, 422),
        ("/objects", {"ra": 10, "dec": 0}, 422),
        ("/objects", {"ra": 10, "dec": 0, "radius": 0}, 422),
        ("/objects", {"page_size": 1001}, 422),
        ("/objects", {"page": 100_000, "page_size": 1000}, 422),
        ("/objects", {"order_by": "probability"}, 422),
        ("/objects", {"ndet": [1, 2, 3]}, 422),
        ("/objects", {"ndet": [5, 1]}, 422),
        ("/alerts/1/stamps/sideways", {}, 422),
        ("/sn-candidates", {"night": 123}, 422),
        ("/runs", {"limit": 0}, 422),
        ("/runs", {"status": "ok; DROP"}, 422),
        ("/runs/no-such-run", {}, 404),
    ]
    for path, params, status in cases:
        res = api_http.get(path, params=params)
        assert res.status_code == status, (path, params, res.text)
        assert isinstance(res.json()["detail"], str) and res.json()["detail"]


INJECTIONS = [
    "' OR '1'='1", "1; DROP TABLE object; --", "ZTF' UNION SELECT usename, passwd FROM pg_shadow --", "\x00",
    "%00", "1e309", "-1e309", "NaN", "inf", "-1", "9" * 400, "A" * 5000, "../../../../etc/passwd",
    "<script>alert(1)</script>", "\u202e\U0001f600", "", " ", "true", "[]", "{}", "$(reboot)", "1 OR 1=1",
]  # fmt: skip


def test_injection_and_oversized_values_get_only_4xx(api_http, api_url, api_store, api_night):
    spec = api_http.get("/openapi.json").json()
    before = {t: api_store.count(t) for t in ("object", "alert", "probability", "magstats")}
    oid = api_store.fetch_df("SELECT oid FROM object LIMIT 1")["oid"][0]
    candid = str(api_store.fetch_df("SELECT candid FROM alert WHERE survey = 'ztf' LIMIT 1")["candid"][0])
    valid_path = {"oid": oid, "candid": candid, "kind": "science"}
    tried = 0
    statuses = set()
    for path, ops in spec["paths"].items():
        op = ops.get("get")
        if op is None:
            continue
        params = op.get("parameters", [])
        assert all(p["in"] in ("path", "query") for p in params)
        for p in params:
            for bad in INJECTIONS:
                url = path
                for name, value in valid_path.items():
                    if p["in"] == "path" and name == p["name"]:
                        value = quote(bad, safe="") or "%20"
                    url = url.replace("{" + name + "}", value)
                query = {}
                if p["in"] == "query":
                    query = {p["name"]: bad}
                    if p["name"] in ("ra", "dec", "radius"):  # the cone's other two, valid
                        query = {"ra": 10, "dec": 10, "radius": 5, **query}
                res = api_http.get(url, params=query)
                tried += 1
                statuses.add(res.status_code)
                assert res.status_code < 500, (url, query, res.status_code, res.text[:300])
                if res.status_code >= 400:
                    assert res.headers["content-type"].startswith("application/json"), (url, query)
    assert tried > 300 and statuses & {404, 422}
    # a URL longer than any server accepts is refused as a client error too
    huge = api_http.get("/objects", params={"oid": "Z" * 60_000})
    assert 400 <= huge.status_code < 500
    assert {t: api_store.count(t) for t in before} == before


def test_the_service_cannot_write(api_night):
    data = BrokerData(api_night.dsn, api_night.lake)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            data.db.rows("DELETE FROM object")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            data.db.rows("CREATE TABLE intruder (x int)")
    finally:
        data.close()


def test_openapi_docs_and_vendored_files_are_served_locally(api_http):
    spec = api_http.get("/openapi.json").json()
    for path in ("/objects", "/objects/{oid}", "/objects/{oid}/lightcurve", "/objects/{oid}/probabilities",
                 "/alerts/{candid}/stamps/{kind}", "/sn-candidates", "/stats"):  # fmt: skip
        assert path in spec["paths"]
    names = {p["name"] for p in spec["paths"]["/objects"]["get"]["parameters"]}
    assert {"classifier", "class", "probability", "ranking", "ndet", "firstmjd", "lastmjd", "ra", "dec", "radius",
            "page", "page_size", "count", "order_by", "order_mode"} <= names  # fmt: skip
    docs = api_http.get("/docs")
    assert (
        docs.status_code == 200
        and "/vendor/swagger-ui-bundle.js" in docs.text
        and "cdn" not in docs.text.lower()
    )
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "plotly.min.js"):
        assert api_http.get(f"/vendor/{name}").status_code == 200
    for page in ("/", "/sn", "/night", "/static/app.js"):
        text = api_http.get(page).text
        assert "http://" not in text and "https://" not in text


def _api_counts(api_http) -> dict[tuple[str, str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(api_http.get("/metrics").text):
        for s in family.samples:
            if s.name == "alert_broker_api_requests_total":
                out[(s.labels["route"], s.labels["method"], s.labels["status"])] = s.value
    return out


def test_metrics_count_requests_by_route_template_and_status(api_http, api_store):
    """``/metrics``: one series per route (never per object), its status, and the latency histogram."""
    oids = api_store.fetch_df("SELECT oid FROM object ORDER BY oid LIMIT 3")["oid"].tolist()
    before = _api_counts(api_http)
    for oid in oids:
        assert api_http.get(f"/objects/{oid}").status_code == 200
    assert api_http.get("/objects/ZTF99nothere").status_code == 404
    assert api_http.get("/objects", params={"page_size": 5000}).status_code == 422
    assert api_http.get("/no/such/path").status_code == 404
    after = _api_counts(api_http)

    def delta(key):
        return after.get(key, 0) - before.get(key, 0)

    assert delta(("/objects/{oid}", "GET", "200")) == 3 and delta(("/objects/{oid}", "GET", "404")) == 1
    assert delta(("/objects", "GET", "422")) == 1 and delta(("<unmatched>", "GET", "404")) == 1
    assert not [k for k in after if any(oid in k[0] for oid in oids)]  # no series named after an object
    text = api_http.get("/metrics").text
    assert 'alert_broker_api_request_seconds_bucket{le="0.005",route="/objects/{oid}"}' in text
    assert "alert_broker_api_requests_in_progress" in text
