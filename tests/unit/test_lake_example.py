"""docs/lake_example.py on a tiny lake written by storage.Lake: the cone search against astropy's brute force, and
the join with the latest top class."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from alert_broker.classifiers.hierarchical import PROBABILITY_COLUMNS
from alert_broker.features.objects import OBJECT_COLUMNS
from alert_broker.storage.lake import Lake

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "lake_example.py"
CLASSES = ("SNIa", "AGN", "RRL")


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("lake_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _objects(oids, ra, dec, lastmjd, ndet, batch_id) -> pd.DataFrame:
    n = len(oids)
    df = pd.DataFrame({c: np.full(n, np.nan) for c in OBJECT_COLUMNS})
    df["oid"] = pd.array(oids, dtype="str")
    df["survey"] = "ztf"
    df["meanra"], df["meandec"] = ra, dec
    df["firstmjd"] = 58800.0
    df["lastmjd"] = lastmjd
    df["ndet"] = np.full(n, ndet, dtype=np.int64)
    for c in ("corrected", "stellar", "diffpos", "reference_change"):
        df[c] = False
    df["night"] = np.full(n, 20200101 + int(lastmjd) - 58849, dtype=np.int32)
    df["batch_id"] = batch_id
    return df


def _probabilities(oids, top: list[str], night: int, batch_id: str, name="lc_hierarchical") -> pd.DataFrame:
    rows = []
    for oid, best in zip(oids, top, strict=True):
        others = [c for c in CLASSES if c != best]
        for rank, (cls, p) in enumerate(zip([best, *others], (0.7, 0.2, 0.1), strict=True), start=1):
            rows.append((oid, name, "1.0", cls, p, rank))
    df = pd.DataFrame(rows, columns=list(PROBABILITY_COLUMNS))
    df["ranking"] = df["ranking"].astype("int16")
    df["alert_night"] = np.int32(night)
    df["batch_id"] = batch_id
    return df


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """400 objects around (0.002, 10.0), straddling RA 0, in two batches: 150 of them seen again (moved by
    <0.1", reclassified) in the second, and 5 near the north pole."""
    rng = np.random.default_rng(7)
    n = 400
    oids = [f"ZTF20a{i:06d}" for i in range(n)]
    ra = (0.002 + rng.uniform(-0.05, 0.05, n)) % 360.0
    dec = 10.0 + rng.uniform(-0.05, 0.05, n)
    root = tmp_path_factory.mktemp("lake") / "lake"
    lk = Lake(root)
    b1, b2 = "night1-p0o0-399", "night2-p0o400-549"
    lk.write_table("objects", _objects(oids, ra, dec, 58849.3, 2, b1), f"{b1}-r000")
    first_top = [CLASSES[i % 3] for i in range(n)]
    lk.write_table("probabilities", _probabilities(oids, first_top, 20200101, b1), f"{b1}-r000")
    again = np.arange(150)
    ra2 = ra[again] + rng.normal(0, 0.03, again.size) / 3600.0
    dec2 = dec[again] + rng.normal(0, 0.03, again.size) / 3600.0
    lk.write_table(
        "objects", _objects([oids[i] for i in again], ra2 % 360, dec2, 58850.3, 4, b2), f"{b2}-r000"
    )
    second_top = [CLASSES[(i + 1) % 3] for i in again]
    lk.write_table(
        "probabilities", _probabilities([oids[i] for i in again], second_top, 20200102, b2), f"{b2}-r000"
    )
    pole = _objects([f"ZTF20p{i}" for i in range(5)], [0.0, 90.0, 180.0, 270.0, 45.0],
                    [89.9999, 89.9998, 89.9999, 89.99, 89.9997], 58849.5, 1, b1)  # fmt: skip
    lk.write_table("objects", pole, f"{b1}-r001")
    latest = {oids[i]: (ra[i], dec[i], first_top[i]) for i in range(n)}
    for k, i in enumerate(again):
        latest[oids[i]] = (ra2[k] % 360, dec2[k], second_top[k])
    for _, row in pole.iterrows():
        latest[row["oid"]] = (row["meanra"], row["meandec"], None)
    return root, latest


def _brute(latest: dict, ra: float, dec: float, radius: float) -> dict[str, float]:
    oids = list(latest)
    pos = SkyCoord([latest[o][0] for o in oids] * u.deg, [latest[o][1] for o in oids] * u.deg)
    d = pos.separation(SkyCoord(ra * u.deg, dec * u.deg)).to_value(u.arcsec)
    return {o: x for o, x in zip(oids, d, strict=True) if x <= radius}


@pytest.mark.parametrize(
    ("ra", "dec", "radius"),
    [(0.0, 10.0, 60.0), (359.99, 10.01, 90.0), (0.03, 9.98, 30.0), (0.0, 90.0, 1.5), (10.0, -40.0, 60.0)],
)
def test_cone_search_matches_brute_force(example, lake, ra, dec, radius) -> None:
    root, latest = lake
    got = example.cone_search(str(root), ra, dec, radius)
    want = _brute(latest, ra, dec, radius)
    assert set(got["oid"]) == set(want)
    assert got["oid"].is_unique and got["dist_arcsec"].is_monotonic_increasing
    for oid, d, mra, mdec in got[["oid", "dist_arcsec", "meanra", "meandec"]].itertuples(index=False):
        assert d == pytest.approx(want[oid], abs=1e-6)
        assert (mra, mdec) == pytest.approx(latest[oid][:2])  # the latest snapshot's position
    if dec < 0:
        assert got.empty


def test_cone_search_finds_enough_objects_to_mean_something(example, lake) -> None:
    root, latest = lake
    got = example.cone_search(str(root), 0.0, 10.0, 60.0)
    assert len(got) > 20 and (got["meanra"] > 359).any() and (got["meanra"] < 1).any()  # both sides of RA 0


def test_cone_with_classes_gives_the_latest_top_class(example, lake) -> None:
    root, latest = lake
    out = example.cone_with_classes(str(root), 0.0, 10.0, 120.0)
    want = _brute(latest, 0.0, 10.0, 120.0)
    assert set(out["oid"]) == set(want) and out["oid"].is_unique  # one classifier in this lake
    for oid, cls, p in out[["oid", "class_name", "probability"]].itertuples(index=False):
        assert cls == latest[oid][2] and p == pytest.approx(0.7)
    only = example.cone_with_classes(str(root), 0.0, 10.0, 120.0, classifier="lc_hierarchical_top")
    assert only["class_name"].isna().all()  # no such classifier: the objects stay, without a class
    pole = example.cone_with_classes(str(root), 0.0, 90.0, 2.0)
    assert (
        set(pole["oid"]) == {"ZTF20p0", "ZTF20p1", "ZTF20p2", "ZTF20p4"} and pole["class_name"].isna().all()
    )


def test_script_runs_from_the_command_line(lake) -> None:
    root, latest = lake
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(root), "--ra", "0", "--dec", "10", "--radius", "120"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    n = len(_brute(latest, 0.0, 10.0, 120.0))
    assert proc.stdout.startswith(f'{n} object(s) within 120" of (0.000000, +10.000000)')
    assert "SNIa" in proc.stdout and "lc_hierarchical" in proc.stdout
    default = subprocess.run(
        [sys.executable, str(SCRIPT), str(root), "--radius", "5"], capture_output=True, text=True, timeout=120
    )
    assert default.returncode == 0 and 'object(s) within 5"' in default.stdout  # centred on the latest object
