"""Our correction and magstats against ALeRCE's own outputs on the same 10 real objects (1381 detections).

Inputs: ``alerce_reference/10_objects_{detections,non_detections}.parquet`` mapped to our contract
(objectId -> oid, jd -> mjd = jd - 2400000.5, isdiffpos 't'/'1' -> +1 and 'f'/'0' -> -1, survey 'ztf',
night from mjd at Palomar). Outputs compared with ``10_objects_corrected.parquet`` (by candid) and
``10_objects_magstats.parquet`` (by oid, fid), which ALeRCE's lc_correction produced.

Agreement (asserted below): corrected flags identical (1373 true); magpsf_corr, sigmapsf_corr and
sigmapsf_corr_ext within 1e-5 mag (observed <= 4e-15), same NaN pattern, same sentinels (666 sigmapsf_corr =
100, no magnitude sentinel); dubious identical (4 detections, sum of ndubious 4). Magstats: every column with
the same meaning within 1e-5 mag / exactly for counts and flags, except where we differ on purpose.

Magstats columns that differ or are not compared, and why:

* ``stellar`` (and ``nearZTF``) on (ZTF18abdkytr, r): ALeRCE's lc_correction decides ``stellar`` per band from
  that band's first detection; docs/correction.md makes it an object property from the object's first
  detection. ZTF18abdkytr's first detection (g, distnr 0.06 px) is on a reference star, its first r detection
  (distnr 6 px) is not, so ALeRCE says r-band non-stellar and we say stellar for both bands.
* ``stellarZTF`` / ``stellarPS1``: ALeRCE's magstats labels are swapped (its ``near_stellar`` returns
  (nearZTF, nearPS1, stellarPS1, stellarZTF) and is unpacked into (nearZTF, nearPS1, stellarZTF, stellarPS1);
  ``stellar`` itself is right because the values are passed on in the same order). Ours compare equal to
  theirs crossed over.
* ``magmean`` / ``magap_mean``: ALeRCE averaged the float32 magnitudes in float32; we average in float64.
  Differences up to 4e-6 mag, inside the tolerance.
* ALeRCE's two known defects (sharpnr chained comparison true only for sharpnr <= -0.13; ``distpsnr1 < 1.4``
  counting the -999 "no PS1 source" as near) are in its later pipeline, not in lc_correction, and no object of
  these 10 is affected (no distpsnr1 < 0; the one sharpnr <= -0.13 belongs to ZTF18aaurrwb, which is not on a
  reference source). On the 1166 real alerts of the Fink sample the sharpnr defect changes ``stellar`` for
  158 alerts; both are asserted below.
* Not in ALeRCE's reference, so not compared: ``magsigma``, ``magsigma_corr``, ``saturation_rate``,
  ``dmdt_first``, ``dm_first``, ``sigmadm_first`` (we store sigmapsf_first; ALeRCE's code stores
  sigmapsf_first - diffmaglim), ``dt_first``, ``survey``, ``night``.
* Rules that differ from ALeRCE but that this sample does not exercise: ``magfirst_corr`` is the first
  detection with a valid corrected magnitude (lc_correction: the first detection, NaN if uncorrected; no
  band here has an uncorrected first detection followed by corrected ones), and the ``_corr`` statistics skip
  the 100 sentinel (no magpsf_corr = 100 here).
"""

from __future__ import annotations

import glob

import fastavro
import numpy as np
import pandas as pd
import pytest

from alert_broker.features import SENTINEL, correct, correct_magnitudes, magstats, stellar_flags

PALOMAR_LONGITUDE = -116.86
TOLERANCE = 1e-5

#: our magstats column -> ALeRCE lc_correction column with the same meaning
SAME_MEANING = {
    "ndet": "ndet",
    "ndubious": "ndubious",
    "corrected": "corrected",
    "nearPS1": "nearPS1",
    "nrfid": "nrfid",
    "magmean": "magpsf_mean",
    "magmedian": "magpsf_median",
    "magmax": "magpsf_max",
    "magmin": "magpsf_min",
    "magfirst": "magpsf_first",
    "maglast": "magpsf_last",
    "sigmapsf_first": "sigmapsf_first",
    "magmean_corr": "magpsf_corr_mean",
    "magmedian_corr": "magpsf_corr_median",
    "magmax_corr": "magpsf_corr_max",
    "magmin_corr": "magpsf_corr_min",
    "magfirst_corr": "magpsf_corr_first",
    "maglast_corr": "magpsf_corr_last",
    "magap_mean": "magap_mean",
    "magap_median": "magap_median",
    "magap_max": "magap_max",
    "magap_min": "magap_min",
    "magap_first": "magap_first",
    "magap_last": "magap_last",
    "firstmjd": "first_mjd",
    "lastmjd": "last_mjd",
}
DIFFERS_ON_PURPOSE = {("ZTF18abdkytr", 2)}


def night_of(mjd: pd.Series) -> pd.Series:
    """Site-local date of the evening (docs/data-model.md), computed here independently of pipeline.night."""
    local = pd.Timestamp("1858-11-17") + pd.to_timedelta(mjd + PALOMAR_LONGITUDE / 360.0 - 0.5, unit="D")
    return local.dt.strftime("%Y%m%d").astype("int32")


def to_contract(raw: pd.DataFrame) -> pd.DataFrame:
    df = raw.reset_index(drop=True).rename(columns={"objectId": "oid"})
    df["mjd"] = df.pop("jd") - 2400000.5
    df["fid"] = df["fid"].astype("int16")
    if "isdiffpos" in df.columns:
        df["isdiffpos"] = df["isdiffpos"].map({"t": 1, "1": 1, "f": -1, "0": -1}).astype("int8")
    df["survey"] = "ztf"
    df["night"] = night_of(df["mjd"])
    return df


@pytest.fixture(scope="module")
def reference(shared_data):
    base = shared_data / "alerce_reference"
    detections = to_contract(pd.read_parquet(base / "10_objects_detections.parquet"))
    non_detections = to_contract(pd.read_parquet(base / "10_objects_non_detections.parquet"))
    alerce_corrected = pd.read_parquet(base / "10_objects_corrected.parquet").reset_index(drop=True)
    alerce_magstats = pd.read_parquet(base / "10_objects_magstats.parquet").reset_index()
    alerce_magstats = alerce_magstats.rename(columns={"objectId": "oid"}).astype({"fid": "int16"})
    ours = correct(detections)
    ours_magstats = magstats(ours, non_detections, alerce_extras=True)
    return {
        "detections": detections,
        "corrected": ours,
        "alerce_corrected": alerce_corrected,
        "magstats": ours_magstats.set_index(["oid", "fid"]).sort_index(),
        "alerce_magstats": alerce_magstats.set_index(["oid", "fid"]).sort_index(),
    }


@pytest.fixture(scope="module")
def joined(reference):
    cols = ["candid", "corrected", "dubious", "magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext"]
    theirs = reference["alerce_corrected"][cols]
    j = reference["corrected"].merge(theirs, on="candid", suffixes=("", "_alerce"), validate="one_to_one")
    assert len(j) == len(reference["detections"]) == 1381
    return j


def test_corrected_flags_match(joined):
    assert joined["corrected"].sum() == 1373
    assert (joined["corrected"] == joined["corrected_alerce"]).all()


@pytest.mark.parametrize("column", ["magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext"])
def test_corrected_photometry_matches(joined, column):
    ours, theirs = joined[column].to_numpy(), joined[f"{column}_alerce"].to_numpy()
    assert (np.isnan(ours) == np.isnan(theirs)).all()
    assert np.array_equal(ours == SENTINEL, theirs == SENTINEL)
    both = ~np.isnan(ours)
    assert both.sum() == 1373
    assert np.abs(ours[both] - theirs[both]).max() < TOLERANCE


def test_sentinels_are_the_negative_variance_case_only(joined):
    assert (joined["sigmapsf_corr"] == SENTINEL).sum() == 666
    assert (joined["magpsf_corr"] == SENTINEL).sum() == 0
    assert (joined["sigmapsf_corr_ext"] == SENTINEL).sum() == 0


def test_dubious_matches(joined, reference):
    assert (joined["dubious"] == joined["dubious_alerce"]).all()
    assert joined["dubious"].sum() == 4
    assert reference["magstats"]["ndubious"].sum() == 4


def test_magstats_rows_match(reference):
    ours, theirs = reference["magstats"], reference["alerce_magstats"]
    assert len(ours) == len(theirs) == 16
    assert ours.index.equals(theirs.index)
    assert ours.index.get_level_values("oid").nunique() == 10


@pytest.mark.parametrize(("ours_col", "alerce_col"), sorted(SAME_MEANING.items()))
def test_magstats_column_matches(reference, ours_col, alerce_col):
    ours, theirs = reference["magstats"][ours_col], reference["alerce_magstats"][alerce_col]
    if theirs.dtype == bool or pd.api.types.is_integer_dtype(theirs):
        assert (ours.to_numpy() == theirs.to_numpy()).all(), ours.index[ours.to_numpy() != theirs.to_numpy()]
    else:
        a, b = ours.to_numpy(dtype=float), theirs.to_numpy(dtype=float)
        assert (np.isnan(a) == np.isnan(b)).all()
        assert np.nanmax(np.abs(a - b)) < TOLERANCE


def test_stellar_and_near_ztf_differ_only_where_alerce_decides_per_band(reference):
    ours, theirs = reference["magstats"], reference["alerce_magstats"]
    for col in ("stellar", "nearZTF"):
        differs = ours[col].to_numpy() != theirs[col].to_numpy()
        assert set(ours.index[differs]) == DIFFERS_ON_PURPOSE
    # The reason: ALeRCE's per-band rule on each band's first detection reproduces its column exactly ...
    det = reference["detections"].sort_values(["oid", "fid", "mjd"])
    firsts = det.drop_duplicates(["oid", "fid"]).set_index(["oid", "fid"]).sort_index()
    near_ztf = (firsts["distnr"] >= 0) & (firsts["distnr"] < 1.4)
    assert (near_ztf == theirs["nearZTF"]).all()
    # ... and for ZTF18abdkytr the object's first detection (g) is near a reference source, the first r one is not.
    assert firsts.loc[("ZTF18abdkytr", 1), "mjd"] < firsts.loc[("ZTF18abdkytr", 2), "mjd"]
    assert near_ztf[("ZTF18abdkytr", 1)] and not near_ztf[("ZTF18abdkytr", 2)]
    assert ours.loc["ZTF18abdkytr", "stellar"].all() and not theirs.loc[("ZTF18abdkytr", 2), "stellar"]


def test_alerce_stellar_ztf_and_ps1_labels_are_swapped(reference):
    ours, theirs = reference["magstats"], reference["alerce_magstats"]
    assert (ours["stellarZTF"] == theirs["stellarPS1"]).all()
    assert (ours["stellarPS1"] == theirs["stellarZTF"]).all()
    assert (ours["stellarZTF"] != theirs["stellarZTF"]).any()  # the swap is visible in this sample


def alerce_pipeline_stellar(df: pd.DataFrame) -> pd.Series:
    """ALeRCE's later is_stellar, defects included, restated to show what it would change."""
    near_ps1 = df["distpsnr1"] < 1.4  # defect: -999 (no PS1 source) is "near"
    stellar_ps1 = df["sgscore1"] > 0.4
    near_ztf = df["distnr"] < 1.4
    sharpnr_in_range = (df["sharpnr"] > -0.13).astype(int) < 0.1  # defect: the bool compared with 0.1
    stellar_ztf = (df["chinr"] < 2) & sharpnr_in_range
    return (near_ztf & near_ps1 & stellar_ps1) | (near_ztf & ~near_ps1 & stellar_ztf)


def test_known_alerce_defects_change_nothing_in_the_reference_sample(reference):
    det = reference["detections"]
    first = det.sort_values(["oid", "mjd"]).drop_duplicates("oid").set_index("oid").sort_index()
    ours = stellar_flags(det).sort_index()["stellar"]
    assert (alerce_pipeline_stellar(first) == ours).all()
    assert (det["distpsnr1"] < 0).sum() == 0
    low_sharp = det[det["sharpnr"] <= -0.13]
    assert low_sharp["oid"].tolist() == ["ZTF18aaurrwb"] and (low_sharp["distnr"] >= 1.4).all()


def test_known_alerce_defects_on_the_fink_sample(shared_data):
    """Per alert (as ALeRCE's later pipeline evaluates it): which alerts flip, and why."""
    fields = ["distnr", "chinr", "sharpnr", "sgscore1", "distpsnr1"]
    rows = []
    for path in sorted(glob.glob(str(shared_data / "ztf" / "fink_sample_1166" / "*.avro"))):
        with open(path, "rb") as fh:
            for record in fastavro.reader(fh):
                cand = record["candidate"]
                rows.append(
                    {"oid": record["objectId"], "mjd": cand["jd"] - 2400000.5, **{k: cand[k] for k in fields}}
                )
    alerts = pd.DataFrame(rows).astype({k: "float64" for k in fields})
    alerts["oid"] = alerts["oid"] + "#" + alerts.index.astype(str)  # one "object" per alert
    ours = stellar_flags(alerts)["stellar"].reindex(alerts["oid"]).to_numpy()
    theirs = alerce_pipeline_stellar(alerts).to_numpy()
    flipped = alerts[ours != theirs]
    assert len(alerts) == 1166
    assert len(flipped) == 158
    # Every flip is the sharpnr defect: on a reference source, no PS1 source near, chinr < 2, and then
    # our (-0.13, 0.1) test and ALeRCE's "sharpnr <= -0.13" disagree for every sharpnr below 0.1.
    assert ((flipped["distnr"] < 1.4) & (flipped["distpsnr1"] >= 1.4) & (flipped["chinr"] < 2)).all()
    assert (flipped["sharpnr"] < 0.1).all()
    # The -999 PS1 defect does not occur here: no alert on a reference source lacks a PS1 neighbour.
    assert not ((alerts["distpsnr1"] < 0) & (alerts["distnr"] < 1.4)).any()


def test_readme_single_case_from_the_real_alert(shared_data):
    """The README's single case is the first alert of ZTF18aazxcwf; its float32 values give ALeRCE's numbers."""
    path = shared_data / "ztf" / "object_sequences" / "ZTF18aazxcwf" / "1007101110115010003.avro"
    with open(path, "rb") as fh:
        cand = next(fastavro.reader(fh))["candidate"]
    assert cand["isdiffpos"] == "f" and cand["distnr"] < 1.4
    mag, err, ext = correct_magnitudes(
        [cand["magnr"]], [cand["magpsf"]], [cand["sigmagnr"]], [cand["sigmapsf"]], [-1]
    )
    assert mag[0] == pytest.approx(16.387620303061944, abs=1e-9)
    assert err[0] == SENTINEL
    assert ext[0] == pytest.approx(0.02641869927986706, abs=1e-9)
