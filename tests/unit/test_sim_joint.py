"""Joint ZTF + LSST runs: one simulated sky, both surveys' archives in the same nights, one joint truth table."""

from __future__ import annotations

import argparse
import io
import re
import tarfile

import fastavro
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from alert_broker.simulator import (
    SimConfig,
    build_joint_world,
    build_world,
    iter_alerts,
    simulate,
    simulate_joint,
)
from alert_broker.simulator.chunk import simulate_chunk
from alert_broker.simulator.cli import register, run
from alert_broker.simulator.sky import close_pairs

CFG = SimConfig(survey="ztf+lsst", nights=2, objects=1500, seed=21)
SURVEYS = ("ztf", "lsst")


def _offset_arcsec(ra, dec, ra0, dec0):
    dra = (np.asarray(ra) - np.asarray(ra0) + 180.0) % 360.0 - 180.0
    return np.hypot(dra * np.cos(np.deg2rad(dec0)), np.asarray(dec) - np.asarray(dec0)) * 3600.0


def _unit(ra, dec):
    r, d = np.deg2rad(ra), np.deg2rad(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=1)


@pytest.fixture(scope="module")
def joint(tmp_path_factory):
    out = tmp_path_factory.mktemp("joint")
    report = simulate_joint(CFG, str(out))
    truth = pd.read_parquet(report.truth_path)
    alerts = {}
    for s in SURVEYS:
        rows = []
        for f in sorted(out.glob(f"{s}/night=*/*.avro")):
            with open(f, "rb") as fh:
                rec = next(fastavro.reader(fh))
            night = int(f.parent.name.split("=")[1])
            if s == "ztf":
                c = rec["candidate"]
                rows.append(
                    (rec["objectId"], rec["candid"], night, c["jd"] - 2400000.5, c["ra"], c["dec"], 0)
                )
            else:
                d, o = rec["diaSource"], rec["diaObject"]
                oid = str(d["diaObjectId"] or d["ssObjectId"])
                rows.append((oid, rec["diaSourceId"], night, d["midpointMjdTai"], d["ra"], d["dec"], 0))
                if o is not None:  # the diaObject's own (mean) position, as a second row flagged 1
                    rows.append((oid, rec["diaSourceId"], night, d["midpointMjdTai"], o["ra"], o["dec"], 1))
        alerts[s] = pd.DataFrame(rows, columns=["oid", "id", "night", "mjd", "ra", "dec", "object_pos"])
    return out, report, truth, alerts


def test_one_archive_per_survey_and_one_joint_truth_table(joint):
    out, report, truth, alerts = joint
    assert (out / "truth.parquet").is_file() and not list(out.glob("*/truth.parquet"))
    assert report.survey == "ztf+lsst" and set(report.parts) == set(SURVEYS)
    assert len(truth) == CFG.objects and truth["truth_id"].tolist() == list(range(CFG.objects))
    for s in SURVEYS:
        for c in ("oid", "object_id", "field", "n_alerts", "first_alert_mjd"):
            assert f"{c}_{s}" in truth
        files = list(out.glob(f"{s}/night=*/*.avro"))
        assert len(files) == report.parts[s].alerts == truth[f"n_alerts_{s}"].sum() > 100
        # oid_S is set exactly where S alerted; every alert's object is in the truth table under that survey
        assert (truth[f"oid_{s}"].notna() == (truth[f"n_alerts_{s}"] > 0)).all()
        obj_alerts = alerts[s][alerts[s]["object_pos"] == 0]
        assert set(obj_alerts["oid"]) == set(truth[f"oid_{s}"].dropna())
    pairs = truth["oid_ztf"].notna() & truth["oid_lsst"].notna()
    assert report.pairs == pairs.sum() >= 40
    # asteroids and artefacts belong to one survey; everything else to both
    specific = truth["class"].isin(["asteroid", "bogus"])
    assert set(truth.loc[~specific, "surveys"]) == {"ztf+lsst"}
    assert set(truth.loc[specific, "surveys"]) == set(SURVEYS)
    assert not pairs[specific].any()


def test_both_surveys_observe_the_same_objects(joint):
    _, _, truth, alerts = joint
    jw = build_joint_world(CFG)
    z, lsst = jw.worlds["ztf"].pop, jw.worlds["lsst"].pop
    both = z.merge(lsst, on="truth_id", suffixes=("_z", "_l"))
    assert len(both) == (truth["surveys"] == "ztf+lsst").sum()
    for c in ("class", "subtype", "ra", "dec", "m0", "color_gr", "period", "peak_mjd", "tau"):
        a, b = both[f"{c}_z"], both[f"{c}_l"]
        assert ((a == b) | (a.isna() & b.isna())).all(), c
    # the truth's ids of an object are the ids its alerts carry, in both surveys
    for s, pop in (("ztf", z), ("lsst", lsst)):
        ids = pop.set_index("truth_id")["oid"]
        alerted = truth[truth[f"oid_{s}"].notna()]
        assert (ids.loc[alerted["truth_id"]].to_numpy() == alerted[f"oid_{s}"].to_numpy()).all()
        assert set(alerts[s]["oid"]) <= set(pop["oid"])


def test_positions_scatter_around_the_common_true_position(joint):
    _, _, truth, alerts = joint
    pos = {}
    for s, med_lo, med_hi, worst in (("ztf", 0.05, 0.25, 1.0), ("lsst", 0.01, 0.10, 0.5)):
        a = alerts[s].merge(truth[["truth_id", f"oid_{s}", "ra", "dec"]], left_on="oid", right_on=f"oid_{s}")
        src = a[a["object_pos"] == 0]
        assert len(src) == len(alerts[s][alerts[s]["object_pos"] == 0])
        d = _offset_arcsec(src["ra_x"], src["dec_x"], src["ra_y"], src["dec_y"])
        assert med_lo < np.median(d) < med_hi and d.max() < worst, (s, np.median(d), d.max())
        pos[s] = src.groupby("truth_id")[["ra_x", "dec_x"]].first()
        if s == "lsst":  # diaObject: the mean of its sources, so close to but not exactly the truth
            obj = a[a["object_pos"] == 1]
            d = _offset_arcsec(obj["ra_x"], obj["dec_x"], obj["ra_y"], obj["dec_y"])
            assert 0 < np.median(d) < 0.1 and d.max() < 0.5
    # a true pair's first ZTF and LSST positions agree to a few times the scatter
    p = pos["ztf"].join(pos["lsst"], lsuffix="_z", rsuffix="_l", how="inner")
    assert len(p) >= 40
    d = _offset_arcsec(p["ra_x_z"], p["dec_x_z"], p["ra_x_l"], p["dec_x_l"])
    assert d.max() < 1.0 and np.median(d) < 0.3


def test_objects_lie_in_both_footprints_and_apart(joint):
    _, _, truth, _ = joint
    assert truth["dec"].between(-30.0, 5.0).all()
    assert len(close_pairs(truth["ra"].to_numpy(), truth["dec"].to_numpy(), CFG.min_separation)) == 0
    # many objects in few pointings: the separation is enforced, not luck
    dense = SimConfig(survey="ztf+lsst", objects=4000, n_fields=1, seed=2, min_separation=30.0)
    sky = build_joint_world(dense).sky.objects
    ra, dec = sky["ra"].to_numpy(), sky["dec"].to_numpy()
    assert len(close_pairs(ra, dec, 30.0)) == 0
    nn, _ = cKDTree(_unit(ra, dec)).query(_unit(ra, dec), 2)
    assert np.rad2deg(np.min(nn[:, 1])) * 3600 < 60.0  # dense enough that random placement would collide


def test_same_nights_ids_in_each_survey_format(joint):
    _, report, truth, alerts = joint
    assert report.parts["ztf"].nights == report.parts["lsst"].nights and len(report.parts["ztf"].nights) == 2
    assert set(alerts["ztf"]["night"]) == set(alerts["lsst"]["night"])
    assert alerts["ztf"]["oid"].str.fullmatch(r"ZTF\d{2}[a-z]{7}").all()
    assert alerts["lsst"]["oid"].str.fullmatch(r"\d{15,19}").all()
    for s in SURVEYS:
        t = alerts[s]
        assert (t["mjd"] >= truth[f"first_alert_mjd_{s}"].min() - 1e-6).all()
    assert not set(truth["oid_ztf"].dropna()) & set(truth["oid_lsst"].dropna())
    z = truth["object_id_ztf"].dropna().astype(np.int64)
    assert z.is_unique and truth["object_id_lsst"].dropna().is_unique


def test_cross_match_at_1p5_arcsec_finds_the_true_pairs_only(joint):
    """What the broker's association does: each survey's object at its first alert's position."""
    _, _, truth, alerts = joint
    first = {}
    for s in SURVEYS:
        a = alerts[s][alerts[s]["object_pos"] == 0].sort_values("mjd").groupby("oid").first()
        tid = truth.set_index(f"oid_{s}")["truth_id"]
        first[s] = a.assign(truth_id=tid.loc[a.index].to_numpy())
    z, lsst = first["ztf"], first["lsst"]
    d, j = cKDTree(_unit(lsst["ra"], lsst["dec"])).query(_unit(z["ra"], z["dec"]))
    matched = np.rad2deg(d) * 3600 < 1.5
    true_pair = np.isin(z["truth_id"], lsst["truth_id"])
    assert true_pair.sum() >= 40
    assert matched[true_pair].all()
    assert (z["truth_id"].to_numpy()[matched] == lsst["truth_id"].to_numpy()[j[matched]]).all()


def test_stochastic_light_curves_are_shared():
    cfg = SimConfig(
        survey="ztf+lsst", nights=3, objects=300, seed=4, class_fractions={"QSO": 1, "CV/Nova": 1, "YSO": 1}
    )
    jw = build_joint_world(cfg)
    rows = []
    for w in jw.worlds.values():
        r = simulate_chunk(w.cfg, w.pop, w.visits, 0).rows
        band = np.asarray(w.cfg.spec.bands)[r["band"].to_numpy()]
        rows.append(
            pd.DataFrame(
                {
                    "truth_id": w.pop["truth_id"].to_numpy()[r["obj"]],
                    "band": band,
                    "mjd": r["mjd"],
                    "m": r["m_true"],
                }
            ).sort_values("mjd")
        )
    m = pd.merge_asof(
        rows[0], rows[1], on="mjd", by=["truth_id", "band"], tolerance=0.2, direction="nearest"
    ).dropna()
    assert len(m) > 100
    # the same DRW excursions and outbursts: within the few hours between the visits, not independent draws
    assert np.median(np.abs(m["m_x"] - m["m_y"])) < 0.03


def test_deterministic_parts_and_single_survey_runs_unchanged():
    small = SimConfig(survey="ztf+lsst", nights=1, objects=400, seed=8, stamps=False)
    for s in SURVEYS:
        part = small.part(s)
        a = [x.payload for x in iter_alerts(part)]
        b = [x.payload for x in iter_alerts(small.part(s))]
        assert a == b and len(a) > 10
        assert part.survey == s and part.joint is small and part.seed != small.seed
    assert small.part("ztf").seed != small.part("lsst").seed
    single = build_world(SimConfig(survey="ztf", nights=1, objects=400, seed=8))
    assert "truth_id" not in single.pop and single.pop["dec"].max() > 5.0
    with pytest.raises(ValueError, match="joint"):
        build_world(small)
    with pytest.raises(ValueError, match="joint"):
        next(iter_alerts(small))
    with pytest.raises(ValueError):
        SimConfig(survey="ztf+ztf").validate()
    with pytest.raises(ValueError):
        SimConfig(survey="ztf+atlas").validate()
    with pytest.raises(ValueError):
        small.part("atlas")
    with pytest.raises(ValueError, match="folder"):
        simulate(small, "kafka://localhost:9092/t")


def _parse(argv):
    parser = argparse.ArgumentParser(prog="broker")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    return parser.parse_args(argv)


def test_cli_joint_mode_writes_tarballs_per_survey(tmp_path, capsys):
    out = tmp_path / "sim"
    argv = ["simulate", "--survey", "ztf+lsst", "--objects", "400", "--seed", "5", "--tar", "--no-stamps"]
    assert run(_parse([*argv, "--out", str(out)])) == 0
    assert "ZTF+LSST" in capsys.readouterr().out
    truth = pd.read_parquet(out / "truth.parquet")
    for s in SURVEYS:
        (tb,) = list((out / s).glob(f"{s}_public_*.tar.gz"))
        assert not list((out / s).glob(".spool-*"))
        with tarfile.open(tb) as tar:
            members = tar.getmembers()
            rec = next(fastavro.reader(io.BytesIO(tar.extractfile(members[0]).read())))
        assert len(members) == truth[f"n_alerts_{s}"].sum() > 0
        oid = (
            rec["objectId"]
            if s == "ztf"
            else str(rec["diaSource"]["diaObjectId"] or rec["diaSource"]["ssObjectId"])
        )
        assert oid in set(truth[f"oid_{s}"].dropna())
        assert re.fullmatch(rf"{s}_public_\d{{8}}\.tar\.gz", tb.name)
    assert run(_parse([*argv, "--out", "kafka://localhost:9092/t"])) == 2
