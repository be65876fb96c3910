"""Cross-survey association: analytic positions (radius edge, RA wrap, poles), the rules' order, transitivity,
and a random field against a brute-force astropy computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from alert_broker.features.association import ASSOCIATION_COLUMNS, associate

AS = 1.0 / 3600.0  # one arcsec in degrees


def objs(rows, xid: bool = False) -> pd.DataFrame:
    cols = ["oid", "survey", "ra", "dec", "firstmjd"] + (["xid"] if xid else [])
    return pd.DataFrame(rows, columns=cols)


def result(new, known=None, radius=1.5) -> pd.DataFrame:
    out = associate(new, known, radius)
    assert list(out.columns) == list(ASSOCIATION_COLUMNS)
    return out.set_index("oid")


@pytest.mark.parametrize("dec", [0.0, 45.0, -60.0])
def test_radius_edge_along_ra_and_dec(dec: float) -> None:
    cosd = np.cos(np.radians(dec))
    known = objs([("ZK", "ztf", 100.0, dec, 1.0, "ZK")], xid=True)
    new = objs(
        [
            ("L14", "lsst", 100.0 + 1.4 * AS / cosd, dec, 2.0),  # 1.4" east (to first order)
            ("L16", "lsst", 100.0 - 1.6 * AS / cosd, dec, 2.0),  # 1.6" west
            ("A14", "atlas", 100.0, dec + 1.4 * AS, 2.0),  # 1.4" north
            ("A16", "atlas", 100.0, dec - 1.6 * AS, 2.0),  # 1.6" south
        ]
    )
    got = result(new, known)
    assert got.loc["L14", "xid"] == "ZK" and got.loc["L14", "xid_distance_arcsec"] == pytest.approx(
        1.4, abs=1e-6
    )
    assert got.loc["A14", "xid"] == "ZK" and got.loc["A14", "xid_distance_arcsec"] == pytest.approx(
        1.4, abs=1e-9
    )
    # 1.6" from the known object; L16 and A16 are 1.6*sqrt(2)" apart, so no group either
    assert got.loc["L16", "xid"] == "L16" and np.isnan(got.loc["L16", "xid_distance_arcsec"])
    assert got.loc["A16", "xid"] == "A16"


def test_same_survey_never_associates_by_position() -> None:
    known = objs([("Z1", "ztf", 10.0, 10.0, 1.0, "X1")], xid=True)
    new = objs([("Z2", "ztf", 10.0, 10.0 + 0.1 * AS, 2.0), ("Z3", "ztf", 10.0, 10.0 - 0.1 * AS, 2.0)])
    got = result(new, known)
    assert got["xid"].tolist() == ["Z2", "Z3"] and got["xid_distance_arcsec"].isna().all()


def test_nearest_of_another_survey_wins_over_a_nearer_same_survey_one() -> None:
    known = objs(
        [
            ("Znear", "ztf", 0.0, 0.0 + 0.2 * AS, 1.0, "Xz"),  # same survey as the new object: ignored
            ("Lfar", "lsst", 0.0, 0.0 - 1.2 * AS, 1.0, "Xl"),
            ("Afar", "atlas", 0.0, 0.0 + 1.4 * AS, 1.0, None),  # null xid = its own oid
        ],
        xid=True,
    )
    new = objs([("Znew", "ztf", 0.0, 0.0, 2.0)])
    got = result(new, known)
    assert got.loc["Znew", "xid"] == "Xl" and got.loc["Znew", "xid_distance_arcsec"] == pytest.approx(1.2)
    got = result(new, known[known["oid"] != "Lfar"])
    assert got.loc["Znew", "xid"] == "Afar"


def test_known_objects_keep_their_xid_by_id_so_a_replay_is_idempotent() -> None:
    known = objs([("Z1", "ztf", 5.0, 5.0, 1.0, "L7"), ("L7", "lsst", 5.0, 5.0 + AS, 0.5, "L7")], xid=True)
    known["xid_distance_arcsec"] = [1.0, np.nan]
    # Z1 comes again as "new" (a replayed batch), now next to an even nearer ATLAS object: the stored xid stays
    new = objs([("Z1", "ztf", 5.0, 5.0, 1.0), ("A1", "atlas", 5.0, 5.0 - 0.1 * AS, 3.0)])
    got = result(new, known)
    assert got.loc["Z1", "xid"] == "L7" and got.loc["Z1", "xid_distance_arcsec"] == 1.0
    assert got.loc["A1", "xid"] == "L7"  # nearest other-survey known object is Z1 (0.1"), whose xid is L7
    assert got.loc["A1", "xid_distance_arcsec"] == pytest.approx(0.1)


def test_new_objects_placed_by_position_pass_their_xid_on() -> None:
    """An ATLAS object on a known ZTF object, an LSST object 1.2" beyond it (2.4" from the ZTF one)."""
    known = objs([("Z", "ztf", 200.0, -30.0, 1.0, "Z")], xid=True)
    new = objs([("A", "atlas", 200.0, -30.0 + 1.2 * AS, 5.0), ("L", "lsst", 200.0, -30.0 + 2.4 * AS, 2.0)])
    got = result(new, known)
    assert got["xid"].tolist() == ["Z", "Z"]
    assert got["xid_distance_arcsec"].tolist() == pytest.approx([1.2, 1.2])


def test_groups_of_new_objects_take_the_earliest_oid() -> None:
    new = objs(
        [
            ("Zb", "ztf", 50.0, 20.0, 100.0),
            ("Lb", "lsst", 50.0, 20.0 + 0.5 * AS, 99.0),  # earliest: leader
            ("Ab", "atlas", 50.0, 20.0 - 0.5 * AS, 101.0),
            ("Zt", "ztf", 60.0, 20.0, 7.0),  # tie on firstmjd: the smaller oid string leads
            ("At", "atlas", 60.0, 20.0 + 1.0 * AS, 7.0),
        ]
    )
    got = result(new, None)
    assert got.loc[["Zb", "Lb", "Ab"], "xid"].tolist() == ["Lb"] * 3
    assert np.isnan(got.loc["Lb", "xid_distance_arcsec"])
    assert got.loc["Zb", "xid_distance_arcsec"] == pytest.approx(0.5)
    assert got.loc["Ab", "xid_distance_arcsec"] == pytest.approx(1.0)  # to the leader, not to its nearest
    assert got.loc[["Zt", "At"], "xid"].tolist() == ["At", "At"]


def test_transitivity_of_groups_is_documented_behaviour() -> None:
    """Groups are connected components: Z1 - L - Z2 links of 1.2" join two ZTF objects 2.4" apart, through
    the LSST object; but two ZTF objects alone never group."""
    new = objs(
        [
            ("Z1", "ztf", 80.0, 0.0, 3.0),
            ("L", "lsst", 80.0, 1.2 * AS, 2.0),
            ("Z2", "ztf", 80.0, 2.4 * AS, 1.0),
        ]
    )
    got = result(new, None)
    assert got["xid"].tolist() == ["Z2", "Z2", "Z2"]
    assert got.loc["Z1", "xid_distance_arcsec"] == pytest.approx(2.4)  # beyond the radius, through L
    alone = result(new[new["survey"] == "ztf"], None)
    assert alone["xid"].tolist() == ["Z1", "Z2"]


def test_ra_wrap_at_zero() -> None:
    known = objs([("Z", "ztf", 359.9997, 0.0, 1.0, "Z")], xid=True)  # 1.08" west of RA 0
    new = objs([("L", "lsst", 0.0001, 0.0, 2.0), ("A", "atlas", 0.00015, 0.0, 2.0)])  # 1.44", 1.62" from Z
    got = result(new, known)
    assert got.loc["L", "xid"] == "Z" and got.loc["L", "xid_distance_arcsec"] == pytest.approx(1.44, abs=1e-6)
    # A is 1.62" from Z (no), but 0.18" from L, which rule 2 has just placed: it follows L to Z
    assert got.loc["A", "xid"] == "Z" and got.loc["A", "xid_distance_arcsec"] == pytest.approx(0.18, abs=1e-6)
    got = result(new[new["oid"] == "A"], known)
    assert got.loc["A", "xid"] == "A"


def test_poles() -> None:
    # 0.0002 deg from the pole on opposite meridians: 1.44" apart although their RAs differ by 180 deg
    known = objs([("Z", "ztf", 0.0, 90.0 - 0.0002, 1.0, "Z")], xid=True)
    new = objs(
        [
            ("L", "lsst", 180.0, 90.0 - 0.0002, 2.0),
            ("A", "atlas", 90.0, -90.0, 2.0),  # the south pole, any RA
        ]
    )
    got = result(new, known)
    assert got.loc["L", "xid"] == "Z" and got.loc["L", "xid_distance_arcsec"] == pytest.approx(1.44, abs=1e-6)
    south = objs([("Zs", "ztf", 270.0, -90.0 + 0.00035, 1.0, "Zs")], xid=True)  # 1.26" from the south pole
    got = result(new, south)
    assert got.loc["A", "xid"] == "Zs" and got.loc["A", "xid_distance_arcsec"] == pytest.approx(
        1.26, abs=1e-6
    )


def test_random_field_against_astropy_brute_force() -> None:
    """2,000 known ZTF objects and 1,000 new LSST objects in a 0.05 deg^2 patch near RA 0 (some straddling
    it): each new object's xid is the xid of its nearest known object within 1.5" by astropy's separation."""
    rng = np.random.default_rng(42)
    n_known, n_new = 2000, 1000
    kra = rng.uniform(-0.1, 0.1, n_known) % 360.0
    kdec = rng.uniform(-0.12, 0.12, n_known)
    known = objs(
        [(f"Z{i}", "ztf", kra[i], kdec[i], 1.0, f"X{i}") for i in range(n_known)],
        xid=True,
    )
    # half the new objects near a known one (0-2" away), half anywhere
    near = rng.integers(0, n_known, n_new // 2)
    sep = rng.uniform(0, 2.0, n_new // 2) * AS
    pa = rng.uniform(0, 2 * np.pi, n_new // 2)
    nra = (
        np.concatenate(
            [
                kra[near] + sep * np.sin(pa) / np.cos(np.radians(kdec[near])),
                rng.uniform(-0.1, 0.1, n_new // 2),
            ]
        )
        % 360
    )
    ndec = np.concatenate([kdec[near] + sep * np.cos(pa), rng.uniform(-0.12, 0.12, n_new // 2)])
    new = objs([(f"L{i}", "lsst", nra[i], ndec[i], 2.0) for i in range(n_new)])
    got = result(new, known)

    c_new = SkyCoord(nra * u.deg, ndec * u.deg)
    c_known = SkyCoord(kra * u.deg, kdec * u.deg)
    idx, d2d, _ = c_new.match_to_catalog_sky(c_known)
    d = d2d.to_value(u.arcsec)
    within = d <= 1.5
    expect = np.where(within, np.array([f"X{i}" for i in idx]), [f"L{i}" for i in range(n_new)])
    assert within.sum() > 300
    assert (got["xid"].to_numpy() == expect).all()
    np.testing.assert_allclose(got["xid_distance_arcsec"].to_numpy()[within], d[within], atol=1e-7)
    assert got["xid_distance_arcsec"].isna().to_numpy()[~within].all()


def test_inputs_are_checked() -> None:
    good = objs([("a", "ztf", 1.0, 1.0, 1.0)])
    with pytest.raises(ValueError, match="unique"):
        associate(pd.concat([good, good]), None)
    with pytest.raises(ValueError, match="position"):
        associate(objs([("a", "ztf", np.nan, 1.0, 1.0)]), None)
    with pytest.raises(ValueError, match="firstmjd"):
        associate(good.drop(columns="firstmjd"), None)
    with pytest.raises(ValueError, match="radius"):
        associate(good, None, 0.0)
    empty = associate(good.iloc[:0], None)
    assert empty.empty and list(empty.columns) == list(ASSOCIATION_COLUMNS)
    assert result(good, objs([], xid=True)).loc["a", "xid"] == "a"
