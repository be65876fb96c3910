"""The pure parts of ``POST /crossmatch``: reading an uploaded CSV of positions (``api.upload``), the index ranges
that must hold every object near many positions (``api.cone.positions_ranges``) and the pairs within a radius
(``features.xmatch.pairs_within``), each against an independent derivation (astropy's separations, brute force)."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import Angle, SkyCoord

from alert_broker.api.cone import bulk_order, positions_ranges
from alert_broker.api.data import BadRequest
from alert_broker.api.upload import MAX_POSITIONS, decode_text, matched_table, parse_positions
from alert_broker.features.healpix import healpix29
from alert_broker.features.xmatch import pairs_within


def _in_ranges(h: np.ndarray, lows: list[int], highs: list[int]) -> np.ndarray:
    lo, hi = np.asarray(lows), np.asarray(highs)
    i = np.searchsorted(lo, h, side="right") - 1
    return (i >= 0) & (h <= hi[np.clip(i, 0, None)])


# ---------------------------------------------------------------------------------------------- parsing
def test_columns_found_by_their_usual_names_in_any_separator():
    for sep in (",", "\t", ";", "  "):
        text = (
            sep.join(["Name", "RAJ2000", "DEJ2000", "note"])
            + "\n"
            + sep.join(["a", "10.5", "-3.25", "x"])
            + "\n"
        )
        p = parse_positions(text)
        assert (p.ra_col, p.dec_col) == ("RAJ2000", "DEJ2000")
        assert p.ra.tolist() == [10.5] and p.dec.tolist() == [-3.25]
        assert list(p.table.columns) == ["Name", "RAJ2000", "DEJ2000", "note"] and p.table["note"][0] == "x"
    assert list(parse_positions("ra,,dec,\n1,a,2,b\n").table.columns) == ["ra", "column_2", "dec", "column_4"]
    named = parse_positions("alpha_x,delta_y\n1,2\n", ra_col="alpha_x", dec_col="delta_y")
    assert (named.ra[0], named.dec[0]) == (1.0, 2.0)


def test_sexagesimal_positions_equal_astropys_reading():
    text = "id ra dec\nA 20:32:51.36 +41:08:39.8\nB 12h00m00s -10d30m00s\nC 00:00:00.0 -00:30:00\n"
    p = parse_positions(text)
    want = SkyCoord(["20:32:51.36 +41:08:39.8", "12h00m00s -10d30m00s", "00:00:00.0 -00:30:00"],
                    unit=(u.hourangle, u.deg))  # fmt: skip
    np.testing.assert_allclose(p.ra, want.ra.deg, atol=1e-12)
    np.testing.assert_allclose(p.dec, want.dec.deg, atol=1e-12)
    assert p.dec[2] == pytest.approx(-0.5)  # the sign of a declination with zero degrees is kept


@pytest.mark.parametrize("sep", [":", " "])
def test_many_sexagesimal_positions_equal_astropys_reading(sep):
    rng = np.random.default_rng(len(sep))
    c = SkyCoord(rng.uniform(0, 360, 2000) * u.deg, rng.uniform(-89.999, 89.999, 2000) * u.deg)
    ra_text = c.ra.to_string(unit=u.hourangle, sep=sep, precision=3, pad=True)
    dec_text = c.dec.to_string(unit=u.deg, sep=sep, precision=3, alwayssign=True, pad=True)
    ra_text[:5] = [f"{h}h{m}m{x}s" for h, m, x in (("1", "2", "3.5"), ("23", "59", "59.9"), ("0", "0", "0"),
                                                    ("12", "0", "0"), ("5", "30", "0"))]  # fmt: skip
    text = "ra\tdec\n" + "".join(f"{r}\t{d}\n" for r, d in zip(ra_text, dec_text, strict=True))
    p = parse_positions(text)
    np.testing.assert_allclose(
        p.ra, Angle(list(ra_text), unit=u.hourangle).wrap_at(360 * u.deg).deg, atol=1e-10
    )
    np.testing.assert_allclose(p.dec, Angle(list(dec_text), unit=u.deg).deg, atol=1e-10)
    with pytest.raises(BadRequest, match="line 2: ra '12:60:00' is not an angle"):
        parse_positions("ra,dec\n12:60:00,1\n")  # astropy would read 13:00:00, with a warning
    with pytest.raises(BadRequest, match="line 2: dec '-5:30:75' is not an angle"):
        parse_positions("ra,dec\n1,-5:30:75\n")


def test_negative_right_ascensions_wrap_and_lines_count_blanks_and_comments():
    p = parse_positions("# from a proposal\n\nid,ra,dec\na,-10,5\n\nb,350,6\n")
    assert p.ra.tolist() == [350.0, 350.0]
    assert p.lines.tolist() == [4, 6]  # the file's lines of the two rows


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ["empty"]),
        ("# only a comment\n", ["empty"]),
        ("id,ra,dec\n", ["no position"]),
        ("x,y\n1,2\n", ["no right ascension column", "x, y"]),
        ("ra,y\n1,2\n", ["no declination column"]),
        ("ra,dec\n1,2,3\n", ["not a CSV table", "line 2"]),
        ("ra,dec\n1,2\n3,4,5\n", ["line 3"]),
        ("ra,dec\n10,95\n", ["1 value is not a position", "line 2: dec 95 is outside [-90, 90]"]),
        (
            "ra,dec\nabc,1\n,2\n3,\n",
            ["3 values", "line 2: ra 'abc' is not an angle", "line 3: ra is empty", "line 4: dec is empty"],
        ),
        ("ra,dec\n400,1\n", ["ra 400 is outside"]),
        ("ra,dec\nnan,1\n", ["ra 'nan' is not an angle"]),
        ("ra,dec,ra\n1,2,3\n", ["names a column twice: ra"]),
        ("ra,dec\n" + "".join(f"{i % 7 + 100},x\n" for i in range(9)), ["9 values", "(and 4 more)"]),
    ],
)
def test_what_is_not_a_position_refuses_the_upload_naming_its_line(text, words):
    with pytest.raises(BadRequest) as err:
        parse_positions(text)
    assert err.value.status == 422
    for w in words:
        assert w in str(err.value), str(err.value)


def test_limits_and_encodings():
    many = "ra,dec\n" + "1,1\n" * (MAX_POSITIONS + 1)
    with pytest.raises(BadRequest, match=f"at most {MAX_POSITIONS}"):
        parse_positions(many)
    with pytest.raises(BadRequest, match="201 columns: at most 200"):
        parse_positions(",".join(["ra", "dec", *(f"c{i}" for i in range(199))]) + "\n" + "1," * 200 + "1\n")
    with pytest.raises(BadRequest, match="not UTF-8"):
        decode_text(b"ra,dec\n\xff\xfe,1\n")
    assert decode_text("\ufeffra,dec\n1,2\n".encode()) == "ra,dec\n1,2\n"  # a spreadsheet's byte-order mark


def test_matched_table_keeps_the_upload_beside_its_matches():
    p = parse_positions("oid,ra,dec,line\nmine,1,1,x\nother,2,2,y\nthird,3,3,z\n")
    matches = pd.DataFrame({"row": [0, 0, 2], "dist_arcsec": [0.1, 0.5, 1.0], "oid": ["A", "B", "C"]})
    t = matched_table(p, matches)
    assert list(t.columns) == ["line", "input_oid", "ra", "dec", "input_line", "dist_arcsec", "oid"]
    assert t["oid"].tolist() == ["A", "B", "C"] and t["input_oid"].tolist() == ["mine", "mine", "third"]
    assert t["line"].tolist() == [2, 2, 4]
    kept = matched_table(p, matches, unmatched=True)
    assert kept["input_oid"].tolist() == ["mine", "mine", "other", "third"]
    assert kept["oid"].isna().tolist() == [False, False, True, False]


# ---------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("radius", [0.2, 2.0, 15.0, 60.0])
def test_positions_ranges_hold_every_point_within_the_radius_anywhere_on_the_sky(radius):
    rng = np.random.default_rng(int(radius * 100))
    # positions everywhere, many near the poles and on the borders of the coarse pixels
    n = 3000
    ra0 = rng.uniform(0, 360, n)
    dec0 = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    dec0[:300] = rng.choice([-1, 1], 300) * rng.uniform(89.0, 90.0, 300)
    dec0[300:400] = rng.choice([-1, 1], 100) * np.degrees(np.arcsin(2 / 3))  # HEALPix's polar-cap boundary
    centre = SkyCoord(ra0 * u.deg, dec0 * u.deg)
    pa = rng.uniform(0, 2 * np.pi, n)
    pts = centre.directional_offset_by(pa * u.rad, radius * np.sqrt(rng.random(n)) * u.arcsec)
    lows, highs = positions_ranges(ra0, dec0, radius)
    assert lows == sorted(lows) and all(a <= b for a, b in zip(lows, highs, strict=True))
    assert _in_ranges(healpix29(pts.ra.deg, pts.dec.deg), lows, highs).all()
    # and at the radius itself, in every direction
    edge = centre.directional_offset_by(pa * u.rad, radius * u.arcsec)
    assert _in_ranges(healpix29(edge.ra.deg, edge.dec.deg), lows, highs).all()
    assert bulk_order(radius) <= 12


def test_pairs_within_equal_brute_force_and_come_nearest_first():
    rng = np.random.default_rng(3)
    cat_ra, cat_dec = rng.uniform(9.99, 10.01, 400), rng.uniform(-0.01, 0.01, 400)
    cat_ra[:5], cat_dec[:5] = 359.9999, 0.0  # across RA = 0
    ra, dec = rng.uniform(9.99, 10.01, 150), rng.uniform(-0.01, 0.01, 150)
    ra[0], dec[0] = 0.0001, 0.0
    i, j, d = pairs_within(ra, dec, cat_ra, cat_dec, 5.0)
    sep = (
        SkyCoord(ra[:, None] * u.deg, dec[:, None] * u.deg)
        .separation(SkyCoord(cat_ra[None, :] * u.deg, cat_dec[None, :] * u.deg))
        .arcsec
    )
    want = set(zip(*np.nonzero(sep <= 5.0), strict=True))
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {(int(a), int(b)) for a, b in want}
    np.testing.assert_allclose(d, sep[i, j], atol=1e-6)
    assert {0} <= set(i.tolist()) and set(j[i == 0].tolist()) == {0, 1, 2, 3, 4}
    for k in np.unique(i):
        assert np.all(np.diff(d[i == k]) >= 0)
    assert [len(x) for x in pairs_within([], [], cat_ra, cat_dec, 5.0)] == [0, 0, 0]
    assert [len(x) for x in pairs_within(ra, dec, [], [], 5.0)] == [0, 0, 0]
