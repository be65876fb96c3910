"""WISE colour features: analytic inputs, and the real AllWISE sample through the broker's own cross-match."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alert_broker.features.colours import (
    COLOUR_COLUMNS,
    WISE_VEGA_TO_AB,
    band_means,
    catalog_colours,
    wise_bands,
)
from alert_broker.features.xmatch import crossmatch
from alert_broker.storage.catalogs import Catalog, import_catalog


def _xm(rows: list[tuple[str, str, dict | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "oid": [r[0] for r in rows],
            "catalog": [r[1] for r in rows],
            "catalog_id": [f"J{i}" for i in range(len(rows))],
            "dist_arcsec": 0.1,
            "properties": pd.array(
                [None if r[2] is None else json.dumps(r[2]) for r in rows], dtype="string"
            ),
        }
    )


def _ms(rows: list[tuple[str, int, float, float, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["oid", "fid", "magmean", "magmean_corr", "corrected"])


W = {"W1mag": 12.0, "W2mag": 11.25, "W3mag": 8.5, "W4mag": 6.0}


def test_colours_of_an_uncorrected_object_use_difference_magnitudes() -> None:
    xm = _xm([("a", "allwise", W)])
    ms = _ms([("a", 1, 19.0, 17.0, False), ("a", 2, 18.5, 16.0, False)])
    got = catalog_colours(xm, ms)
    assert list(got.columns) == list(COLOUR_COLUMNS) and got.index.name == "oid"
    row = got.loc["a"]
    assert row["W1-W2"] == pytest.approx(0.75) and row["W2-W3"] == pytest.approx(2.75)
    assert row["g-W2"] == pytest.approx(19.0 - 11.25) and row["g-W3"] == pytest.approx(19.0 - 8.5)
    assert row["r-W2"] == pytest.approx(18.5 - 11.25) and row["r-W3"] == pytest.approx(18.5 - 8.5)


def test_corrected_objects_use_corrected_means_and_objects_override() -> None:
    xm = _xm([("a", "allwise", W), ("b", "allwise", W)])
    ms = _ms(
        [
            ("a", 1, 19.0, 17.0, True),
            ("a", 2, 18.5, 16.0, True),
            ("b", 1, 19.0, 17.0, True),
            ("b", 2, 18.5, 16.0, False),  # one band not corrected: the object is not
        ]
    )
    got = catalog_colours(xm, ms)
    assert got.loc["a", "g-W2"] == pytest.approx(17.0 - 11.25) and got.loc["a", "r-W3"] == pytest.approx(7.5)
    assert got.loc["b", "g-W2"] == pytest.approx(19.0 - 11.25)
    objects = pd.DataFrame({"oid": ["a", "b"], "corrected": [False, True]})
    over = catalog_colours(xm, ms, objects=objects)
    assert over.loc["a", "g-W2"] == pytest.approx(19.0 - 11.25)
    assert over.loc["b", "r-W2"] == pytest.approx(16.0 - 11.25)


def test_missing_terms_give_nan_and_the_index_covers_every_oid() -> None:
    xm = _xm(
        [
            ("a", "allwise", {"W1mag": 12.0, "W2mag": None, "W3mag": 8.5}),  # null W2
            ("b", "allwise", None),  # no properties at all
            ("c", "vsx", {"W1mag": 1.0, "W2mag": 1.0, "W3mag": 1.0}),  # another catalogue: ignored
            ("e", "allwise", W),  # matched, no magstats
        ]
    )
    ms = _ms([("a", 1, 19.0, np.nan, False), ("d", 2, 18.0, np.nan, False)])  # a: no r band; d: no match
    got = catalog_colours(xm, ms)
    assert list(got.index) == ["a", "b", "d", "e"]
    a = got.loc["a"]
    assert np.isnan(a["W1-W2"]) and np.isnan(a["W2-W3"]) and np.isnan(a["g-W2"])
    assert a["g-W3"] == pytest.approx(10.5) and np.isnan(a["r-W3"])
    assert got.loc[["b", "d"]].isna().all().all()
    assert got.loc["e", "W1-W2"] == pytest.approx(0.75) and np.isnan(got.loc["e", "g-W2"])


def test_vega_to_ab_shifts_each_wise_band_by_its_offset() -> None:
    xm = _xm([("a", "allwise", W)])
    ms = _ms([("a", 1, 19.0, np.nan, False), ("a", 2, 18.5, np.nan, False)])
    vega = catalog_colours(xm, ms).loc["a"]
    ab = catalog_colours(xm, ms, vega_to_ab=True).loc["a"]
    off = WISE_VEGA_TO_AB
    assert ab["W1-W2"] - vega["W1-W2"] == pytest.approx(off["W1"] - off["W2"])  # -0.640
    assert ab["W2-W3"] - vega["W2-W3"] == pytest.approx(off["W2"] - off["W3"])
    assert vega["g-W2"] - ab["g-W2"] == pytest.approx(3.339) and vega["r-W3"] - ab["r-W3"] == pytest.approx(
        5.174
    )


def test_lsst_bands_and_other_column_spellings() -> None:
    wide = pd.DataFrame({"oid": ["x"], "w1mpro": [10.0], "w2mpro": [9.0], "w3mpro": [7.0]})  # IRSA names
    ms = _ms([("x", 5, 20.0, np.nan, False), ("x", 6, 19.0, np.nan, False), ("x", 4, 22.0, np.nan, False)])
    got = catalog_colours(wide, ms).loc["x"]
    assert (got["W1-W2"], got["g-W2"], got["r-W3"]) == (1.0, 11.0, 12.0)
    # properties as dicts (read back from PostgreSQL's JSONB); the last of repeated rows wins
    jsonb = pd.DataFrame(
        {"oid": ["x", "x"], "catalog": "allwise", "properties": [{"W1mag": 1.0, "W2mag": 1.0}, W]}
    )
    assert wise_bands(jsonb).loc["x", "W2"] == 11.25


def test_band_means_need_their_columns() -> None:
    with pytest.raises(ValueError, match="magmean_corr"):
        band_means(pd.DataFrame({"oid": ["a"], "fid": [1], "magmean": [1.0]}))
    empty = catalog_colours(_xm([]), _ms([]))
    assert empty.empty and list(empty.columns) == list(COLOUR_COLUMNS)


def test_real_allwise_sample_through_the_crossmatch(shared_data, tmp_path) -> None:
    """Objects at the 5,553 input positions, matched within 1" against the imported AllWISE sample: the colours
    are the CDS response's own W1-W2 etc. for the 5,440 matched inputs, NaN for the 113 others."""
    ref_dir = shared_data / "catalogs" / "allwise_sample"
    inputs = pd.read_csv(ref_dir / "input.csv")
    ref = pd.read_csv(ref_dir / "response.csv")
    cols = ["W1mag", "W2mag", "W3mag", "W4mag"]
    import_catalog("allwise", ref_dir / "response.csv", "RAJ2000", "DEJ2000", tmp_path,
                   columns=cols, id_col="AllWISE", order=4)  # fmt: skip
    oid = inputs["id"].astype(str)
    objects = pd.DataFrame({"oid": oid, "meanra": inputs["ra"], "meandec": inputs["dec"]})
    xm = crossmatch(objects, Catalog(tmp_path, "allwise"), 1.0, columns=cols)
    rng = np.random.default_rng(3)
    g = rng.uniform(15, 21, len(oid))
    r = g - rng.uniform(-0.5, 1.5, len(oid))
    ms = pd.concat(
        [
            pd.DataFrame({"oid": oid, "fid": 1, "magmean": g, "magmean_corr": np.nan, "corrected": False}),
            pd.DataFrame({"oid": oid, "fid": 2, "magmean": r, "magmean_corr": np.nan, "corrected": False}),
        ]
    )
    got = catalog_colours(xm, ms)
    assert len(got) == len(inputs) == 5553
    want = ref.assign(oid=ref["id_in"].astype(str)).set_index("oid")
    mean = pd.DataFrame({"g": g, "r": r}, index=oid)
    matched = got.loc[want.index]
    np.testing.assert_allclose(matched["W1-W2"], want["W1mag"] - want["W2mag"], atol=1e-9)
    np.testing.assert_allclose(matched["W2-W3"], want["W2mag"] - want["W3mag"], atol=1e-9)
    np.testing.assert_allclose(matched["g-W2"], mean.loc[want.index, "g"] - want["W2mag"], atol=1e-9)
    np.testing.assert_allclose(matched["r-W3"], mean.loc[want.index, "r"] - want["W3mag"], atol=1e-9)
    unmatched = got.drop(index=want.index)
    assert len(unmatched) == 113 and unmatched.isna().all().all()
    # AGN-like mid-IR colours exist in this sample (W1-W2 > 0.8, Stern et al. 2012): a sanity check on the sign
    assert (matched["W1-W2"] > 0.8).sum() > 0 and matched["W1-W2"].median() < 0.8
