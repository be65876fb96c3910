"""The API's file formats (api/formats.py) on hand-made rows: nulls, integers with nulls, 64-bit ids, nested
values, full float precision, units and UCDs valid under the IVOA vocabularies astropy checks."""

from __future__ import annotations

import io
import warnings

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.io.votable import parse
from astropy.io.votable.ucd import parse_ucd

from alert_broker.api.formats import COLUMN_META, frame, render, stacked, to_csv, to_votable

BIG_ID = "2481319123615015015"  # above 2**53: a double would change it
ROWS = [
    {"oid": "ZTF1", "candid": BIG_ID, "ra": 10.5, "dec": -3.2, "mjd": 0.1 + 0.2, "ndet": 3, "stellar": True,
     "config": {"b": [1, 2], "a": None}},
    {"oid": "ZTF2", "candid": None, "ra": 11.5, "dec": -3.3, "mjd": 60001.0, "ndet": None, "stellar": None,
     "note": "a, \"quoted\" text"},
]  # fmt: skip


def _strict(body: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return parse(io.BytesIO(body), verify="exception")


@pytest.mark.parametrize("column", sorted(COLUMN_META))
def test_units_and_ucds_are_valid(column):
    unit, ucd = COLUMN_META[column]
    parse_ucd(ucd, check_controlled_vocabulary=True)
    if unit is not None:
        u.Unit(unit, format="vounit")


def test_csv_keeps_every_value():
    body = to_csv(ROWS)
    table = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False)
    assert list(table.columns) == ["oid", "candid", "ra", "dec", "mjd", "ndet", "stellar", "config", "note"]
    assert table["candid"].tolist() == [BIG_ID, ""]
    assert float(table["mjd"][0]) == 0.1 + 0.2  # every bit of the double
    assert table["ndet"].tolist() == ["3", ""]  # an integer column with a null stays integers
    assert table["stellar"].tolist() == ["True", ""]
    assert table["config"][0] == '{"a": null, "b": [1, 2]}' and table["config"][1] == ""
    assert table["note"].tolist() == ["", 'a, "quoted" text']


def test_votable_types_nulls_units_and_main_columns():
    document = _strict(to_votable(ROWS, "demo", "two rows", {"oid": "ZTF1", "radius": 2.0, "skip": None}))
    vot = document.get_first_table()
    assert vot.name == "demo"
    fields = {f.name: f for f in vot.fields}
    assert fields["candid"].datatype == "long" and fields["ndet"].datatype == "long"
    assert fields["stellar"].datatype == "boolean" and fields["mjd"].datatype == "double"
    assert fields["ra"].ucd == "pos.eq.ra;meta.main" and str(fields["ra"].unit) == "deg"
    assert fields["oid"].ucd == "meta.id;meta.main" and fields["candid"].ucd == "meta.id"
    assert str(fields["mjd"].unit) == "d"
    table = vot.to_table()
    assert int(table["candid"][0]) == int(BIG_ID) and table["candid"].mask[1]
    assert table["ndet"][0] == 3 and table["ndet"].mask[1]
    assert bool(table["stellar"][0]) and table["stellar"].mask[1]
    assert table["mjd"][0] == 0.1 + 0.2
    assert {i.name: i.value for i in document.resources[0].infos} == {"oid": "ZTF1", "radius": "2.0"}


def test_object_tables_mark_the_mean_position():
    vot = _strict(to_votable([{"oid": "ZTF1", "meanra": 1.0, "meandec": 2.0}], "objects")).get_first_table()
    assert [f.ucd for f in vot.fields] == ["meta.id;meta.main", "pos.eq.ra;meta.main", "pos.eq.dec;meta.main"]


def test_empty_answers_are_valid_files():
    assert to_csv([]) == b"\n"
    assert len(_strict(to_votable([], "nothing")).get_first_table().fields) == 0


def test_columns_that_are_all_null():
    """A column with no value is a one-character text column of empty cells (VOTable text has no null)."""
    vot = _strict(to_votable([{"oid": "a", "x": None}, {"oid": "b", "x": None}], "t")).get_first_table()
    assert [f.datatype for f in vot.fields] == ["unicodeChar", "unicodeChar"]
    assert [str(v) for v in vot.to_table()["x"].filled("")] == ["", ""]


def test_render_names_the_file():
    body, media, name = render("votable", ROWS, "ZTF1_detections")
    assert (
        media == "application/x-votable+xml" and name == "ZTF1_detections.vot" and body.startswith(b"<?xml")
    )
    assert render("csv", ROWS, "x")[1:] == ("text/csv; charset=utf-8", "x.csv")
    with pytest.raises(ValueError, match="no file format"):
        render("fits", ROWS, "x")


def test_stacked_orders_by_time_and_keeps_ties_in_part_order():
    parts = {"detection": [{"mjd": 3.0}, {"mjd": 1.0}], "non_detection": [{"mjd": 1.0}, {"mjd": 2.0}]}
    rows = stacked(parts, "kind", "mjd")
    assert [(r["kind"], r["mjd"]) for r in rows] == [
        ("detection", 1.0), ("non_detection", 1.0), ("non_detection", 2.0), ("detection", 3.0),
    ]  # fmt: skip
    unsorted = stacked({"a": [{"x": 2}], "b": [{"y": 1}]}, "catalog", "x")  # a row without x: order kept
    assert [r["catalog"] for r in unsorted] == ["a", "b"]


def test_frame_unions_columns_in_first_seen_order():
    table = frame([{"a": 1}, {"b": 2.5, "a": None}])
    assert list(table.columns) == ["a", "b"] and table["b"].tolist() == [None, 2.5]
    vot = _strict(to_votable([{"v": float("nan")}, {"v": 1.5}], "t")).get_first_table().to_table()
    assert vot["v"].mask[0] or np.isnan(vot["v"][0])
