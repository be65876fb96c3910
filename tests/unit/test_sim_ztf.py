"""Simulated ZTF alerts: schema-valid, self-consistent, physically sensible, deterministic."""

from __future__ import annotations

import gzip
import io
import re

import fastavro
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from alert_broker.simulator import SimConfig, build_world, iter_alerts, truth_table
from alert_broker.simulator.avro import ContainerFramer, sync_marker, ztf_schema
from alert_broker.simulator.engine import run_parallel
from alert_broker.simulator.timeutil import night_label

CFG = SimConfig(objects=1200, nights=2, seed=21)


@pytest.fixture(scope="module")
def run():
    alerts = list(iter_alerts(CFG))
    records = [next(fastavro.reader(io.BytesIO(a.payload))) for a in alerts]
    truth = build_world(CFG).pop
    return alerts, records, truth


def _cls(run_, k):
    alerts, _, truth = run_
    return truth["class"].iat[alerts[k].obj]


def test_a_few_hundred_alerts_of_every_kind(run):
    alerts, _, truth = run
    assert 300 < len(alerts) < 5000
    seen = set(truth["class"].to_numpy()[[a.obj for a in alerts]])
    assert {"asteroid", "bogus", "SNIa", "RRL", "E", "LPV", "QSO"} <= seen


def test_every_alert_is_schema_valid_and_one_record(run):
    """Each file holds one record whose canonical fastavro encoding is exactly the bytes we wrote.

    fastavro.validate is slow (~25 ms per alert), so it runs on a sample; the re-encoding check covers all.
    """
    alerts, records, _ = run
    schema = ztf_schema("ztf")
    parsed = fastavro.parse_schema(schema)
    framer = ContainerFramer(schema, "null", sync_marker(CFG.seed, "ztf"))
    for k, (a, r) in enumerate(zip(alerts, records, strict=True)):
        assert len(list(fastavro.reader(io.BytesIO(a.payload)))) == 1
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r, strict=True)
        assert framer.frame(buf.getvalue()) == a.payload
        if k % 8 == 0:
            assert fastavro.validate(r, schema, raise_errors=True)
        assert r["schemavsn"] == "4.02" and r["candid"] == r["candidate"]["candid"] == a.candid


def test_fink_variant_is_schema_valid():
    cfg = SimConfig(objects=200, nights=1, seed=3, ztf_schema="fink", codec="snappy")
    schema = ztf_schema("fink")
    n = 0
    for a in iter_alerts(cfg):
        reader = fastavro.reader(io.BytesIO(a.payload))
        assert reader.codec == "snappy" and reader.writer_schema["name"] == "topLevelRecord"
        rec = next(reader)
        assert fastavro.validate(rec, schema, raise_errors=True) and "fp_hists" not in rec
        n += 1
    assert n > 20


def test_ids_names_and_nights(run):
    alerts, records, _ = run
    candids = [a.candid for a in alerts]
    assert len(set(candids)) == len(candids)
    for a, r in zip(alerts, records, strict=True):
        c = r["candidate"]
        assert re.fullmatch(r"ZTF\d{2}[a-z]{7}", r["objectId"])
        assert c["candid"] // 10**6 == c["pid"] and c["pid"] // 10**9 == c["nid"]
        assert c["pid"] % 10**4 // 100 == c["rcid"]
        assert c["rfid"] // 10**6 == c["field"]
        assert a.night == night_label(c["jd"] - 2400000.5, -116.8599)
    assert {a.night for a in alerts} <= {20241231, 20250101}


def test_detections_are_significant_and_history_is_30_days(run):
    _, records, _ = run
    for r in records:
        c = r["candidate"]
        assert c["sigmapsf"] <= 2.5 / np.log(10) / 5 + 1e-5  # a detection is >= 5 sigma
        assert c["ndethist"] >= 1 and c["ncovhist"] >= c["ndethist"] - 1
        for p in r["prv_candidates"] or []:
            assert c["jd"] - 30 <= p["jd"] < c["jd"]
            if p["candid"] is not None:
                assert p["sigmapsf"] <= 2.5 / np.log(10) / 5 + 1e-5 and p["isdiffpos"] in ("t", "f")
            else:
                assert p["magpsf"] is None and p["diffmaglim"] is not None
        for f in r["fp_hists"] or []:
            assert c["jd"] - 30 <= f["jd"] < c["jd"]
        dets = {p["jd"] for p in r["prv_candidates"] or [] if p["candid"] is not None}
        loud = {
            f["jd"] for f in r["fp_hists"] or [] if abs(f["forcediffimflux"] / f["forcediffimfluxunc"]) >= 5
        }
        assert dets <= loud  # forced photometry at a detection epoch is significant too


def test_asteroids_never_have_history(run):
    n = 0
    for k, r in enumerate(run[1]):
        c = r["candidate"]
        if _cls(run, k) == "asteroid":
            n += 1
            assert c["ndethist"] == 1 and c["ssnamenr"] != "null" and 0 <= c["ssdistnr"] <= 5
            assert all(p["candid"] is None for p in r["prv_candidates"] or [])
        else:
            assert c["ssnamenr"] == "null" and c["ssdistnr"] == -999.0
    assert n > 20


def test_reference_sources_variables_and_transients(run):
    alerts, records, truth = run
    rows = []
    for a, r in zip(alerts, records, strict=True):
        c = r["candidate"]
        rows.append(
            {
                "cls": truth["class"].iat[a.obj],
                **{k: c[k] for k in ("distnr", "magnr", "isdiffpos", "sgscore1", "distpsnr1", "rb", "drb")},
            }
        )
    df = pd.DataFrame(rows)
    stars = df[df["cls"].isin(["RRL", "E", "LPV", "CEP", "DSCT", "Periodic-Other"])]
    assert (stars["distnr"] < 1.4).mean() > 0.9
    assert set(stars["isdiffpos"]) == {"t", "f"}  # variables brighten and fade against the reference
    sne = df[df["cls"].isin(["SNIa", "SNII", "SNIbc", "SLSN"])]
    assert (sne["isdiffpos"] == "t").mean() > 0.95
    assert (sne["distnr"] > 0.3).mean() > 0.6  # SNe sit off their host's nucleus or far from any source
    ast = df[df["cls"] == "asteroid"]
    assert ast["distnr"].median() > 3.0
    bogus = df[df["cls"] == "bogus"]
    assert bogus["rb"].median() < 0.5 < df[df["cls"] != "bogus"]["rb"].median()


def test_alerce_correction_recovers_variable_star_magnitudes(run):
    """Reference + difference flux (ALeRCE's correction, Forster et al. 2021) gives the star's own brightness."""
    alerts, records, truth = run
    n = 0
    for a, r in zip(alerts, records, strict=True):
        t = truth.iloc[a.obj]
        c = r["candidate"]
        if t["class"] not in ("RRL", "CEP", "DSCT", "Periodic-Other") or c["distnr"] > 1.4:
            continue
        sign = 1.0 if c["isdiffpos"] == "t" else -1.0
        total = 10 ** (-0.4 * c["magnr"]) + sign * 10 ** (-0.4 * c["magpsf"])
        if total <= 0:
            continue
        m_corr = -2.5 * np.log10(total)
        colour = t["color_gr"] if c["fid"] == 1 else 0.0
        amp = t["amplitude"] * (1.3 if c["fid"] == 1 else 1.0)
        assert abs(m_corr - (t["m0"] + colour)) < 0.6 * amp + 0.15, (t["class"], m_corr, t["m0"], amp)
        n += 1
    assert n >= 10


def test_stamps_are_ztf_cutouts_consistent_with_the_photometry(run):
    alerts, records, truth = run
    checked = 0
    for a, r in zip(alerts, records, strict=True):
        imgs = {}
        for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            cut = r[key]
            assert cut["fileName"].startswith(f"candid{a.candid}") and cut["fileName"].endswith(".fits.gz")
            with fits.open(io.BytesIO(gzip.decompress(cut["stampData"]))) as h:
                assert h[0].data.shape == (63, 63) and h[0].data.dtype == np.dtype(">f4")
                assert h[0].header["BUNIT"] == "DN" and len(h[0].header) == 6
                imgs[key] = h[0].data.astype(float)
        c = r["candidate"]
        cls = truth["class"].iat[a.obj]
        if cls in ("bogus", "asteroid") or c["sigmapsf"] > 2.5 / np.log(10) / 20 or c["isdiffpos"] != "t":
            continue
        y, x = np.mgrid[:63, :63] - 31
        ap = np.hypot(x, y) < 2.5 * max(c["fwhm"], 1.5)
        dif = imgs["cutoutDifference"]
        measured = dif[ap].sum() - np.median(dif[~ap]) * ap.sum()
        expected = 10 ** (-0.4 * (c["magpsf"] - 26.25))
        assert 0.5 < measured / expected < 1.8, (cls, c["magpsf"], measured, expected)
        checked += 1
    assert checked >= 10


def test_same_seed_same_bytes_other_seed_other_bytes(run):
    alerts = run[0]
    again = list(iter_alerts(SimConfig(objects=1200, nights=2, seed=21)))
    assert [a.payload for a in again] == [a.payload for a in alerts]
    other = [a.payload for a in iter_alerts(SimConfig(objects=1200, nights=2, seed=22))]
    assert other != [a.payload for a in alerts]


def test_workers_do_not_change_the_output(tmp_path):
    """Chunks draw from their own streams: one process or two, the files are the same bytes."""
    cfg = SimConfig(objects=900, nights=1, seed=5, chunk_size=300)
    m1 = run_parallel(cfg, str(tmp_path / "one"))
    m2 = run_parallel(
        SimConfig(objects=900, nights=1, seed=5, chunk_size=300, workers=2), str(tmp_path / "two")
    )
    assert len(m1) > 50 and list(m1["candid"]) == list(m2["candid"])
    for p1, p2 in zip(m1["path"], m2["path"], strict=True):
        with open(p1, "rb") as f1, open(p2, "rb") as f2:
            assert f1.read() == f2.read()


def test_truth_table_round_trip(run, tmp_path):
    alerts = run[0]
    world = build_world(CFG)
    counts = np.bincount([a.obj for a in alerts], minlength=len(world.pop))
    truth = truth_table(world, counts)
    path = tmp_path / "truth.parquet"
    truth.to_parquet(path, index=False)
    back = pd.read_parquet(path)
    assert len(back) == CFG.objects and back["oid"].is_unique
    assert back["n_alerts"].sum() == len(alerts)
    assert {a.oid for a in alerts} == set(back.loc[back["n_alerts"] > 0, "oid"])
    rrl = back[back["class"] == "RRL"]
    assert rrl["period"].notna().all() and rrl["amplitude"].notna().all()
    sn = back[back["class"] == "SNIa"]
    assert (
        sn[["peak_mag", "peak_mjd", "distance_modulus", "redshift", "tau_rise", "tau_fall"]]
        .notna()
        .all()
        .all()
    )
    assert back["object_id"].dtype == np.int64


def test_history_days_override_lengthens_histories():
    """Training sets ask for year-long histories (the pipeline's accumulated light curve); the default is ZTF's
    30 days."""
    assert CFG.spec.history_days == 30.0
    cfg = SimConfig(objects=400, nights=1, seed=4, stamps=False, history_days=200.0)
    assert cfg.spec.history_days == 200.0 and cfg.spec.name == "ztf"
    oldest = 0.0
    for a in iter_alerts(cfg):
        r = next(fastavro.reader(io.BytesIO(a.payload)))
        ages = [r["candidate"]["jd"] - p["jd"] for p in r["prv_candidates"] or []]
        assert all(0 < x <= 200.0 for x in ages)
        oldest = max([oldest, *ages])
    assert oldest > 100.0
    with pytest.raises(ValueError, match="history_days"):
        SimConfig(history_days=0).validate()


def test_coverage_and_earlier_detections(run):
    """ncovhist counts every earlier visit of the position (a supernova's too: it was covered for years before
    it exploded); a persistent source's earlier detections start in the year of its ZTF name."""
    from alert_broker.simulator.cadence import simulated_span
    from alert_broker.simulator.chunk import _first_seen_mjd

    _, records, truth = run
    s0 = simulated_span(CFG)[0]  # detections in the simulated lead history may precede a new name's year
    sn, persistent = [], 0
    for k, r in enumerate(records):
        c = r["candidate"]
        cls = _cls(run, k)
        if cls in ("SNIa", "SNIbc", "SNII", "SLSN"):
            sn.append((c["ncovhist"], c["ndethist"]))
        elif cls not in ("asteroid", "bogus"):
            persistent += 1
            first_year = _first_seen_mjd(np.array([r["objectId"]]), CFG.spec)[0]
            assert c["jdstarthist"] - 2400000.5 >= min(first_year, s0) - 1e-6
    cov, ndet = np.array(sn).T
    assert len(sn) > 20 and persistent > 100
    assert np.median(cov) > 500 and np.median(ndet) < 50  # years of coverage, a few weeks of detections


def test_classtar_drifts_towards_half_for_faint_sources():
    from alert_broker.simulator.ztf_alerts import classtar_a

    med = 0.5 ** (1 / classtar_a(np.array([18.0, 19.5, 20.5, 21.0])))  # median of Beta(a, 1)
    assert med[0] == pytest.approx(0.977, abs=0.002) and med[1] == pytest.approx(0.977, abs=0.002)
    assert med[2] == pytest.approx(0.90, abs=0.01) and med[3] == pytest.approx(0.80, abs=0.01)


def _centre(data: bytes) -> np.ndarray:
    with fits.open(io.BytesIO(gzip.decompress(data))) as hdul:
        img = np.asarray(hdul[0].data, dtype=float)
    c = img.shape[0] // 2
    return img[c - 4 : c + 5, c - 4 : c + 5]


def test_negative_candidates_are_bright_in_their_difference_cutout():
    """ZTF publishes a negative candidate's difference cutout from the reference-minus-science subtraction, so
    the candidate is bright in it (isdiffpos 'f'); our science-minus-reference rendering is negative there."""
    from alert_broker.simulator.stamps import KIND_INDEX, StampBank, render_scene

    bank = StampBank("ztf", seed=3)
    for kind in ("star", "bare", "galaxy"):
        for sign in (1, -1):
            key = (KIND_INDEX[kind], 34, sign, 18 if kind != "bare" else 0, 0, 0, 0)  # 17 mag change
            diff = _centre(bank.get(key)[2])
            assert diff.max() > 5 * abs(diff.min()), (kind, sign)  # bright, not a hole
            rendered = render_scene(key, "ztf", 3)[2]
            c = rendered.shape[0] // 2
            assert np.sign(rendered[c - 1 : c + 2, c - 1 : c + 2].sum()) == sign  # the physical difference
    # an artefact is drawn bright whatever the sign, and stays so
    hot = (KIND_INDEX["hot_pixel"], 34, -1, 0, 0, 0, 0)
    assert _centre(bank.get(hot)[2]).max() > 0


def test_simulated_negative_alerts_carry_a_bright_difference(run):
    """In a simulated night, isdiffpos 'f' alerts of real (non-bogus) sources: the cutout's centre is bright."""
    _, records, _ = run
    n = 0
    for k, rec in enumerate(records):
        if rec["candidate"]["isdiffpos"] != "f" or not rec.get("cutoutDifference") or _cls(run, k) == "bogus":
            continue
        diff = _centre(rec["cutoutDifference"]["stampData"])
        assert diff.max() > abs(diff.min()), rec["objectId"]
        n += 1
    assert n >= 5
