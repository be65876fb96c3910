"""features.correct: the formulas of docs/correction.md on hand-derived cases, sentinels and the dubious flag.

Expected values are derived in *relative* flux (r = f_diff / f_ref = 10^(-0.4 (magpsf - magnr))), an algebraic
rewriting independent of the implementation's absolute fluxes: magpsf_corr = magnr - 2.5 log10(1 + sgn r),
sigmapsf_corr = sqrt(r^2 sigmapsf^2 - sigmagnr^2) / (1 + sgn r), sigmapsf_corr_ext = r sigmapsf / (1 + sgn r).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alert_broker.features import SENTINEL, correct, correct_magnitudes

LOG2 = 2.5 * math.log10(2.0)  # 0.7525749891599529 mag: a factor 2 in flux

DEFAULTS = {
    "oid": "ZTF20aaaaaaa",
    "survey": "ztf",
    "fid": 1,
    "mjd": 59000.0,
    "night": 20200530,
    "ra": 10.0,
    "dec": 20.0,
    "magpsf": 18.0,
    "sigmapsf": 0.1,
    "magap": 18.0,
    "isdiffpos": 1,
    "distnr": 0.5,
    "magnr": 17.0,
    "sigmagnr": 0.02,
    "chinr": 1.0,
    "sharpnr": 0.0,
    "sgscore1": 0.9,
    "distpsnr1": 0.3,
    "rfid": 100,
    "fwhm": 2.0,
}


def detections_frame(rows: list[dict]) -> pd.DataFrame:
    """A detections frame in the contract's dtypes; every row starts from DEFAULTS (shared by the other tests)."""
    records = [{**DEFAULTS, "candid": 1_000_000 + i, **row} for i, row in enumerate(rows)]
    df = pd.DataFrame.from_records(records)
    return df.astype({"fid": "int16", "isdiffpos": "int8", "night": "int32", "candid": "int64"})


def relative(magnr, sigmagnr, magpsf, sigmapsf, sgn):
    r = 10 ** (-0.4 * (magpsf - magnr))
    one = 1 + sgn * r
    return (
        magnr - 2.5 * math.log10(one),
        math.sqrt(r * r * sigmapsf**2 - sigmagnr**2) / one,
        r * sigmapsf / one,
    )


def test_positive_difference_equal_fluxes_doubles_the_flux():
    out = correct(detections_frame([{"magnr": 17.0, "magpsf": 17.0, "sigmapsf": 0.1, "sigmagnr": 0.02}]))
    row = out.iloc[0]
    assert row["magpsf_corr"] == pytest.approx(17.0 - LOG2, abs=1e-12)
    assert row["sigmapsf_corr"] == pytest.approx(math.sqrt(0.1**2 - 0.02**2) / 2, abs=1e-12)
    assert row["sigmapsf_corr_ext"] == pytest.approx(0.1 / 2, abs=1e-12)
    assert bool(row["corrected"]) and not bool(row["dubious"])


def test_negative_difference_halves_the_flux():
    # magpsf = magnr + 2.5 log10 2 -> f_diff = f_ref / 2 -> f_sci = f_ref / 2 -> one magnitude LOG2 fainter.
    out = correct(
        detections_frame([{"magnr": 16.0, "magpsf": 16.0 + LOG2, "sigmapsf": 0.2, "isdiffpos": -1}])
    )
    row = out.iloc[0]
    assert row["magpsf_corr"] == pytest.approx(16.0 + LOG2, abs=1e-12)
    assert row["sigmapsf_corr_ext"] == pytest.approx(0.2, abs=1e-12)  # (f_ref/2) sigma / (f_ref/2)
    assert row["sigmapsf_corr"] == pytest.approx(math.sqrt(0.25 * 0.2**2 - 0.02**2) / 0.5, abs=1e-12)


@pytest.mark.parametrize(
    ("magnr", "sigmagnr", "magpsf", "sigmapsf", "sgn"),
    [(15.2, 0.01, 16.0, 0.08, 1), (19.3, 0.05, 18.1, 0.03, 1), (17.5, 0.015, 19.9, 0.2, -1)],
)
def test_general_cases_match_the_relative_flux_derivation(magnr, sigmagnr, magpsf, sigmapsf, sgn):
    row = {"magnr": magnr, "sigmagnr": sigmagnr, "magpsf": magpsf, "sigmapsf": sigmapsf, "isdiffpos": sgn}
    out = correct(detections_frame([row])).iloc[0]
    expected = relative(magnr, sigmagnr, magpsf, sigmapsf, sgn)
    got = (out["magpsf_corr"], out["sigmapsf_corr"], out["sigmapsf_corr_ext"])
    assert got == pytest.approx(expected, abs=1e-12)


def test_known_reference_case_from_alerce():
    """The README's case (ALeRCE's own test): first alert of ZTF18aazxcwf, negative variance -> sigmapsf_corr 100.

    The alert carries float32 values; the README prints them rounded (magpsf 16.97096, sigmapsf 0.045211), which
    moves the result by ~1e-6 mag, so the exact float32 values are used here (they are checked against the real
    Avro file in test_alerce_reference.py).
    """
    values = np.array([15.888, 16.970957, 0.02, 0.0452112], dtype=np.float32)
    magnr, magpsf, sigmagnr, sigmapsf = (np.array([v]) for v in values)
    mag, err, ext = correct_magnitudes(magnr, magpsf, sigmagnr, sigmapsf, np.array([-1], dtype=np.int8))
    assert mag[0] == pytest.approx(16.387620303061944, abs=1e-9)
    assert err[0] == SENTINEL
    assert ext[0] == pytest.approx(0.02641869927986706, abs=1e-9)
    row = dict(zip(("magnr", "magpsf", "sigmagnr", "sigmapsf"), values.tolist(), strict=True))
    df = detections_frame([{**row, "isdiffpos": -1, "distnr": 0.11891250312328339}])
    df = df.astype({k: "float32" for k in row})
    out = correct(df).iloc[0]
    assert out["magpsf_corr"] == pytest.approx(16.387620303061944, abs=1e-9)
    assert out["sigmapsf_corr"] == 100.0
    assert out["sigmapsf_corr_ext"] == pytest.approx(0.02641869927986706, abs=1e-9)
    # With the README's rounded magpsf/sigmapsf the answer is still within 2e-6 mag.
    mag_rounded, _, _ = correct_magnitudes([15.888], [16.97096], [0.02], [0.045211], [-1])
    assert mag_rounded[0] == pytest.approx(16.387620303061944, abs=2e-6)


@pytest.mark.parametrize("distnr", [1.4, 1.41, 5.0, -999.0, np.nan])
def test_far_from_a_reference_source_is_not_corrected(distnr):
    out = correct(detections_frame([{"distnr": distnr}])).iloc[0]
    assert not bool(out["corrected"])
    assert np.isnan([out["magpsf_corr"], out["sigmapsf_corr"], out["sigmapsf_corr_ext"]]).all()


def test_just_inside_the_radius_is_corrected():
    out = correct(detections_frame([{"distnr": 1.3999}, {"distnr": 0.0}]))
    assert out["corrected"].tolist() == [True, True]
    assert np.isfinite(out["magpsf_corr"]).all()


@pytest.mark.parametrize("magpsf", [16.0, 15.0])  # f_sci == 0 exactly, and f_sci < 0
def test_non_positive_science_flux_sets_all_three_sentinels(magpsf):
    out = correct(detections_frame([{"magnr": 16.0, "magpsf": magpsf, "isdiffpos": -1}])).iloc[0]
    assert (out["magpsf_corr"], out["sigmapsf_corr"], out["sigmapsf_corr_ext"]) == (100.0, 100.0, 100.0)
    assert bool(out["corrected"])


def test_negative_variance_sets_only_sigmapsf_corr():
    # r = 10^(-0.4*3) ~ 0.063: r * sigmapsf = 0.0032 < sigmagnr = 0.05 -> negative variance, positive flux.
    row = {"magnr": 15.0, "magpsf": 18.0, "sigmapsf": 0.05, "sigmagnr": 0.05}
    out = correct(detections_frame([row])).iloc[0]
    assert out["sigmapsf_corr"] == 100.0
    mag, _, ext = relative(15.0, 0.0, 18.0, 0.05, 1)
    assert out["magpsf_corr"] == pytest.approx(mag, abs=1e-12)
    assert out["sigmapsf_corr_ext"] == pytest.approx(ext, abs=1e-12)


def test_missing_inputs_give_nan_not_a_sentinel():
    out = correct(detections_frame([{"sigmagnr": np.nan}, {"magnr": np.nan}, {"magnr": -999.0}]))
    assert np.isnan(out.loc[0, "sigmapsf_corr"]) and np.isfinite(out.loc[0, "magpsf_corr"])
    assert out.loc[1:, ["magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext"]].isna().all().all()
    assert (out[["magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext"]] != SENTINEL).all().all()


def test_float32_inputs_are_computed_in_float64():
    rows = [{"magnr": 17.123, "magpsf": 17.9, "sigmapsf": 0.07, "sigmagnr": 0.011, "isdiffpos": -1}]
    df32 = detections_frame(rows)
    for col in ("magnr", "magpsf", "sigmapsf", "sigmagnr", "distnr"):
        df32[col] = df32[col].astype("float32")
    out = correct(df32)
    assert all(out[c].dtype == np.float64 for c in ("magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext"))
    # Same as the float64 formula applied to the float32-rounded inputs: no float32 arithmetic inside.
    f = [float(np.float32(v)) for v in (17.123, 0.011, 17.9, 0.07)]
    expected = relative(f[0], f[1], f[2], f[3], -1)
    got = out.loc[0, ["magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext"]].to_numpy(dtype=float)
    assert got == pytest.approx(expected, abs=1e-12)


def test_nullable_dtypes_are_accepted():
    df = detections_frame([{}, {"magpsf": np.nan}])
    df["magpsf"] = df["magpsf"].astype("Float32")
    out = correct(df)
    assert np.isfinite(out.loc[0, "magpsf_corr"]) and np.isnan(out.loc[1, "magpsf_corr"])


# --- dubious ---------------------------------------------------------------------------------------------------


def test_not_corrected_and_negative_is_dubious_even_when_consistent():
    out = correct(
        detections_frame([{"mjd": 1.0, "distnr": 3.0}, {"mjd": 2.0, "distnr": 3.0, "isdiffpos": -1}])
    )
    assert out["dubious"].tolist() == [False, True]


def test_first_corrected_then_not_corrected_is_dubious():
    out = correct(detections_frame([{"mjd": 1.0, "distnr": 0.2}, {"mjd": 2.0, "distnr": 2.0}]))
    assert out["dubious"].tolist() == [False, True]


def test_first_not_corrected_then_corrected_is_dubious():
    out = correct(detections_frame([{"mjd": 1.0, "distnr": 2.0}, {"mjd": 2.0, "distnr": 0.2}]))
    assert out["dubious"].tolist() == [False, True]


def test_corrected_and_negative_is_not_dubious():
    out = correct(detections_frame([{"mjd": 1.0}, {"mjd": 2.0, "isdiffpos": -1, "magpsf": 19.0}]))
    assert out["dubious"].tolist() == [False, False]


def test_first_is_the_earliest_mjd_not_the_first_row_and_bands_are_separate():
    rows = [
        {"mjd": 5.0, "distnr": 0.2},  # r 0: corrected, but not first in time
        {"mjd": 1.0, "distnr": 2.0},  # r 1: the first g detection, not corrected
        {"mjd": 3.0, "distnr": 0.2, "fid": 2},  # r 2: first (and only) r detection: consistent with itself
    ]
    df = detections_frame(rows)
    df.index = [7, 7, 7]  # duplicated labels must not matter
    out = correct(df)
    assert out["dubious"].tolist() == [True, False, False]
    assert list(out.index) == [7, 7, 7]


def test_objects_are_separate():
    rows = [{"oid": "A", "mjd": 1.0, "distnr": 2.0}, {"oid": "B", "mjd": 0.5, "distnr": 0.2}]
    out = correct(detections_frame(rows + [{"oid": "A", "mjd": 2.0, "distnr": 2.0}]))
    assert out["dubious"].tolist() == [False, False, False]


# --- contract --------------------------------------------------------------------------------------------------


def test_returns_a_copy_and_keeps_order():
    df = detections_frame([{"mjd": 3.0}, {"mjd": 1.0}, {"mjd": 2.0}])
    before = df.copy()
    out = correct(df)
    pd.testing.assert_frame_equal(df, before)
    assert out["candid"].tolist() == df["candid"].tolist()
    assert out["corrected"].dtype == bool and out["dubious"].dtype == bool


def test_missing_columns_are_named():
    df = detections_frame([{}]).drop(columns=["magnr", "sigmagnr"])
    with pytest.raises(ValueError, match=r"magnr.*sigmagnr"):
        correct(df)


def test_string_isdiffpos_is_rejected_with_advice():
    df = detections_frame([{}])
    df["isdiffpos"] = "t"
    with pytest.raises(ValueError, match="isdiffpos must be int8"):
        correct(df)


def test_empty_input_gives_empty_output_with_the_columns():
    out = correct(detections_frame([{}]).iloc[:0])
    assert out.empty
    for col in ("magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext"):
        assert out[col].dtype == np.float64
    assert out["corrected"].dtype == bool and out["dubious"].dtype == bool


def test_dubious_matches_a_slow_per_band_reference():
    """Random frame with mjd and candid ties, null mjd, null oid and a shuffled, duplicated index."""
    rng = np.random.default_rng(8)
    n = 1200
    rows = [
        {
            "oid": None if rng.random() < 0.02 else f"ZTF22{rng.integers(0, 60):04d}",
            "fid": int(rng.integers(1, 3)),
            "mjd": np.nan if rng.random() < 0.03 else 59000.0 + rng.integers(0, 40) / 2,
            "candid": int(rng.integers(0, 300)),
            "distnr": float(rng.choice([0.3, 2.0, -999.0])),
            "isdiffpos": int(rng.choice([1, -1])),
        }
        for _ in range(n)
    ]
    df = detections_frame(rows)
    df.index = rng.integers(0, 50, n)  # duplicated labels: the first detection is found by position
    out = correct(df)

    def earliest(i: int) -> tuple:
        r = rows[i]
        return (math.isnan(r["mjd"]), np.nan_to_num(r["mjd"]), r["candid"], i)

    first_of: dict[tuple, int] = {}
    for i, r in enumerate(rows):
        key = (r["oid"], r["fid"])
        if key not in first_of or earliest(i) < earliest(first_of[key]):
            first_of[key] = i
    expected = []
    for r in rows:
        corrected = 0.0 <= r["distnr"] < 1.4
        first_corrected = 0.0 <= rows[first_of[(r["oid"], r["fid"])]]["distnr"] < 1.4
        negative = r["isdiffpos"] < 0
        expected.append((not corrected and negative) or (corrected != first_corrected))
    assert out["dubious"].tolist() == expected
    assert out.index.equals(df.index) and list(out.columns[: len(df.columns)]) == list(df.columns)
    assert 0 < sum(expected) < n
