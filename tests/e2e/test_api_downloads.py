"""The query API's file downloads (``format=csv`` and ``format=votable``) against a running ``broker serve`` on a
real night: each file holds exactly the rows and values of the endpoint's JSON, the CSV read back by pandas and
the VOTable by astropy's strict parser, with units, UCDs and 64-bit ids intact."""

from __future__ import annotations

import io
import math
import warnings

import httpx
import numpy as np
import pandas as pd
import pytest
from astropy.io.votable import parse

from alert_broker.api.formats import COLUMN_META, ID_COLUMNS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def oids(api_store) -> dict[str, str]:
    """The ZTF and the LSST object with most detections among those with features and light-curve classes
    (LSST ones carry forced photometry)."""
    out = {}
    for survey in ("ztf", "lsst"):
        out[survey] = api_store.fetch_df(
            "SELECT o.oid FROM object o WHERE o.survey = %s AND EXISTS (SELECT 1 FROM feature f WHERE f.oid = o.oid) "
            "AND EXISTS (SELECT 1 FROM probability p WHERE p.oid = o.oid) ORDER BY o.ndet DESC, o.oid LIMIT 1",
            (survey,),
        )["oid"][0]
    return out


def _votable(body: bytes):
    """The document parsed strictly: any deviation from the standard is an error, any warning too."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return parse(io.BytesIO(body), verify="exception")


def _same(json_value, file_value) -> bool:
    """A JSON value and the value a file gave back for it (null: an empty CSV field or a masked cell)."""
    missing = (
        file_value is None
        or file_value is np.ma.masked
        or (isinstance(file_value, float) and math.isnan(file_value))
    )
    if json_value is None:
        return missing or file_value == ""
    if missing:
        return False
    if isinstance(json_value, bool):
        return bool(file_value) == json_value or str(file_value) == str(json_value)
    if isinstance(json_value, int | float):
        return float(file_value) == float(json_value)  # exact: both formats keep every bit of a double
    return str(file_value) == str(json_value)


def _check_file(rows: list[dict], res: httpx.Response, fmt: str, name: str) -> None:
    """The downloaded file ``res`` holds ``rows``: same columns, same order, every value."""
    assert res.status_code == 200, res.text[:300]
    ext = "csv" if fmt == "csv" else "vot"
    assert res.headers["content-disposition"] == f'attachment; filename="{name}.{ext}"'
    assert rows, "the case must have rows to compare"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    if fmt == "csv":
        assert res.headers["content-type"].startswith("text/csv")
        table = pd.read_csv(io.BytesIO(res.content), dtype=str, keep_default_na=False)
        assert list(table.columns) == columns and len(table) == len(rows)
        for i, row in enumerate(rows):
            for c in columns:
                got = table[c].iloc[i]
                want = row.get(c)
                if isinstance(want, int | float) and not isinstance(want, bool) and got != "":
                    got = float(got)
                assert _same(want, None if got == "" else got), (i, c, want, got)
        return
    assert res.headers["content-type"] == "application/x-votable+xml"
    document = _votable(res.content)
    table = document.get_first_table()
    assert table.name == name
    data = table.to_table()
    assert list(data.colnames) == columns and len(data) == len(rows)
    for field in table.fields:
        unit, ucd = COLUMN_META.get(field.name, (None, None))
        assert (str(field.unit) if field.unit is not None else None) == unit, field.name
        if ucd:
            assert field.ucd.split(";")[0] == ucd.split(";")[0], field.name
        if field.name in ID_COLUMNS:
            assert field.datatype == "long", field.name  # the ids back as 64-bit integers
    for i, row in enumerate(rows):
        for c in columns:
            got = data[c][i]
            want = row.get(c)
            if c in ID_COLUMNS and want is not None:
                assert int(got) == int(want), (i, c)
                continue
            if isinstance(got, np.generic):
                got = got.item()
            assert _same(want, got), (i, c, want, got)


CASES = [
    # (name, path, params, rows of the JSON answer)
    ("objects", "/objects", {"page_size": 200}, lambda j: j["items"]),
    (
        "lsst objects",
        "/objects",
        {"survey": "lsst", "page_size": 50, "order_by": "ndet"},
        lambda j: j["items"],
    ),
    ("magstats", "/objects/{ztf}/magstats", {}, lambda j: j),
    ("features", "/objects/{ztf}/features", {}, lambda j: j),
    ("lsst features", "/objects/{lsst}/features", {}, lambda j: j),
    ("detections", "/objects/{ztf}/detections", {}, lambda j: j),
    ("non-detections", "/objects/{ztf}/non_detections", {}, lambda j: j),
    ("lsst forced photometry", "/objects/{lsst}/forced_photometry", {}, lambda j: j),
    ("probabilities", "/objects/{ztf}/probabilities", {}, lambda j: j),
    ("watch-list hits", "/watchlists/hits", {}, lambda j: j),
]


@pytest.mark.parametrize("fmt", ["csv", "votable"])
@pytest.mark.parametrize(("case", "path", "params", "pick"), CASES, ids=[c[0] for c in CASES])
def test_downloads_hold_the_json_rows(api_http, oids, fmt, case, path, params, pick):
    url = path.format(**oids)
    rows = pick(api_http.get(url, params=params).json())
    res = api_http.get(url, params={**params, "format": fmt})
    name = {"/objects": "objects", "/watchlists/hits": "watchlist-hits"}.get(path)
    if name is None:
        oid = oids["lsst" if "{lsst}" in path else "ztf"]
        name = f"{oid}_{path.rsplit('/', 1)[1]}"
    _check_file(rows, res, fmt, name)


@pytest.mark.parametrize("fmt", ["csv", "votable"])
def test_light_curve_download_is_every_point_time_ordered(api_http, oids, fmt):
    """One table of detections, limits and forced photometry, a `kind` column saying which, ordered by time."""
    for survey, oid in oids.items():
        lc = api_http.get(f"/objects/{oid}/lightcurve").json()
        res = api_http.get(f"/objects/{oid}/lightcurve", params={"format": fmt})
        parts = {
            "detection": "detections",
            "non_detection": "non_detections",
            "forced_photometry": "forced_photometry",
        }
        expected = [{"kind": k, **r} for k, part in parts.items() for r in lc[part]]
        expected.sort(key=lambda r: r["mjd"])
        assert len(expected) == sum(len(lc[p]) for p in parts.values())
        if survey == "lsst":
            assert lc["forced_photometry"] and {r["kind"] for r in expected} >= {
                "detection",
                "forced_photometry",
            }
        _check_file(expected, res, fmt, f"{oid}_lightcurve")
        if fmt == "votable":
            infos = {i.name: i.value for i in _votable(res.content).resources[0].infos}
            assert infos["oid"] == oid and infos["source"] == "history"
            position = [
                f.name for f in _votable(res.content).get_first_table().fields if "meta.main" in (f.ucd or "")
            ]
            assert set(position) == {"oid", "ra", "dec"}  # TOPCAT plots the detections' own positions


def test_sn_candidates_and_catalogue_cones_download(api_http, api_store, api_night):
    sn = api_http.get(
        "/sn-candidates", params={"max_age_days": 365, "ranking": 5, "exclude_stellar": False}
    ).json()
    if sn["candidates"]:
        res = api_http.get(
            "/sn-candidates",
            params={"max_age_days": 365, "ranking": 5, "exclude_stellar": False, "format": "csv"},
        )
        _check_file(sn["candidates"], res, "csv", f"sn-candidates_{sn['night']}")
    # the "near" catalogue holds sources 2", 10" and 50" north of the first objects: a cone holds them
    ra, dec = api_store.fetch_df("SELECT meanra, meandec FROM object ORDER BY oid LIMIT 1").iloc[0]
    cone = api_http.get("/catalogs/cone", params={"ra": ra, "dec": dec, "radius": 60}).json()
    rows = [{"catalog": n, **r} for n, c in cone["catalogs"].items() for r in c["rows"]]
    assert any(r["catalog"] == "near" for r in rows)
    for fmt in ("csv", "votable"):
        res = api_http.get("/catalogs/cone", params={"ra": ra, "dec": dec, "radius": 60, "format": fmt})
        _check_file(rows, res, fmt, "catalog-cone")
    infos = {i.name: i.value for i in _votable(res.content).resources[0].infos}
    assert int(infos["total_near"]) == cone["catalogs"]["near"]["total"]


def test_crossmatch_upload_answers_as_a_votable(api_http, api_store):
    objects = api_store.fetch_df("SELECT oid, meanra, meandec FROM object ORDER BY oid LIMIT 5")
    text = "name,ra,dec\n" + "".join(
        f"t{i},{r.meanra},{r.meandec}\n" for i, r in enumerate(objects.itertuples())
    )
    params = {"radius": 2, "unmatched": True}
    rows = api_http.post(
        "/crossmatch", params=params, content=text, headers={"Content-Type": "text/csv"}
    ).json()["rows"]
    assert {r["oid"] for r in rows} >= set(objects["oid"])
    for fmt in ("csv", "votable"):
        res = api_http.post(
            "/crossmatch",
            params={**params, "format": fmt},
            content=text,
            headers={"Content-Type": "text/csv"},
        )
        _check_file(rows, res, fmt, "crossmatch")


def test_unknown_format_and_unknown_object_are_refused(api_http, oids):
    res = api_http.get(f"/objects/{oids['ztf']}/detections", params={"format": "fits"})
    assert res.status_code == 422 and "format" in res.json()["detail"]
    res = api_http.get("/objects/ZTF00nothere/lightcurve", params={"format": "votable"})
    assert res.status_code == 404 and res.headers["content-type"].startswith("application/json")
