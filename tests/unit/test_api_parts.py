"""The query API's pure parts: HEALPix cone ranges (against brute force), stamps as PNG, JSON-safe rows, the
client's frames and the publisher's helpers. No server, no database."""

from __future__ import annotations

import gzip
import io
import math

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from PIL import Image

from alert_broker.api.client import to_frame
from alert_broker.api.cone import MAX_RADIUS_ARCSEC, cone_order, cone_ranges
from alert_broker.api.data import BadRequest, check_position, records
from alert_broker.api.db import clean
from alert_broker.api.publish import auto_order
from alert_broker.api.stamps import stamp_array, stamp_png
from alert_broker.classifiers.registry import version_key
from alert_broker.features.healpix import healpix29


def _in_ranges(h: np.ndarray, lows: list[int], highs: list[int]) -> np.ndarray:
    lo, hi = np.asarray(lows), np.asarray(highs)
    i = np.searchsorted(lo, h, side="right") - 1
    return (i >= 0) & (h <= hi[np.clip(i, 0, None)])


@pytest.mark.parametrize("radius", [0.5, 5.0, 60.0, 3600.0, 36000.0])
def test_cone_ranges_cover_every_point_of_the_cone(radius):
    rng = np.random.default_rng(int(radius * 10))
    for ra0, dec0 in [(0.0, 0.0), (359.9999, 45.0), (120.0, 89.9999), (200.0, -89.99), (45.0, 41.81)]:
        # points uniformly inside a cap a little wider than the cone
        n = 4000
        r = np.radians(radius * 1.3 / 3600) * np.sqrt(rng.random(n))
        pa = rng.uniform(0, 2 * np.pi, n)
        centre = SkyCoord(ra0 * u.deg, dec0 * u.deg)
        pts = centre.directional_offset_by(pa * u.rad, r * u.rad)
        inside = centre.separation(pts).arcsec <= radius
        lows, highs = cone_ranges(ra0, dec0, radius)
        assert lows == sorted(lows) and all(a <= b for a, b in zip(lows, highs, strict=True))
        covered = _in_ranges(healpix29(pts.ra.deg, pts.dec.deg), lows, highs)
        assert covered[inside].all(), (ra0, dec0, radius)
        assert len(lows) <= 40


def test_cone_order_and_limits():
    assert cone_order(5.0) == 15 and cone_order(36000.0) == 2 and cone_order(1e-6) == 29
    check_position(None, None, None)
    check_position(10, 20, 5)
    for bad in [
        (10, None, 5),
        (361, 0, 5),
        (10, -91, 5),
        (10, 0, 0),
        (10, 0, MAX_RADIUS_ARCSEC + 1),
        (math.nan, 0, 1),
    ]:
        with pytest.raises(BadRequest):
            check_position(*bad)


def _fits(data: np.ndarray, gz: bool) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(data).writeto(buf)
    raw = buf.getvalue()
    return gzip.compress(raw) if gz else raw


@pytest.mark.parametrize("gz", [True, False])
def test_stamp_png_is_a_stretched_greyscale_image(gz):
    rng = np.random.default_rng(1)
    image = rng.normal(100, 5, (63, 63))
    image[30:34, 30:34] += 500  # a source
    image[0, 0] = np.nan  # a masked pixel
    data = _fits(image.astype(np.float32), gz)
    np.testing.assert_allclose(stamp_array(data)[5:, 5:], image[5:, 5:], rtol=1e-6)
    png = Image.open(io.BytesIO(stamp_png(data)))
    assert png.mode == "L" and png.size == (63, 63)
    pixels = np.asarray(png)
    assert pixels.std() > 10 and pixels[63 - 32, 31] == 255  # flipped: FITS row 0 is the bottom
    assert Image.open(io.BytesIO(stamp_png(data, scale=3))).size == (189, 189)
    flat = Image.open(io.BytesIO(stamp_png(_fits(np.zeros((21, 21), np.float32), gz))))
    assert np.asarray(flat).std() == 0
    with pytest.raises(ValueError):
        stamp_array(_fits(np.zeros(5, np.float32), gz))


def test_rows_are_json_safe_and_keep_64_bit_ids():
    big = 2481319123615015015
    df = pd.DataFrame(
        {
            "candid": pd.array([big, None], dtype="Int64"),
            "x": [1.5, np.nan],
            "flag": pd.array([True, None], dtype="boolean"),
            "name": ["a", None],
        }
    )
    rows = records(df)
    assert rows == [{"candid": str(big), "x": 1.5, "flag": True, "name": "a"},
                    {"candid": None, "x": None, "flag": None, "name": None}]  # fmt: skip
    assert clean({"a": [np.float64("inf"), np.int64(3), pd.NA]}) == {"a": [None, 3, None]}
    back = to_frame(rows)
    assert back["candid"].dtype == "Int64" and back["candid"].iloc[0] == big
    assert to_frame([{"candid": str(big)}])["candid"].dtype == "int64"


def test_publish_helpers():
    assert auto_order(1000) == 0 and auto_order(12 * 250_000) == 0 and auto_order(12 * 250_000 * 4) == 1
    assert auto_order(10**12) == 7
    assert sorted(["1.10.0", "1.9.0", "1.2"], key=version_key) == ["1.2", "1.9.0", "1.10.0"]
