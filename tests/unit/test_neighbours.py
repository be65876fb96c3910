"""Alert-internal neighbours: analytic frames, and the real Fink sample against an independent fastavro reading."""

from __future__ import annotations

import io
import math
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pytest

from alert_broker.features.neighbours import NEIGHBOUR_COLUMNS, alert_neighbours, latest_neighbours
from alert_broker.storage.lake import Lake
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import RawMessage

BIG = 2**60 + 777  # a PS1-sized id that float64 cannot hold exactly


def _alert(**fields) -> dict:
    """One alerts-table row with every neighbour field set to ZTF's "no source" markers, then ``fields``."""
    row = {"oid": "ZTF20aaaaaaa", "candid": 1, "mjd": 59000.0, "night": 20200531, "ssnamenr": "null"}
    for r in (1, 2, 3):
        row |= {f"objectidps{r}": -999, f"distpsnr{r}": -999.0, f"sgscore{r}": -999.0}
        row |= {f"s{b}mag{r}": -999.0 for b in "griz"}
    row |= {"neargaia": -999.0, "maggaia": -999.0, "neargaiabright": -999.0, "maggaiabright": -999.0}
    row |= {"ssdistnr": -999.0, "ssmagnr": -999.0}
    return row | fields


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for r in (1, 2, 3):
        df[f"objectidps{r}"] = df[f"objectidps{r}"].astype("Int64")
    return df


def test_no_source_markers_give_no_rows() -> None:
    out = alert_neighbours(_frame([_alert()]))
    assert out.empty and list(out.columns) == list(NEIGHBOUR_COLUMNS)


def test_analytic_alert_fields_map_to_rows() -> None:
    a = _alert(
        objectidps1=BIG, distpsnr1=0.25, sgscore1=0.98, sgmag1=18.5, srmag1=18.1, simag1=-999.0, szmag1=17.9,
        objectidps2=12345, distpsnr2=7.5, sgscore2=0.5, srmag2=21.0,
        neargaia=0.3, maggaia=17.2, neargaiabright=45.0, maggaiabright=12.9,
        ssnamenr="2012LU23", ssdistnr=0.0, ssmagnr=20.7,
    )  # fmt: skip
    out = alert_neighbours(_frame([a])).set_index(["catalog", "rank"])
    assert sorted(out.index) == [("gaia", 1), ("gaia_bright", 1), ("ps1", 1), ("ps1", 2), ("sso", 1)]
    p1 = out.loc[("ps1", 1)]
    assert p1["neighbour_id"] == str(BIG)  # 64-bit id exact, as text
    assert (p1["dist_arcsec"], p1["sgscore"], p1["gmag"], p1["rmag"], p1["zmag"]) == (
        0.25,
        0.98,
        18.5,
        18.1,
        17.9,
    )
    assert math.isnan(p1["imag"]) and math.isnan(p1["mag"])  # -999 -> null
    p2 = out.loc[("ps1", 2)]
    assert p2["neighbour_id"] == "12345" and p2["sgscore"] == 0.5 and math.isnan(p2["gmag"])
    g = out.loc[("gaia", 1)]
    assert pd.isna(g["neighbour_id"]) and (g["dist_arcsec"], g["mag"]) == (0.3, 17.2)
    assert math.isnan(g["sgscore"]) and math.isnan(g["rmag"])
    gb = out.loc[("gaia_bright", 1)]
    assert (gb["dist_arcsec"], gb["mag"]) == (45.0, 12.9)
    s = out.loc[("sso", 1)]
    assert (s["neighbour_id"], s["dist_arcsec"], s["mag"]) == ("2012LU23", 0.0, pytest.approx(20.7))
    assert (
        (out["candid"] == 1).all()
        and (out["night"] == 20200531).all()
        and (out["oid"] == "ZTF20aaaaaaa").all()
    )
    assert out.reset_index()["rank"].dtype == np.int16 and out["candid"].dtype == np.int64


def test_impossible_values_are_nulled_one_by_one() -> None:
    a = _alert(
        objectidps1=77, distpsnr1=120.0, sgscore1=1.5, srmag1=19.0,  # beyond PS1's 30" search; score > 1
        objectidps2=78, distpsnr2=-3.0, sgscore2=-0.1,  # negative distance and score
        neargaia=300.0, maggaia=15.5,  # beyond Gaia's 90"
        neargaiabright=90.0, maggaiabright=13.0,  # exactly at the radius: kept
        ssnamenr=" NULL ", ssdistnr=4.0, ssmagnr=19.0,  # no name: no solar-system row
    )  # fmt: skip
    out = alert_neighbours(_frame([a])).set_index(["catalog", "rank"])
    assert sorted(out.index) == [("gaia", 1), ("gaia_bright", 1), ("ps1", 1), ("ps1", 2)]
    assert out.loc[("ps1", 1), "neighbour_id"] == "77" and out.loc[("ps1", 1), "rmag"] == 19.0
    assert out[["dist_arcsec", "sgscore"]].loc[[("ps1", 1), ("ps1", 2)]].isna().all().all()
    assert math.isnan(out.loc[("gaia", 1), "dist_arcsec"]) and out.loc[("gaia", 1), "mag"] == 15.5
    assert out.loc[("gaia_bright", 1), "dist_arcsec"] == 90.0


def test_absent_neighbour_columns_count_as_missing_and_key_columns_are_required() -> None:
    old = pd.DataFrame({"oid": ["a"], "candid": [5], "mjd": [58000.0], "night": [20171101]})
    assert alert_neighbours(old).empty
    with pytest.raises(ValueError, match="night"):
        alert_neighbours(old.drop(columns="night"))


def test_latest_keeps_each_slot_of_the_latest_alert_that_reported_it() -> None:
    early = _alert(candid=10, mjd=59000.0, objectidps1=1, distpsnr1=0.5, objectidps2=2, distpsnr2=3.0,
                   ssnamenr="Ceres", ssdistnr=1.0, ssmagnr=8.0)  # fmt: skip
    late = _alert(candid=11, mjd=59001.0, night=20200601, objectidps1=1, distpsnr1=0.4)
    same_mjd = _alert(oid="ZTF20bbbbbbb", candid=21, objectidps1=5, distpsnr1=1.0)
    higher_candid = _alert(oid="ZTF20bbbbbbb", candid=22, objectidps1=6, distpsnr1=2.0)
    table = alert_neighbours(_frame([late, higher_candid, early, same_mjd]))
    got = latest_neighbours(table).set_index(["oid", "catalog", "rank"])
    assert len(got) == 4
    a = "ZTF20aaaaaaa"
    assert got.loc[(a, "ps1", 1), "candid"] == 11 and got.loc[(a, "ps1", 1), "dist_arcsec"] == 0.4
    assert got.loc[(a, "ps1", 2), "candid"] == 10  # the late alert no longer reports rank 2
    assert got.loc[(a, "sso", 1), "neighbour_id"] == "Ceres" and got.loc[(a, "sso", 1), "night"] == 20200531
    assert got.loc[("ZTF20bbbbbbb", "ps1", 1), "neighbour_id"] == "6"  # same mjd: larger candid
    assert latest_neighbours(table.iloc[:0]).empty


# ---------------------------------------------------------------------------------------------- real data
def _messages(folder: Path) -> list[RawMessage]:
    files = sorted(p for p in folder.rglob("*.avro") if p.is_file())
    return [RawMessage("test", 0, i, p.read_bytes(), p.name) for i, p in enumerate(files)]


def _expected_from_records(messages: list[RawMessage]) -> dict[tuple[int, str, int], tuple]:
    """Independent reading: plain fastavro, one alert at a time, the rules written out longhand."""
    out = {}
    for m in messages:
        for rec in fastavro.reader(io.BytesIO(m.payload)):
            c = rec["candidate"]
            candid = rec.get("candid") or c["candid"]

            def val(x, radius=None):
                if x is None or x <= -999 or (radius is not None and not 0 <= x <= radius):
                    return None
                return float(x)

            for r in (1, 2, 3):
                pid = c.get(f"objectidps{r}")
                if pid is not None and pid > 0:
                    score = val(c.get(f"sgscore{r}"))
                    score = score if score is not None and 0 <= score <= 1 else None
                    out[(candid, "ps1", r)] = (
                        str(pid),
                        val(c.get(f"distpsnr{r}"), 30.0),
                        val(c.get(f"srmag{r}")),
                        score,
                    )
            for cat, d, mg in (
                ("gaia", "neargaia", "maggaia"),
                ("gaia_bright", "neargaiabright", "maggaiabright"),
            ):
                dist, mag = val(c.get(d), 90.0), val(c.get(mg))
                if dist is not None or mag is not None:
                    out[(candid, cat, 1)] = (None, dist, mag, None)
            name = c.get("ssnamenr")
            if name is not None and name.strip().lower() not in ("", "null"):
                out[(candid, "sso", 1)] = (name, val(c.get("ssdistnr")), val(c.get("ssmagnr")), None)
    return out


@pytest.fixture(scope="module")
def fink(shared_data):
    msgs = _messages(shared_data / "ztf" / "fink_sample_1166")
    tables, dead, _ = decode_batch(msgs, "neighbours-test")
    assert not dead
    return msgs, tables.alerts


def test_real_alerts_match_an_independent_reading(fink) -> None:
    msgs, alerts = fink
    got = alert_neighbours(alerts)
    expected = _expected_from_records(msgs)
    assert len(got) == len(expected) > 5000
    keyed = got.set_index(["candid", "catalog", "rank"])
    assert keyed.index.is_unique and set(keyed.index) == set(expected)
    for key, (nid, dist, mag, score) in expected.items():
        row = keyed.loc[key]
        assert (None if pd.isna(row["neighbour_id"]) else row["neighbour_id"]) == nid, key
        main = row["rmag"] if key[1] == "ps1" else row["mag"]
        for want, have in ((dist, row["dist_arcsec"]), (mag, main), (score, row["sgscore"])):
            assert (want is None and math.isnan(have)) or want == pytest.approx(have, rel=1e-7), key
    # the catalogue mix of the sample (counted from the independent reading)
    counts = got["catalog"].value_counts()
    for cat in ("ps1", "gaia", "gaia_bright", "sso"):
        assert counts[cat] == sum(k[1] == cat for k in expected)
    # the night of 2023-10-17 carries placeholders (distpsnr1 = 120 > 30", neargaia = 300 > 90"): nulled
    raw = alerts.set_index("candid")
    ps1 = got[(got["catalog"] == "ps1") & (got["rank"] == 1)].set_index("candid")
    placeholder = raw.loc[ps1.index, "distpsnr1"].to_numpy() == 120.0
    with_id = (alerts["distpsnr1"] == 120.0) & (alerts["objectidps1"] > 0)
    assert (alerts["distpsnr1"] == 120.0).sum() == 329 and placeholder.sum() == with_id.sum() > 300
    assert np.isnan(ps1["dist_arcsec"].to_numpy()[placeholder]).all()
    assert (ps1["dist_arcsec"].dropna() <= 30).all() and (ps1["dist_arcsec"].dropna() >= 0).all()


def test_real_alerts_write_to_the_lake_by_night(fink, tmp_path) -> None:
    _, alerts = fink
    table = alert_neighbours(alerts)
    lake = Lake(tmp_path / "lake")
    paths = lake.write_table("neighbours", table, "b0-r000")
    assert {p.split("/")[-2] for p in paths} == {f"night={n}" for n in alerts["night"].unique()}
    back = lake.read_table("neighbours")
    assert len(back) == len(table)
    merged = back.merge(table, on=["candid", "catalog", "rank"], suffixes=("", "_w"))
    assert (merged["neighbour_id"].fillna("-") == merged["neighbour_id_w"].fillna("-")).all()
    assert (merged["night"] == merged["night_w"]).all()


def test_latest_per_object_on_a_real_sequence(shared_data) -> None:
    """ZTF20aaelulu (SN 2020oi) over its 58 alerts: the summary is the neighbours of its last alert."""
    msgs = _messages(shared_data / "ztf" / "object_sequences" / "ZTF20aaelulu")
    tables, _, _ = decode_batch(msgs, "seq")
    alerts = tables.alerts
    table = alert_neighbours(alerts)
    latest = latest_neighbours(table)
    last_candid = alerts.sort_values(["mjd", "candid"])["candid"].iloc[-1]
    last_rows = table[table["candid"] == last_candid]
    slots_ever = set(zip(table["catalog"], table["rank"], strict=True))
    assert set(zip(latest["catalog"], latest["rank"], strict=True)) == slots_ever
    for _, row in last_rows.iterrows():
        match = latest[(latest["catalog"] == row["catalog"]) & (latest["rank"] == row["rank"])]
        assert match["candid"].iloc[0] == last_candid
    # M61's nucleus region: the PS1 neighbour ids repeat from alert to alert (a property of the position)
    ps1_1 = table[(table["catalog"] == "ps1") & (table["rank"] == 1)]
    assert ps1_1["neighbour_id"].value_counts().iloc[0] >= 0.9 * len(ps1_1)
